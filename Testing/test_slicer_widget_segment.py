"""The module panel as a user meets it: UMambaSegmentationWidget.setup() on real Qt widgets and the real scene
(Testing/slicer_qt_layer), driven by clicks; the real `umamba import-model` and `umamba predict` run behind it."""

import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from slicer_qt_layer import click
from slicer_qt_layer.fixtures import *  # noqa: F401,F403  (slicer_app, dialogs, module_widget)
from test_slicer_helpers import addVolume, writeModelFolder

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 180_000


def modelNames(ui):
    return [ui.modelSelector.itemText(i) for i in range(ui.modelSelector.count)]


def segmentationNodes(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]


def phantomVolume(scene, name="phantom"):
    k, j, i = np.meshgrid(*[np.arange(16)] * 3, indexing="ij")
    inside = ((k - 8) ** 2 + (j - 8) ** 2 + (i - 8) ** 2) < 25
    return addVolume(scene, (inside * 300.0 + 100.0).astype(np.float32), name=name, spacing=(1.0, 1.0, 1.0))


def importFolder(widget, qtbot, monkeypatch, folder):
    import qt
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a: str(folder)))
    click(widget.ui.importFolderButton)
    qtbot.waitUntil(lambda: widget.ui.segmentButton.text == "Segment" and not widget.panel.presenter.isRunning(),
                    timeout=RUN_TIMEOUT_MS)


def test_panel_opens_with_an_empty_store_and_explains_what_to_do(module_widget, dialogs, qtbot, slicer_app):
    import slicer
    ui = module_widget.ui
    assert ui.segmentButton.text == "Segment" and ui.segmentButton.enabled
    assert ui.modelCardLabel.text.startswith("No model in ") and "import one" in ui.modelCardLabel.text
    assert ui.segmentButton.toolTip == "Choose a model first."
    assert not ui.progressBar.visible and not ui.errorLabel.visible
    assert ui.storePathLineEdit.currentPath == module_widget.panel.store.folder
    # bad input: no model, no volume -> a message in the panel and a dialog without empty details
    click(ui.segmentButton)
    qtbot.waitUntil(lambda: len(dialogs.shown) == 1)
    assert ui.errorLabel.visible and ui.errorLabel.text.strip()
    assert dialogs.shown[0].detailedText == ""  # not the text "None"
    assert segmentationNodes(slicer.mrmlScene) == []
    # sections the module adds below the panel
    assert module_widget.dependencies.collapsible.text == "Dependencies"
    assert module_widget.training.button.text == "Train from folder" and module_widget.training.button.collapsed


def test_segment_cancel_and_retry_after_an_error(module_widget, dialogs, qtbot, monkeypatch, trained_tiny_model):
    import slicer
    ui, panel = module_widget.ui, module_widget.panel
    importFolder(module_widget, qtbot, monkeypatch, trained_tiny_model)
    assert len(modelNames(ui)) == 1 and ui.modelSelector.currentText == modelNames(ui)[0]
    assert "object" in ui.modelCardLabel.text or ui.modelCardLabel.text
    assert ui.inputVolumeLabel.text.endswith(":")

    # no volume chosen: a clear message, nothing in the scene
    click(ui.segmentButton)
    qtbot.waitUntil(lambda: panel.presenter.state == "failed")
    assert "volume" in ui.errorLabel.text.lower() and ui.errorLabel.visible
    assert segmentationNodes(slicer.mrmlScene) == []

    volume = phantomVolume(slicer.mrmlScene)
    assert ui.inputVolumeSelector.nodeCount() == 1 and ui.inputVolumeSelector.currentNode() is None
    ui.inputVolumeSelector.setCurrentNode(volume)  # the user picks the volume
    assert ui.segmentButton.toolTip.startswith("Segment 'phantom'")

    # before a CPU run the panel says how long it will take; the estimate follows the settings
    assert ui.estimateLabel.text.startswith("On this CPU: about"), ui.estimateLabel.text
    ui.deviceComboBox.setCurrentText("cuda")
    assert ui.estimateLabel.text == ""          # no CPU estimate for a GPU run

    # start, then cancel while it runs: nothing added, no process, no temporary folder
    ui.deviceComboBox.setCurrentText("cpu")
    click(ui.segmentButton)
    assert ui.segmentButton.text == "Cancel" and ui.progressBar.visible and not ui.modelCollapsibleButton.enabled
    job = panel.presenter.job
    qtbot.waitUntil(lambda: job.runner is not None and job.runner.isRunning())
    click(ui.segmentButton)
    assert ui.segmentButton.text == "Segment" and ui.modelCollapsibleButton.enabled
    assert ui.statusLabel.text == "Cancelled. Nothing was added to the scene."
    qtbot.waitUntil(lambda: not job.runner.isRunning() and not os.path.exists(job.tempDir), timeout=20_000)
    assert segmentationNodes(slicer.mrmlScene) == []

    # the user closes the module (or Slicer) during a run: the process ends, nothing is left
    click(ui.segmentButton)
    job = panel.presenter.job
    qtbot.waitUntil(lambda: job.runner is not None and job.runner.isRunning())
    module_widget.cleanup()
    assert not job.runner.isRunning() and not os.path.exists(job.tempDir)
    assert segmentationNodes(slicer.mrmlScene) == []

    # opened again, the second click after the error and the cancel works: a named segmentation next to the volume
    import UMambaSegmentation
    module_widget = UMambaSegmentation.UMambaSegmentationWidget()
    module_widget.setup()
    qtbot.addWidget(module_widget.parent)
    module_widget.parent.show()
    ui, panel = module_widget.ui, module_widget.panel
    assert ui.modelSelector.currentText == modelNames(ui)[0]
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.deviceComboBox.setCurrentText("cpu")
    click(ui.segmentButton)
    assert ui.segmentButton.text == "Cancel"
    qtbot.waitUntil(lambda: panel.presenter.state in ("done", "failed"), timeout=RUN_TIMEOUT_MS)
    assert panel.presenter.state == "done", ui.errorLabel.text + "\n" + ui.logTextEdit.toPlainText()
    assert ui.segmentButton.text == "Segment" and ui.progressBar.value == 100 and ui.progressBar.visible
    nodes = segmentationNodes(slicer.mrmlScene)
    assert len(nodes) == 1 and ui.statusLabel.text.startswith(f"Done: '{nodes[0].GetName()}'")
    segmentation = nodes[0].GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["object"]
    assert "Finished." in ui.logTextEdit.toPlainText()
    assert not os.path.exists(job.tempDir)
    assert [d.text for d in dialogs.shown if "volume" in d.text.lower()]  # the error was also shown once
    module_widget.cleanup()


