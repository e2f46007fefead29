"""What the Slicer application adds to the `slicer` package, for the module's widget code in tests.

- `SlicerApplication` stands for `slicer.app` (qSlicerApplication, Base/QTGUI/qSlicerApplication.h and
  Base/QTCore/qSlicerCoreApplication.h in Slicer): testingEnabled(), applicationName, temporaryPath,
  slicerUserSettingsFilePath, processEvents(), topLevelWidgets() (slicer.util.mainWindow() looks for the top-level
  widget named "qSlicerMainWindow"), the override cursor, restart() (recorded: `restartRequested`), the version.
- `ScriptedLoadableModule*` stand for Base/Python/slicer/ScriptedLoadableModule.py: the module's `parent` with its
  title etc., the widget's `parent` widget, `layout` and `resourcePath()`, the test case's `delayDisplay()`.
- `slicer.util` is Slicer's own util.py, shipped by the slicer-core wheel: loadUI, childWidgetVariables,
  errorDisplay (a ctkMessageBox run modally), confirmYesNoDisplay, tryWithErrorDisplay, ... run as written,
  on the `qt`/`ctk` modules of this layer and on `slicer.app` below.
"""

import os
import types
import unittest

from PyQt5 import QtCore, QtGui, QtWidgets

from .pythonqt import pythonqt


class SlicerApplication:
    applicationName = "Slicer"
    majorVersion, minorVersion = 5, 12

    def __init__(self, home, testing=False):
        self.qapp = QtWidgets.QApplication.instance()
        self.testing = testing
        self.temporaryPath = os.path.join(home, "temp")
        self.slicerUserSettingsFilePath = os.path.join(home, "settings", "Slicer.ini")
        os.makedirs(self.temporaryPath, exist_ok=True)
        os.makedirs(os.path.dirname(self.slicerUserSettingsFilePath), exist_ok=True)
        self.restartRequested = False
        self.mainWindow = pythonqt(QtWidgets.QMainWindow())
        self.mainWindow.setObjectName("qSlicerMainWindow")

    def testingEnabled(self):
        return self.testing

    def processEvents(self, *args):
        self.qapp.processEvents(*args)

    def topLevelWidgets(self):
        return [pythonqt(w) for w in self.qapp.topLevelWidgets()]

    def setOverrideCursor(self, cursor):
        QtWidgets.QApplication.setOverrideCursor(QtGui.QCursor(cursor))

    def restoreOverrideCursor(self):
        QtWidgets.QApplication.restoreOverrideCursor()

    def restart(self):
        self.restartRequested = True

    def thread(self):
        return self.qapp.thread()

    def layoutManager(self):
        return None


def scriptedLoadableModule():
    """The `slicer.ScriptedLoadableModule` module."""
    import slicer

    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = type(self).__name__

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[:-len("Widget")]
            self.developerMode = False
            if parent is None:
                parent = pythonqt(QtWidgets.QWidget())
                parent.setLayout(QtWidgets.QVBoxLayout())
            self.parent = parent
            self.layout = pythonqt(parent.layout())

        def resourcePath(self, filename):
            import importlib
            moduleDir = os.path.dirname(importlib.import_module(self.moduleName).__file__)
            return os.path.join(moduleDir, "Resources", filename)

        def setup(self):
            pass

        def cleanup(self):
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleTest(unittest.TestCase):
        delayMs = 100  # Slicer waits 1000 ms per message; here only the event loop matters

        def delayDisplay(self, message, requestedDelay=None, msec=None):
            slicer.util.delayDisplay(message, requestedDelay or msec or self.delayMs)

    module.ScriptedLoadableModule = ScriptedLoadableModule
    module.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    module.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    module.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    return module


def settingsIn(folder):
    """QSettings() without arguments writes an INI file under `folder` (Slicer's settings are per user)."""
    QtCore.QCoreApplication.setOrganizationName("UMambaSegmentationTests")
    QtCore.QCoreApplication.setApplicationName("Slicer")
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, str(folder))
