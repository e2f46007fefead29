"""Fixtures of the Slicer-side widget tests: the application layer (slicer_qt_layer), a fresh scene and settings
per test, dialogs answered like a user, and the module widget set up as Slicer does.

A test module takes them with `from slicer_qt_layer.fixtures import *  # noqa: F401,F403` (not a Testing/conftest.py:
the package tests import the project's root conftest by the module name `conftest`)."""

import os
from dataclasses import dataclass, field

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import test_slicer_helpers  # noqa: E402  (the module folder on sys.path, slicer-core's scene helpers)

__all__ = ["slicer_app", "dialogs", "module_widget", "Dialog", "Dialogs"]


@pytest.fixture
def slicer_app(qapp, tmp_path, monkeypatch):
    """`slicer.app` (not in testing mode, so dialogs show), a new `slicer.mrmlScene`, QSettings, the umamba home and
    model store in `tmp_path`. Yields the application; widgets still open afterwards are closed."""
    from . import SlicerApplication, install, settingsIn

    slicer = install()
    settingsIn(tmp_path / "qsettings")
    app = SlicerApplication(str(tmp_path / "slicer"))
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", test_slicer_helpers.newScene(), raising=False)
    monkeypatch.setenv("UMAMBA_HOME", str(tmp_path / "umamba_home"))
    monkeypatch.delenv("UMAMBA_MODEL_STORE", raising=False)
    yield app
    for widget in qapp.topLevelWidgets():
        widget.close()


@dataclass
class Dialog:
    title: str
    text: str
    detailedText: str
    buttons: list


@dataclass
class Dialogs:
    """Every message box shown while the test runs, answered as `answer` says (True: Ok/Yes, False: Cancel/No)."""
    shown: list = field(default_factory=list)
    answer: bool = True

    def texts(self):
        return [d.text for d in self.shown]


@pytest.fixture
def dialogs(slicer_app, qapp):
    from PyQt5 import QtCore, QtWidgets

    record = Dialogs()
    names = {QtWidgets.QMessageBox.Ok: "Ok", QtWidgets.QMessageBox.Cancel: "Cancel",
             QtWidgets.QMessageBox.Yes: "Yes", QtWidgets.QMessageBox.No: "No"}

    def answerOpenBoxes():
        for box in qapp.topLevelWidgets():
            if isinstance(box, QtWidgets.QMessageBox) and box.isVisible():
                buttons = [n for b, n in names.items() if box.button(b) is not None]
                record.shown.append(Dialog(QtWidgets.QMessageBox.windowTitle(box).strip(),
                                           QtWidgets.QMessageBox.text(box),
                                           QtWidgets.QMessageBox.detailedText(box), buttons))
                wanted = ["Ok", "Yes"] if record.answer else ["Cancel", "No", "Ok"]
                choice = next(b for w in wanted for b, n in names.items() if n == w and n in buttons)
                box.button(choice).click()

    timer = QtCore.QTimer()
    timer.setInterval(20)
    timer.timeout.connect(answerOpenBoxes)
    timer.start()
    yield record
    timer.stop()


@pytest.fixture
def module_widget(slicer_app, qtbot):
    """UMambaSegmentationWidget after setup(), shown, as Slicer's module panel holds it; cleaned up afterwards."""
    import UMambaSegmentation

    widget = UMambaSegmentation.UMambaSegmentationWidget()
    widget.setup()
    qtbot.addWidget(widget.parent)
    widget.parent.show()
    yield widget
    widget.cleanup()
