"""'Compute on' a server, as a user meets it: the module panel (Testing/slicer_qt_layer, real Qt widgets, the real
scene) against a real `umamba serve` on 127.0.0.1 holding the session's tiny trained model, driven by clicks and
typing. Segment runs `umamba predict --server` in a Python without site-packages: no torch, numpy or nnU-Net."""

import http.server
import sys
import threading

import pytest
from slicer_qt_layer import click
from slicer_qt_layer.fixtures import *  # noqa: F401,F403  (slicer_app, dialogs, module_widget)
from test_slicer_helpers import loadVolume, serveModel
from UMambaSegmentationLib.RemoteCompute import ComputeTarget

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_tiny_model):
    srv = serveModel(tmp_path_factory.mktemp("slicer_widget_serve") / "data", trained_tiny_model)
    yield srv
    srv.stop()


@pytest.fixture
def not_umamba(tmp_path):
    """Some other web server on a loopback port (/healthz answers 404)."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def typeInto(qtbot, lineEdit, text):
    """Select all, type, press Return (editingFinished), as a user does."""
    from PyQt5 import QtCore
    lineEdit.selectAll()
    qtbot.keyClicks(lineEdit, text)
    qtbot.keyClick(lineEdit, QtCore.Qt.Key_Return)


def useServer(qtbot, ui, url, token):
    click(ui.computeServerRadioButton)
    typeInto(qtbot, ui.serverUrlLineEdit, url)
    typeInto(qtbot, ui.serverTokenLineEdit, token)


def modelNames(ui):
    return [ui.modelSelector.itemText(i) for i in range(ui.modelSelector.count)]


def segmentationNodes(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]


def test_compute_on_choice_settings_and_test_connection(module_widget, dialogs, qtbot, server, not_umamba):
    import qt
    import UMambaSegmentation
    ui = module_widget.ui
    # this computer by default: the server fields wait, the store buttons work
    assert ui.computeLocalRadioButton.checked and ui.computeCollapsibleButton.text == "Compute on: this computer"
    assert not ui.serverUrlLineEdit.enabled and not ui.testConnectionButton.enabled and ui.importFolderButton.enabled

    click(ui.computeServerRadioButton)
    assert ui.serverUrlLineEdit.enabled and ui.testConnectionButton.enabled and not ui.importFolderButton.enabled
    assert ui.computeCollapsibleButton.text == "Compute on: server"
    assert ui.modelSelector.count == 0 and "URL" in ui.modelCardLabel.text
    click(ui.testConnectionButton)  # no URL yet
    assert "Enter the server's URL" in ui.connectionLabel.text

    # not a umamba server; then the right server with a wrong token: clear messages, no model listed
    typeInto(qtbot, ui.serverUrlLineEdit, not_umamba)
    click(ui.testConnectionButton)
    assert "is not a umamba server" in ui.connectionLabel.text and "c0392b" in ui.connectionLabel.styleSheet
    typeInto(qtbot, ui.serverUrlLineEdit, server.url)
    typeInto(qtbot, ui.serverTokenLineEdit, "not-the-token")
    assert modelNames(ui) == [] and "refused the model list (401)" in ui.modelCardLabel.text
    click(ui.testConnectionButton)
    assert "does not accept this token" in ui.connectionLabel.text

    # the right token: version and GPUs shown, the server's models listed
    typeInto(qtbot, ui.serverTokenLineEdit, server.token)
    click(ui.testConnectionButton)
    assert ui.connectionLabel.text.startswith("Connected: umamba ") and "no GPU" in ui.connectionLabel.text
    assert "1e8449" in ui.connectionLabel.styleSheet
    assert modelNames(ui) == ["tiny"] and ui.modelCardLabel.text.startswith("On the server: tiny: 1 labels (object)")
    assert not dialogs.shown

    # kept in Slicer's settings: the module opened again computes on the same server
    settings = qt.QSettings()
    assert settings.value("UMambaSegmentation/ComputeOn") == "server"
    assert settings.value("UMambaSegmentation/ServerURL") == server.url
    assert settings.value("UMambaSegmentation/ServerToken") == server.token
    again = UMambaSegmentation.UMambaSegmentationWidget()
    again.setup()
    qtbot.addWidget(again.parent)
    assert again.ui.computeServerRadioButton.checked and again.ui.serverUrlLineEdit.text == server.url
    assert modelNames(again.ui) == ["tiny"] and again.panel.compute.target().token == server.token
    again.cleanup()

    # back to this computer: the local (empty) store, the URL kept for later
    click(ui.computeLocalRadioButton)
    assert modelNames(ui) == [] and ui.modelCardLabel.text.startswith("No model in ") and ui.importFolderButton.enabled
    assert settings.value("UMambaSegmentation/ComputeOn") == "local" and ui.serverUrlLineEdit.text == server.url
    assert not module_widget.panel.compute.target().isRemote
    assert module_widget.training.compute() == module_widget.panel.compute.target()


def test_segment_and_cancel_on_the_server_without_torch(module_widget, dialogs, qtbot, monkeypatch, server,
                                                        trained_tiny_model, tmp_path):
    import slicer
    # Slicer's Python with only the extension: no site-packages at all (the carried umamba client is enough)
    bare = tmp_path / "python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    monkeypatch.setenv("UMAMBA_SLICER_PYTHON", str(bare))
    ui, panel = module_widget.ui, module_widget.panel
    useServer(qtbot, ui, server.url, server.token)
    assert ui.modelSelector.currentText == "tiny"
    case = sorted((trained_tiny_model.parents[2] / "nnUNet_raw" / "Dataset990_TinyPhantom" / "imagesTs")
                  .glob("*_0000.nii.gz"))[0]
    volume = loadVolume(slicer.mrmlScene, case, "phantom")
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.deviceComboBox.setCurrentText("cpu")
    ui.fastCheckBox.checked = True  # `--fast` with `--server`: the server gets its step size and no mirroring

    # Cancel while the client runs: nothing added, no process left
    click(ui.segmentButton)
    job = panel.presenter.job
    assert ui.segmentButton.text == "Cancel" and {"--server", "--fast"} <= set(job.runner.command)
    assert server.token not in " ".join(job.runner.command)  # the token is not in the process list
    qtbot.waitUntil(lambda: job.runner.isRunning())
    click(ui.segmentButton)
    assert ui.statusLabel.text == "Cancelled. Nothing was added to the scene."
    qtbot.waitUntil(lambda: not job.runner.isRunning(), timeout=20_000)
    assert segmentationNodes(slicer.mrmlScene) == []

    # Segment: the server's progress in the panel, a named segmentation next to the volume
    click(ui.segmentButton)
    qtbot.waitUntil(lambda: panel.presenter.state in ("done", "failed"), timeout=RUN_TIMEOUT_MS)
    assert panel.presenter.state == "done", ui.errorLabel.text + "\n" + ui.logTextEdit.toPlainText()
    assert ui.progressBar.value == 100 and ui.segmentButton.text == "Segment"
    nodes = segmentationNodes(slicer.mrmlScene)
    assert len(nodes) == 1 and ui.statusLabel.text.startswith(f"Done: '{nodes[0].GetName()}' with 1 segments")
    segmentation = nodes[0].GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == ["object"]
    assert "Finished." in ui.logTextEdit.toPlainText() and not dialogs.shown


def test_train_from_folder_on_the_server(module_widget, dialogs, qtbot, monkeypatch, server, trained_tiny_model,
                                         tmp_path):
    import dataclasses
    from UMambaSegmentationLib.ModelStore import ModelStore
    ui, section = module_widget.ui, module_widget.training
    useServer(qtbot, ui, server.url, server.token)
    tui = section.ui
    click(section.button)
    source = trained_tiny_model.parents[2] / "nnUNet_raw" / "Dataset990_TinyPhantom"
    typeInto(qtbot, tui.sourceLineEdit, str(source))
    qtbot.waitUntil(lambda: tui.startButton.enabled, timeout=60_000)
    typeInto(qtbot, tui.trainingFolderLineEdit, str(tmp_path / "training"))
    tui.epochsSpinBox.value = 1
    tui.deviceComboBox.setCurrentText("cpu")
    settings = section.settings  # nnU-Net's 250 iterations per epoch are too many for a test: 2 batches
    monkeypatch.setattr(section, "settings", lambda: dataclasses.replace(settings(), iterationsPerEpoch=2,
                                                                        valIterations=1))
    click(tui.startButton)
    assert tui.cancelButton.enabled and section.logic.compute == ComputeTarget(server.url, server.token)
    qtbot.waitUntil(lambda: not section.presenter.isBusy(), timeout=RUN_TIMEOUT_MS)
    assert section.presenter.state == "done", tui.errorLabel.text + "\n" + tui.logTextEdit.toPlainText()[-2000:]
    assert tui.progressBar.value == 100 and section.presenter.job.state.remoteJob
    name = section.presenter.job.state.modelName
    assert name in [m.name for m in ModelStore(module_widget.panel.store.folder).models()]  # in the local store
    assert ui.modelSelector.currentText == name  # the server keeps it too: the panel selects it for Segment
    assert not dialogs.shown
