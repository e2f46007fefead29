"""A real training from a folder, driven like the panel drives it: TrainingPresenter -> TrainingLogic ->
ProcessRunner -> `umamba import-dataset / plan / train --progress-json / import-model`, on the CPU.

One run (module fixture) is started, cancelled after its first checkpoint, found again in the training folder by
a fresh logic and presenter in a fresh scene (as after a Slicer restart), resumed with --continue, and finished.
The tests then check what each part left behind: chart rows, run state, processes, model store, segmentation.
"""

import math
import time

import numpy as np
import pytest
import SimpleITK as sitk

from test_slicer_helpers import addVolume, newScene, pidAlive, pythonForUmamba, segmentLabelArray

from UMambaSegmentationLib.ModelStore import ModelStore
from UMambaSegmentationLib.ProcessRunner import descendantPids
from UMambaSegmentationLib.SegmentationLogic import SegmentationLogic, SegmentationOptions
from UMambaSegmentationLib.TrainingChart import DICE_PREFIX, EPOCH, TRAIN_LOSS, VAL_LOSS, TrainingChart
from UMambaSegmentationLib.TrainingLogic import TrainingLogic
from UMambaSegmentationLib.TrainingPresenter import CANCELLED, DONE, READY, RUNNING, TrainingPresenter
from UMambaSegmentationLib.TrainingRun import TrainingSettings

EPOCHS = 3
SHAPE = (12, 24, 24)      # z, y, x: a tiny 3D phantom, so that an epoch takes seconds on a CPU
SPACING = (1.0, 1.0, 1.5)  # x, y, z