def test_python_without_umamba_and_a_store_that_cannot_be_written(module_widget, dialogs, qtbot, monkeypatch,
                                                                   trained_tiny_model, tmp_path):
    import slicer
    from UMambaSegmentationLib.ModelStore import CARD_FILE
    ui, panel = module_widget.ui, module_widget.panel
    # a store that cannot be written (its path runs through a file): importing says so, nothing else changes
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    ui.storePathLineEdit.currentPath = str(blocker / "models")
    importFolder(module_widget, qtbot, monkeypatch, trained_tiny_model)
    assert dialogs.shown[-1].text.startswith("Could not import the model: ")
    assert str(blocker / "models") in dialogs.shown[-1].text and modelNames(ui) == []

    # Slicer's Python without umamba: Segment fails with a message that says to install the dependencies
    store = tmp_path / "store"
    shutil.copytree(trained_tiny_model, store / trained_tiny_model.name)
    (store / trained_tiny_model.name / CARD_FILE).write_text('{"name": "tiny"}')
    ui.storePathLineEdit.currentPath = str(store)
    assert modelNames(ui) == ["tiny"]
    bare = tmp_path / "python"  # isolated mode, no site-packages: umamba cannot be imported
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    monkeypatch.setenv("UMAMBA_SLICER_PYTHON", str(bare))
    ui.inputVolumeSelector.setCurrentNode(phantomVolume(slicer.mrmlScene))
    shown = len(dialogs.shown)
    click(ui.segmentButton)
    qtbot.waitUntil(lambda: not panel.presenter.isRunning(), timeout=RUN_TIMEOUT_MS)
    assert panel.presenter.state == "failed" and "install the dependencies" in ui.errorLabel.text.lower()
    qtbot.waitUntil(lambda: len(dialogs.shown) > shown)
    assert "umamba" in dialogs.shown[-1].detailedText  # the log tail: No module named umamba
    assert segmentationNodes(slicer.mrmlScene) == [] and not os.path.exists(panel.presenter.job.tempDir)


