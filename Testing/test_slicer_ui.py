"""The panel's .ui file loads with real Qt (PyQt5) and holds every widget the module code uses.

Slicer's own widget classes (qMRMLNodeComboBox, ctkCollapsibleButton, ...) do not exist in PyQt5: each custom
widget is loaded as the Qt class its <customwidget> entry says it extends, after dropping the properties and
connections only the Slicer class has. Everything else (layouts, Qt widgets, their properties) loads as written.
"""

import os
import re
import xml.etree.ElementTree as ET

import pytest

from test_slicer_helpers import MODULE_DIR

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PyQt5.QtWidgets")
from PyQt5 import QtCore, uic  # noqa: E402

UI_FILE = MODULE_DIR / "Resources" / "UI" / "UMambaSegmentation.ui"
CODE_FILES = [MODULE_DIR / "UMambaSegmentation.py", MODULE_DIR / "UMambaSegmentationLib" / "SegmentationPanel.py",
              MODULE_DIR / "UMambaSegmentationLib" / "ComputePanel.py"]
# What the binding code expects of the widgets it touches (Qt class, or the base the Slicer class extends).
EXPECTED_TYPES = {
    "segmentButton": "QPushButton", "progressBar": "QProgressBar", "modelSelector": "QComboBox",
    "deviceComboBox": "QComboBox", "disableTtaCheckBox": "QCheckBox", "stepSizeSpinBox": "QDoubleSpinBox",
    "logTextEdit": "QPlainTextEdit", "statusLabel": "QLabel", "errorLabel": "QLabel", "modelCardLabel": "QLabel",
    "extraChannelsLayout": "QFormLayout", "inputVolumeSelector": "qMRMLNodeComboBox",
    "storePathLineEdit": "ctkPathLineEdit", "modelCollapsibleButton": "ctkCollapsibleButton",
}


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def qt_loadable_ui(path):
    """The .ui XML with Slicer classes replaced by their Qt base classes; returns (xml bytes, {name: class})."""
    tree = ET.parse(path)
    root = tree.getroot()
    custom = {c.findtext("class"): c.findtext("extends") for c in root.iter("customwidget")}
    original_classes = {}
    for widget in root.iter("widget"):
        cls = widget.get("class")
        original_classes[widget.get("name")] = cls
        if cls in custom:
            base = getattr(QtWidgets, custom[cls])
            widget.set("class", custom[cls])
            for prop in list(widget.findall("property")):
                if base.staticMetaObject.indexOfProperty(prop.get("name")) < 0:
                    widget.remove(prop)  # a Slicer-class property (collapsed, nodeTypes, filters, ...)
    for layout in root.iter("layout"):
        original_classes[layout.get("name")] = layout.get("class")
    root.remove(root.find("customwidgets"))
    connections = root.find("connections")
    if connections is not None:
        root.remove(connections)  # signals of Slicer classes (mrmlSceneChanged) cannot connect in PyQt5
    return ET.tostring(root), original_classes, connections


def test_ui_loads_with_real_qt_and_has_every_name_the_code_uses(app, tmp_path):
    xml, classes, connections = qt_loadable_ui(UI_FILE)
    loadable = tmp_path / "panel.ui"
    loadable.write_bytes(xml)
    widget = uic.loadUi(str(loadable))
    used = set()
    for path in CODE_FILES:
        used |= set(re.findall(r"\bui\.([A-Za-z_]\w*)", path.read_text()))
    assert {"segmentButton", "progressBar", "inputVolumeSelector", "logTextEdit"} <= used  # the grep works
    missing = sorted(n for n in used if widget.findChild(QtCore.QObject, n) is None)
    assert missing == [], f"used by the code but not in {UI_FILE.name}: {missing}"
    for name, cls in EXPECTED_TYPES.items():
        assert classes.get(name) == cls, (name, classes.get(name))
    # the scene reaches the node selector, as Slicer's template does
    wiring = [(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
              for c in connections]
    assert ("UMambaSegmentation", "mrmlSceneChanged(vtkMRMLScene*)", "inputVolumeSelector",
            "setMRMLScene(vtkMRMLScene*)") in wiring
    # properties survived as written
    assert [widget.deviceComboBox.itemText(i) for i in range(widget.deviceComboBox.count())] == \
        ["auto", "cuda", "cpu", "mps"]
    assert widget.stepSizeSpinBox.value() == 0.5 and widget.logTextEdit.isReadOnly()
    assert widget.segmentButton.text() == "Segment"


def test_device_choices_match_the_logic_and_predict():
    from UMambaSegmentationLib.SegmentationLogic import DEVICES
    root = ET.parse(UI_FILE).getroot()
    combo = next(w for w in root.iter("widget") if w.get("name") == "deviceComboBox")
    assert tuple(i.find("property/string").text for i in combo.findall("item")) == DEVICES
