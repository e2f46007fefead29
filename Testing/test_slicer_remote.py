"""'Compute on' a server: the module's logic against a real `umamba serve` on 127.0.0.1 (slicer-core scene, the
real `umamba predict --server` in a background process, the session's tiny trained model on the server)."""

import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from test_slicer_helpers import loadVolume, newScene, pythonForUmamba, segmentLabelArray, serveModel

from UMambaSegmentationLib.RemoteCompute import ComputeTarget, serverModels, checkConnection
from UMambaSegmentationLib.SegmentationLogic import SegmentationLogic, SegmentationOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "umamba" / "tests"))
from remote_server import free_port  # noqa: E402  (the package tests' loopback server)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_tiny_model):
    srv = serveModel(tmp_path_factory.mktemp("slicer_serve") / "data", trained_tiny_model)
    yield srv
    srv.stop()


def test_compute_on_settings_and_test_connection(server, tmp_path):
    from PyQt5.QtCore import QSettings

    settings = QSettings(str(tmp_path / "slicer.ini"), QSettings.IniFormat)
    ComputeTarget(server.url, server.token).save(settings)
    settings.sync()
    target = ComputeTarget.fromSettings(QSettings(str(tmp_path / "slicer.ini"), QSettings.IniFormat))
    assert target == ComputeTarget(server.url, server.token) and target.isRemote
    report = checkConnection(target)
    assert report.ok and report.version and "no GPU" in report.message, report.message
    wrong = checkConnection(ComputeTarget(server.url, "not-the-token"))
    assert not wrong.ok and "token" in wrong.message
    away = checkConnection(ComputeTarget(f"http://127.0.0.1:{free_port()}", server.token))
    assert not away.ok and "Cannot reach" in away.message
    assert checkConnection(ComputeTarget()).ok and ComputeTarget().arguments() == []


def test_segment_on_the_server(server, trained_tiny_model, tmp_path):
    target = ComputeTarget(server.url, server.token)
    models = serverModels(target)
    assert [m.name for m in models] == ["tiny"] and models[0].labels == [(1, "object")]
    scene = newScene()
    case = sorted((trained_tiny_model.parents[2] / "nnUNet_raw" / "Dataset990_TinyPhantom" / "imagesTs")
                  .glob("*_0000.nii.gz"))[0]
    volume = loadVolume(scene, case, "phantom")
    logic = SegmentationLogic(scene, pythonExecutable=pythonForUmamba(), tempRoot=str(tmp_path),
                              keepTemporaryFiles=True)
    job = logic.start(models[0], [volume], SegmentationOptions(device="cpu", disableTta=True, compute=target))
    assert server.token not in " ".join(job.runner.command)  # the token is not in the process list
    deadline, events = time.monotonic() + 600, []
    while job.status == "running":
        assert time.monotonic() < deadline
        events += job.poll()
        time.sleep(0.05)
    assert job.status == "succeeded", (job.error, job.error and job.error.details)
    assert any(e.get("event") == "progress" for e in events)  # the server's progress reaches the panel
    node = job.segmentationNode
    seg = node.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    predicted = np.asarray(nib.load(job.outputFile).dataobj).transpose(2, 1, 0)
    assert predicted.any() and np.array_equal(segmentLabelArray(node, ids, volume), predicted)


def test_train_from_folder_on_the_server(server, trained_tiny_model, tmp_path):
    """Train from folder: checked and written here, planned and trained on the server, the model lands in the local
    store with its epochs in the run's chart."""
    from UMambaSegmentationLib.TrainingLogic import TrainingLogic, TrainingSettings

    target = ComputeTarget(server.url, server.token)
    store = tmp_path / "store"
    logic = TrainingLogic(newScene(), pythonExecutable=pythonForUmamba(), storeFolder=str(store), compute=target)
    source = trained_tiny_model.parents[2] / "nnUNet_raw" / "Dataset990_TinyPhantom"
    job = logic.start(TrainingSettings(source=str(source), trainingFolder=str(tmp_path / "training"), epochs=2,
                                       iterationsPerEpoch=2, valIterations=1, device="cpu"))
    assert server.token not in " ".join(job.step.runner.command)
    deadline, stages = time.monotonic() + 900, []
    while job.status == "running":
        assert time.monotonic() < deadline
        stages += [e["stage"] for e in job.poll() if e.get("event") == "training_stage"]
        time.sleep(0.1)
    assert job.status == "succeeded", (job.error, job.error and job.error.details)
    assert stages == ["train", "finished"]  # no local plan, no separate register step
    assert [e["epoch"] for e in job.state.epochs] == [1, 2] and job.state.remoteJob
    assert (store / job.state.modelName / "umamba_card.json").is_file()
    assert job.state.modelName in {m.name for m in job.store.models()}