def test_import_zip_delete_and_bad_models(module_widget, dialogs, qtbot, monkeypatch, trained_tiny_model, tmp_path):
    import qt
    ui, panel = module_widget.ui, module_widget.panel
    # a zip as nnUNetv2_export_model_to_zip writes it (the model folder's parents are kept)
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in trained_tiny_model.rglob("*"):
            if path.is_file() and "fold_all" not in path.parent.name or path.name == "checkpoint_final.pth":
                z.write(path, path.relative_to(trained_tiny_model.parents[1]))
    monkeypatch.setattr(qt.QFileDialog, "getOpenFileName", staticmethod(lambda *a: str(archive)))
    click(ui.importZipButton)
    qtbot.waitUntil(lambda: not panel.presenter.isRunning(), timeout=RUN_TIMEOUT_MS)
    assert panel.presenter.state == "done", ui.errorLabel.text
    assert len(modelNames(ui)) == 1 and os.path.isdir(panel.store.folderOf(ui.modelSelector.currentText))

    # a zip with a ../ member: refused, nothing written outside or into the store
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escaped.txt", "x")
        z.writestr("Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres/dataset.json", "{}")
    monkeypatch.setattr(qt.QFileDialog, "getOpenFileName", staticmethod(lambda *a: str(evil)))
    before = sorted(os.listdir(panel.store.folder))
    shown = len(dialogs.shown)
    click(ui.importZipButton)
    qtbot.waitUntil(lambda: not panel.presenter.isRunning(), timeout=RUN_TIMEOUT_MS)
    assert panel.presenter.state == "failed" and ui.errorLabel.visible
    qtbot.waitUntil(lambda: len(dialogs.shown) > shown)
    assert sorted(os.listdir(panel.store.folder)) == before and not (tmp_path / "escaped.txt").exists()

    # a model folder without a checkpoint: refused with a message
    noCheckpoint = writeModelFolder(tmp_path / "bare", labels={"background": 0, "liver": 1}, folds=())
    for checkpoint in noCheckpoint.rglob("*.pth"):
        checkpoint.unlink()
    importFolder(module_widget, qtbot, monkeypatch, noCheckpoint)
    assert panel.presenter.state == "failed" and "checkpoint" in ui.errorLabel.text.lower()
    assert len(modelNames(ui)) == 1

    # the user cancels the folder dialog: nothing happens
    monkeypatch.setattr(qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a: ""))
    shown = len(dialogs.shown)
    click(ui.importFolderButton)
    assert len(dialogs.shown) == shown

    # open the model's folder in the file browser
    opened = []
    monkeypatch.setattr(qt.QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url.toLocalFile())))
    click(ui.openModelFolderButton)
    assert opened == [panel.store.folderOf(ui.modelSelector.currentText)]

    # delete: "No" keeps it, "Yes" removes it and the panel says the store is empty
    name = ui.modelSelector.currentText
    dialogs.answer = False
    click(ui.deleteModelButton)
    qtbot.waitUntil(lambda: dialogs.shown[-1].text.startswith("Delete the model"))
    assert modelNames(ui) == [name]
    dialogs.answer = True
    click(ui.deleteModelButton)
    qtbot.waitUntil(lambda: modelNames(ui) == [])
    assert dialogs.shown[-1].buttons == ["Yes", "No"]
    assert ui.modelCardLabel.text.startswith("No model in ")

    # another store folder: remembered in the settings, the panel lists what is there
    other = tmp_path / "other_store"
    shutil.copytree(trained_tiny_model, other / "copied")
    ui.storePathLineEdit.currentPath = str(other)
    assert panel.store.folder == str(other) and qt.QSettings().value("UMambaSegmentation/ModelStoreFolder") == \
        str(other)


def test_two_channel_model_asks_for_a_second_volume(module_widget, dialogs, qtbot, tmp_path):
    import slicer
    ui, panel = module_widget.ui, module_widget.panel
    from UMambaSegmentationLib.ModelStore import CARD_FILE
    folder = writeModelFolder(panel.store.folder, labels={"background": 0, "tumour": 1}, channels=("T1", "T2"))
    (folder / CARD_FILE).write_text('{"name": "two-channel"}')
    panel.refreshModels(select="two-channel")
    assert len(panel.extraChannelSelectors) == 1, (ui.modelCardLabel.text, panel.presenter.modelError)
    assert not ui.extraChannelsWidget.isHidden()
    assert ui.inputVolumeLabel.text == "T1:" and panel.extraChannelSelectors[0][0].text == "T2:"
    volume = phantomVolume(slicer.mrmlScene)
    ui.inputVolumeSelector.setCurrentNode(volume)
    click(ui.segmentButton)  # one volume for two channels
    qtbot.waitUntil(lambda: panel.presenter.state == "failed")
    assert "T2" in ui.errorLabel.text or "channel" in ui.errorLabel.text.lower()
    assert segmentationNodes(slicer.mrmlScene) == []
    panel.extraChannelSelectors[0][1].setCurrentNode(phantomVolume(slicer.mrmlScene, "second"))
    assert len(panel.presenter.volumeNodes) == 2
    # a one-channel model again: the extra selector row goes away
    one = writeModelFolder(tmp_path / "one", labels={"background": 0, "liver": 1})
    shutil.copytree(one, os.path.join(panel.store.folder, "one"))
    (Path(panel.store.folder) / "one" / CARD_FILE).write_text('{"name": "one"}')
    panel.refreshModels(select="one")
    assert panel.extraChannelSelectors == [] and ui.extraChannelsWidget.isHidden()


def test_module_description_and_console_logic(slicer_app, tmp_path):
    """What Slicer reads from the module class, and the logic offered to Slicer's Python console."""
    import types
    import slicer
    import UMambaSegmentation
    parent = types.SimpleNamespace()
    UMambaSegmentation.UMambaSegmentation(parent)
    assert parent.title == "UMamba Segmentation" and parent.categories == ["Segmentation"]
    assert parent.dependencies == [] and "U-Mamba" in parent.acknowledgementText and "Segment" in parent.helpText
    logic = UMambaSegmentation.UMambaSegmentationLogic()
    assert logic.segmentationLogic().scene is slicer.mrmlScene
    assert logic.modelStore(str(tmp_path)).folder == str(tmp_path)
