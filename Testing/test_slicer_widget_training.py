""""Train from folder" as a user meets it: the section's own code (TrainingWidget.TrainingSection) on real Qt widgets
and the real scene, driven by clicks and typing, with the real `umamba import-dataset/plan/train` behind it."""

import dataclasses

import pytest
from PyQt5 import QtCore
from PyQt5.QtTest import QTest

from slicer_qt_layer import click
from slicer_qt_layer.fixtures import *  # noqa: F401,F403  (slicer_app, dialogs, module_widget)

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 300_000


def typeInto(lineEdit, text):
    lineEdit.clear()
    QTest.keyClicks(lineEdit, text)
    QTest.keyClick(lineEdit, QtCore.Qt.Key_Return)  # editingFinished


def tinyIterations(section, monkeypatch):
    """The panel has no iterations field (nnU-Net's 250 per epoch); the test keeps epochs to 2 batches."""
    settings = section.settings
    monkeypatch.setattr(section, "settings", lambda: dataclasses.replace(settings(), iterationsPerEpoch=2,
                                                                        valIterations=1))


def chartRows(section):
    job = section.presenter.job
    return job.chart.tableNode.GetTable().GetNumberOfRows() if job is not None and job.chart else 0


def test_train_cancel_resume_after_reopening_and_the_model_is_selected(slicer_app, dialogs, qtbot, monkeypatch,
                                                                         tmp_path):
    import UMambaSegmentation
    from umamba.synthetic import make_phantom_dataset

    source = make_phantom_dataset(tmp_path / "raw", 991, "FlowPhantom", n_cases=4, shape=(16, 16, 16), seed=991)
    widget = UMambaSegmentation.UMambaSegmentationWidget()
    widget.setup()
    widget.parent.show()
    section, ui = widget.training, widget.training.ui
    assert section.button.collapsed and not ui.startButton.isVisible()
    click(section.button)  # open the section
    assert not section.button.collapsed and ui.startButton.isVisible()
    assert not ui.startButton.enabled and not ui.resumeButton.enabled and not ui.resumeLabel.visible

    # bad input first: a folder with one labelled image
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    typeInto(ui.sourceLineEdit, str(lonely))
    qtbot.waitUntil(lambda: section.presenter.state != "inspecting", timeout=60_000)
    assert not ui.startButton.enabled and ui.detectedLabel.text

    # the phantom folder: the intake report is shown, Start becomes possible
    typeInto(ui.sourceLineEdit, str(source))
    qtbot.waitUntil(lambda: ui.startButton.enabled, timeout=60_000)
    assert "4" in ui.detectedLabel.text and ui.labelsLabel.text
    typeInto(ui.trainingFolderLineEdit, str(tmp_path / "training"))
    ui.epochsSpinBox.value = 2
    ui.deviceComboBox.setCurrentText("cpu")
    tinyIterations(section, monkeypatch)

    click(ui.startButton)
    assert ui.cancelButton.enabled and not ui.startButton.enabled and not ui.sourceLineEdit.enabled
    assert ui.progressBar.visible
    qtbot.waitUntil(lambda: chartRows(section) >= 1, timeout=RUN_TIMEOUT_MS)  # one chart row per finished epoch
    assert "epoch" in ui.progressBar.format.lower() or ui.progressBar.value > 0
    click(ui.cancelButton)
    qtbot.waitUntil(lambda: not section.presenter.isBusy(), timeout=30_000)
    assert ui.startButton.enabled and ui.resumeButton.enabled and ui.resumeLabel.text.startswith("Resume: ")

    # the user closes the module and opens it again: the run is found, Resume continues it
    widget.cleanup()
    again = UMambaSegmentation.UMambaSegmentationWidget()
    again.setup()
    again.parent.show()
    section, ui = again.training, again.training.ui
    assert ui.trainingFolderLineEdit.text == str(tmp_path / "training")  # remembered in the settings
    click(section.button)
    assert ui.resumeButton.enabled and ui.resumeLabel.visible
    click(ui.resumeButton)
    assert ui.cancelButton.enabled
    qtbot.waitUntil(lambda: not section.presenter.isBusy(), timeout=RUN_TIMEOUT_MS)
    assert section.presenter.state == "done", ui.errorLabel.text + "\n" + ui.logTextEdit.toPlainText()[-2000:]
    assert chartRows(section) == 2 and ui.progressBar.value == 100
    # the model is in the panel's store and selected there
    names = [m.name for m in again.panel.store.models()]
    assert len(names) == 1 and again.ui.modelSelector.currentText == names[0]
    assert dialogs.shown == [] or all(d.detailedText != "None" for d in dialogs.shown)
    again.cleanup()


def test_use_scene_without_segmentations_and_browse(module_widget, dialogs, qtbot, monkeypatch, tmp_path):
    import qt
    section, ui = module_widget.training, module_widget.training.ui
    click(section.button)
    click(ui.useSceneButton)  # an empty scene has no volume/segmentation pairs
    qtbot.waitUntil(lambda: len(dialogs.shown) == 1)
    assert dialogs.shown[0].text.startswith("Could not use the scene's segmentations")
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a: str(tmp_path)))
    click(ui.browseTrainingFolderButton)
    assert ui.trainingFolderLineEdit.text == str(tmp_path)
    assert qt.QSettings().value("UMambaSegmentation/TrainingFolder") == str(tmp_path)
    click(ui.browseSourceButton)
    assert ui.sourceLineEdit.text == str(tmp_path)
    qtbot.waitUntil(lambda: section.presenter.state != "inspecting", timeout=60_000)
    assert not ui.startButton.enabled
