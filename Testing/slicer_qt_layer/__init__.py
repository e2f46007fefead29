"""A test-only stand-in for what the 3D Slicer application adds to Python, so the module's widget code runs unchanged
on real PyQt5 widgets (QT_QPA_PLATFORM=offscreen) and the real MRML scene of the slicer-core wheel.

The Slicer application (PythonQt, CTK, qMRML widgets) cannot run here and no Slicer binary can be fetched. The
module's code imports `qt`, `ctk` and `slicer`; `import slicer` stays the slicer-core wheel (real vtkMRMLScene,
nodes, segmentations logic, and Slicer's own `slicer.util`). This layer adds only what the application provides:
- `qt`: PyQt5 with PythonQt's manners (pythonqt.py: properties as attributes, `connect("signal(args)", slot)`,
  `getOpenFileName` returning a str, `None` -> "None" for string properties);
- `ctk` and `slicer.qMRMLNodeComboBox`, and `qt.QUiLoader` for slicer.util.loadUI (widgets.py);
- `slicer.app`, `slicer.mrmlScene`, `slicer.ScriptedLoadableModule` (application.py).
Each behaviour is read from Slicer's (v5.12.3), CTK's or PythonQt's source; the files say where.
Fixtures that use it are in fixtures.py (slicer_app, dialogs, module_widget); `click()` below delivers clicks.
"""

import sys
import types

from . import widgets
from .application import SlicerApplication, scriptedLoadableModule, settingsIn
from .pythonqt import installQt, pythonqt

__all__ = ["install", "SlicerApplication", "settingsIn", "pythonqt"]


def install():
    """Put `qt`, `ctk` and the application's parts of `slicer` in place (once; the real MRML stays as it is)."""
    import slicer
    import slicer.util  # noqa: F401  (Slicer's own util.py from the slicer-core wheel)

    installQt(widgets.QUiLoader)
    if "ctk" not in sys.modules:
        ctk = types.ModuleType("ctk", "CTK's Python module, the widgets the module uses (test layer)")
        for name in ("ctkCollapsibleButton", "ctkPathLineEdit", "ctkMessageBox"):
            setattr(ctk, name, widgets.pythonqtWidget(name))
        sys.modules["ctk"] = ctk
    if "slicer.ScriptedLoadableModule" not in sys.modules:
        sys.modules["slicer.ScriptedLoadableModule"] = scriptedLoadableModule()
        slicer.ScriptedLoadableModule = sys.modules["slicer.ScriptedLoadableModule"]
    slicer.qMRMLNodeComboBox = widgets.pythonqtWidget("qMRMLNodeComboBox")
    slicer.qMRMLWidget = widgets.pythonqtWidget("qMRMLWidget")
    return slicer


def click(widget, button=None):
    """A mouse click on `widget` delivered from a running event loop, as Slicer's main loop delivers the user's
    clicks. (Outside a loop, the `deleteLater()` that slicer.util.messageBox calls before `exec_()` would close
    the dialog at once.)"""
    from PyQt5 import QtCore, QtWidgets
    from PyQt5.QtTest import QTest

    loop = QtCore.QEventLoop()

    def deliver():
        try:
            QtWidgets.QApplication.sendPostedEvents()  # pending layout requests: the button gets its size
            if not QtWidgets.QWidget.isVisible(widget) or QtWidgets.QWidget.rect(widget).isEmpty():
                name = QtCore.QObject.objectName(widget) or type(widget).__name__
                raise AssertionError(f"{name} is not on screen: a user cannot click it")
            QTest.mouseClick(widget, button or QtCore.Qt.LeftButton)
        finally:
            loop.quit()

    QtCore.QTimer.singleShot(0, deliver)
    loop.exec_()
