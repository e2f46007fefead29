"""The training section's .ui loads with real Qt (PyQt5), and every widget TrainingWidget.py uses exists in it."""

import os
import re
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5 import QtWidgets, uic  # noqa: E402

import test_slicer_helpers  # noqa: E402,F401  (puts the module folder on sys.path)

MODULE_DIR = Path(__file__).resolve().parents[1] / "UMambaSegmentation"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "UMambaTraining.ui"
WIDGET_CODE = MODULE_DIR / "UMambaSegmentationLib" / "TrainingWidget.py"


_app = None  # one QApplication for the whole test process (another test module may have made it already)


def test_training_ui_loads_and_has_every_widget_the_code_binds():
    global _app
    _app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    widget = uic.loadUi(str(UI_FILE))
    used = set(re.findall(r"\bui\.([A-Za-z_]\w*)", WIDGET_CODE.read_text()))
    assert len(used) > 20
    missing = sorted(name for name in used if widget.findChild(QtWidgets.QWidget, name) is None)
    assert missing == []
    # The choices the logic accepts are the ones offered, default first.
    combos = {name: [widget.findChild(QtWidgets.QComboBox, name).itemText(i)
                     for i in range(widget.findChild(QtWidgets.QComboBox, name).count())]
              for name in ("variantComboBox", "configurationComboBox", "foldComboBox", "deviceComboBox")}
    from UMambaSegmentationLib.TrainingLogic import CONFIGURATIONS, DEVICES, VARIANTS
    assert combos["variantComboBox"] == list(VARIANTS)
    assert combos["configurationComboBox"] == list(CONFIGURATIONS)
    assert combos["deviceComboBox"] == list(DEVICES)
    assert combos["foldComboBox"][0] == "all"
    assert widget.findChild(QtWidgets.QSpinBox, "epochsSpinBox").minimum() == 1
    widget.deleteLater()