def writePhantoms(folder, n):
    """images/ + labels/ of the synthetic phantom (umamba.synthetic), as a user's plain folder would hold."""
    from umamba.synthetic import phantom_case
    rng = np.random.default_rng(3)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    cases = []
    for i in range(n):
        images, label = phantom_case(SHAPE, rng)
        for array, sub in ((images[0], "images"), (label, "labels")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing(SPACING)
            sitk.WriteImage(image, str(folder / sub / f"phantom{i}.nrrd"))
        cases.append((images[0], label))
    return cases


def pollUntil(presenter, condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        presenter.poll()
        if time.monotonic() > deadline:
            tail = "\n".join(presenter.logLines[-40:])
            raise AssertionError(f"timed out waiting for {what}; state {presenter.state}; log:\n{tail}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    with pytest.MonkeyPatch.context() as patch:
        # Nothing of the user's own store or workspace is touched; restored after this module.
        patch.setenv("UMAMBA_HOME", str(root / "home"))
        for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            patch.delenv(var, raising=False)
        yield trainCancelRestartResume(root)


def trainCancelRestartResume(root):
    source = root / "My Phantoms"
    writePhantoms(source, 4)
    held_out = writePhantoms(root / "heldout", 1)[0]
    store = root / "store"
    settings = TrainingSettings(source=str(source), trainingFolder=str(root / "workspace"), epochs=EPOCHS,
                                configuration="3d_fullres", variant="bot", device="cpu", iterationsPerEpoch=2,
                                valIterations=1, modelStoreFolder=str(store))
    python = pythonForUmamba()
    r = {"root": root, "settings": settings, "store": store, "heldOut": held_out, "events1": [], "events2": []}

    # -- first session: inspect, start, cancel after the first checkpoint ------------------------------------------
    scene1 = newScene()
    presenter1 = TrainingPresenter(TrainingLogic(scene1, pythonExecutable=python),
                                   onEvent=r["events1"].append)
    presenter1.setSource(str(source))
    pollUntil(presenter1, lambda: presenter1.state != "inspecting", 120, "the dry-run import")
    assert presenter1.state == READY, presenter1.view().errorText
    r["inspectView"] = presenter1.view()
    presenter1.setSettings(settings)
    presenter1.start()
    assert presenter1.state == RUNNING
    r["runningView"] = presenter1.view()
    job1 = presenter1.job
    pollUntil(presenter1, lambda: job1.state.lastCheckpointEpoch >= 1, 600, "the first checkpoint")
    r["pidsBeforeCancel"] = [job1.step.runner.pid] + descendantPids(job1.step.runner.pid)
    presenter1.cancel()
    r["cancelledView"] = presenter1.view()
    r["presenter1"], r["scene1"], r["state1"] = presenter1, scene1, job1.state
    r["chart1Rows"] = TrainingChart(scene1, job1.state.runId).rows()

    # -- "Slicer restarted": a new scene, logic and presenter find the run in the training folder ------------------
    scene2 = newScene()
    logic2 = TrainingLogic(scene2, pythonExecutable=python)
    models = []
    presenter2 = TrainingPresenter(logic2, onEvent=r["events2"].append, onModelReady=models.append)
    found = logic2.resumableRuns(settings.trainingFolder)
    presenter2.setFoundRuns(found)
    r["found"] = [(f.runId, f.stage, f.status, [e["epoch"] for e in f.epochs]) for f in found]  # before resume
    r["restartView"] = presenter2.view()
    presenter2.resume()
    r["chart2RowsAtResume"] = presenter2.job.chart.rows()
    pollUntil(presenter2, lambda: presenter2.state != RUNNING, 900, "the resumed training to finish")
    assert presenter2.state == DONE, presenter2.view().errorText + "\n" + "\n".join(presenter2.logLines[-40:])
    r.update(presenter2=presenter2, scene2=scene2, job2=presenter2.job, models=models)
    return r


def epochEvents(events):
    return [e for e in events if e.get("event") == "epoch_end"]


def test_inspection_shows_layout_cases_and_labels(run):
    view = run["inspectView"]
    assert view.sourceText == "folders layout, 4 cases"
    assert view.labelsText == "label_1" and view.channelsText == "image"
    assert view.startEnabled and not view.cancelEnabled
    running = run["runningView"]
    assert running.cancelEnabled and not running.startEnabled and not running.inputsEnabled


def test_cancel_stops_every_process_and_leaves_a_resumable_run(run):
    assert run["cancelledView"].state == CANCELLED
    assert run["cancelledView"].resumeEnabled and run["cancelledView"].startEnabled
    assert not any(pidAlive(p) for p in run["pidsBeforeCancel"])
    state = run["state1"]
    assert state.stage == "train" and state.status == "cancelled" and state.lastCheckpointEpoch >= 1
    # What a restarted Slicer finds in the training folder: this run, at stage train, with its first epoch(s).
    [(runId, stage, status, epochs)] = run["found"]
    assert (runId, stage, status) == (state.runId, "train", "cancelled") and epochs[:1] == [1]
    assert run["restartView"].resumeEnabled
    assert run["restartView"].resumeText.startswith("Resume: ") and "cancelled at stage train" in \
        run["restartView"].resumeText


def test_resume_continues_from_the_checkpoint_and_the_chart_keeps_earlier_epochs(run):
    first = epochEvents(run["events1"])
    second = epochEvents(run["events2"])
    assert [e["epoch"] for e in first][:1] == [1]
    checkpoint = run["state1"].lastCheckpointEpoch
    # The resumed process starts after the last checkpoint; nnU-Net's epoch numbering continues.
    assert [e["epoch"] for e in second] == list(range(checkpoint + 1, EPOCHS + 1))
    assert any("--continue" in str(e.get("message", "")) or "continuing from" in str(e.get("message", ""))
               for e in run["events2"])
    # After the restart the chart was rebuilt from the run file, with the epochs of the first session.
    assert [row[EPOCH] for row in run["chart2RowsAtResume"]] == [e["epoch"] for e in first][:len(
        run["chart2RowsAtResume"])]
    rows = run["job2"].chart.rows()
    assert [row[EPOCH] for row in rows] == list(range(1, EPOCHS + 1))
    logged = {e["epoch"]: e for e in first}
    logged.update({e["epoch"]: e for e in second})
    for row in rows:
        event = logged[int(row[EPOCH])]
        assert row[TRAIN_LOSS] == pytest.approx(event["train_loss"])
        assert row[VAL_LOSS] == pytest.approx(event["val_loss"])
        dice = event["pseudo_dice"][0]
        assert row[DICE_PREFIX + "label_1"] == pytest.approx(dice) if dice is not None else math.isnan(
            row[DICE_PREFIX + "label_1"])
    chart = run["job2"].chart.chartNode
    assert chart.GetNumberOfPlotSeriesNodes() == 3  # train loss, validation loss, Dice label_1
    # The first session's chart still holds what it had when cancelled.
    assert [row[EPOCH] for row in run["chart1Rows"]] == [e["epoch"] for e in first]


def test_finished_model_is_in_the_store_selected_and_segments_a_volume(run, tmp_path):
    state = run["job2"].state
    assert state.status == "finished" and state.stage == "finished"
    assert run["models"] == [state.modelName]              # the panel is told which model to select
    store = ModelStore(str(run["store"]))
    assert state.modelName in [m.name for m in store.models()]
    stored = store.find(state.modelName)
    assert stored.card["variant"] == "bot" and stored.card["configuration"] == "3d_fullres"
    assert stored.card["folds"] == ["all"]
    model = store.modelInfo(state.modelName)

    scene = run["scene2"]
    image, truth = run["heldOut"]
    volume = addVolume(scene, image, name="held-out phantom", spacing=SPACING)
    job = SegmentationLogic(scene, pythonExecutable=pythonForUmamba(), tempRoot=str(tmp_path)).start(
        model, [volume], SegmentationOptions(device="cpu", disableTta=True))
    deadline = time.monotonic() + 300
    while job.status == "running":
        job.poll()
        assert time.monotonic() < deadline, "prediction did not finish"
        time.sleep(0.1)
    assert job.status == "succeeded", job.error
    segmentation = job.segmentationNode.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["label_1"]
    # Six training iterations already find this easy object; a flipped or shifted geometry would not overlap it.
    predicted = segmentLabelArray(job.segmentationNode, [segmentation.GetNthSegmentID(0)], volume) > 0
    dice = 2 * np.count_nonzero(predicted & (truth > 0)) / (np.count_nonzero(predicted) + np.count_nonzero(truth))
    assert dice > 0.2, f"held-out Dice {dice:.3f}"
