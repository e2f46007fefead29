"""The panel's state machine and the bad-input paths, on a real MRML scene; no prediction needed here
(the end-to-end runs are in test_slicer_segment.py)."""

import os
import sys
import textwrap

import numpy as np
import pytest

from test_slicer_helpers import addVolume, newScene, pythonForUmamba, writeModelFolder

from UMambaSegmentationLib.Errors import UserFacingError
from UMambaSegmentationLib.ModelInfo import ModelInfo
from UMambaSegmentationLib.Presenter import CANCELLED, DONE, FAILED, IDLE, RUNNING, SegmentationPresenter
from UMambaSegmentationLib.ProcessRunner import ProcessRunner
from UMambaSegmentationLib.SegmentationLogic import SegmentationLogic, SegmentationOptions

LABELS = {"background": 0, "liver": 1, "spleen": 2}


def scene_with_volume(shape=(12, 16, 20), components=1):
    scene = newScene()
    array = np.zeros(shape + ((components,) if components > 1 else ()), np.float32)
    volume = addVolume(scene, array, "patient", spacing=(1.0, 1.0, 2.0), components=components)
    return scene, volume


def node_ids(scene):
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def presenter_for(scene, tmp_path):
    changes = []
    logic = SegmentationLogic(scene, pythonExecutable=pythonForUmamba(), tempRoot=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(exist_ok=True)
    presenter = SegmentationPresenter(logic, onChange=lambda: changes.append(presenter.state))
    return presenter, changes


def assert_idle_like(view):
    assert view.buttonText == "Segment" and view.buttonEnabled and view.inputsEnabled


def test_idle_view(tmp_path):
    scene, volume = scene_with_volume()
    presenter, _ = presenter_for(scene, tmp_path)
    view = presenter.view()
    assert view.state == IDLE and not view.progressVisible and view.errorText == ""
    assert_idle_like(view)
    assert "model" in view.buttonToolTip
    presenter.setModelFolder(writeModelFolder(tmp_path, LABELS))
    assert "volume" in presenter.view().buttonToolTip
    presenter.setVolumes([volume])
    assert "patient" in presenter.view().buttonToolTip


def fail_with(presenter, scene, tmp_path):
    before = node_ids(scene)
    presenter.segment()
    view = presenter.view()
    assert presenter.state == FAILED and view.state == FAILED
    assert_idle_like(view)  # after a failure the user can fix the input and press Segment again
    assert view.errorText and not view.progressVisible
    assert presenter.takeErrorForDialog() is presenter.error and presenter.takeErrorForDialog() is None
    assert node_ids(scene) == before  # nothing added to the scene
    assert os.listdir(tmp_path / "tmp") == []  # nothing left in the temporary folder
    return view.errorText


@pytest.mark.parametrize("case, expected", [
    ("no model", "No model selected"),
    ("no volume", "No input volume selected"),
    ("2d volume", "single slice"),
    ("4d volume", "values per voxel"),
    ("too few channels", "needs 2 input volumes (T1, T2); 1 selected"),
    ("no dataset.json", "has no dataset.json"),
    ("broken plans.json", "plans.json"),
    ("no checkpoint", "no trained fold"),
    ("no labels", "lists no labels"),
    ("only background", "only a background label"),
    ("channel grids differ", "different voxel grids"),
])
def test_bad_input_gives_a_clear_message_and_leaves_the_scene_alone(tmp_path, case, expected):
    scene, volume = scene_with_volume()
    presenter, _ = presenter_for(scene, tmp_path)
    volumes = [volume]
    model = writeModelFolder(tmp_path / "m", LABELS)
    if case == "no model":
        model = None
    elif case == "no volume":
        volumes = []
    elif case == "2d volume":
        volumes = [addVolume(scene, np.zeros((1, 16, 20), np.float32), "one slice")]
    elif case == "4d volume":
        volumes = [addVolume(scene, np.zeros((12, 16, 20, 5), np.float32), "dynamic", components=5)]
    elif case == "too few channels":
        model = writeModelFolder(tmp_path / "m2", LABELS, channels=("T1", "T2"))
    elif case == "no dataset.json":
        os.remove(model / "dataset.json")
    elif case == "broken plans.json":
        (model / "plans.json").write_text("{ not json")
    elif case == "no checkpoint":
        os.remove(model / "fold_0" / "checkpoint_final.pth")
    elif case == "no labels":
        model = writeModelFolder(tmp_path / "m3", None)
    elif case == "only background":
        model = writeModelFolder(tmp_path / "m4", {"background": 0})
    elif case == "channel grids differ":
        model = writeModelFolder(tmp_path / "m5", LABELS, channels=("T1", "T2"))
        volumes = [volume, addVolume(scene, np.zeros((12, 16, 21), np.float32), "T2 other grid")]
    if model is not None:
        presenter.setModelFolder(model)
    presenter.setVolumes(volumes)
    text = fail_with(presenter, scene, tmp_path)
    assert expected in text, text
    if case in ("no dataset.json", "broken plans.json", "no checkpoint", "no labels"):
        assert presenter.view().buttonToolTip == presenter.error.message  # reported when chosen, too


def test_2d_model_accepts_a_single_slice():
    model_dir = None
    scene, _ = scene_with_volume()
    one_slice = addVolume(scene, np.zeros((1, 16, 20), np.float32), "one slice")
    from UMambaSegmentationLib.SegmentationLogic import validateInputs
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = writeModelFolder(tmp, LABELS, configuration="2d", patchSize=(64, 64))
        assert validateInputs(ModelInfo.fromFolder(model_dir), [one_slice]) == [one_slice]


def test_model_info_reads_labels_channels_configuration_and_folds(tmp_path):
    folder = writeModelFolder(tmp_path, {"background": 0, "b": 2, "a": 1}, channels=("T2", "ADC"),
                              folds=("0", "3"))
    info = ModelInfo.fromFolder(folder)
    assert info.labels == [(1, "a"), (2, "b")] and info.channelNames == ["T2", "ADC"]
    assert info.configuration == "3d_fullres" and info.dimensions == 3 and info.folds == ["0", "3"]
    assert info.trainer == "nnUNetTrainerUMambaBot" and info.checkpointName() == "checkpoint_final.pth"
    assert "a, b" in info.summary()


def job_script_runner(code):
    return ProcessRunner([sys.executable, "-c", textwrap.dedent(code)]).start()


class ScriptJob:
    """A job around a real process that writes umamba-style events: drives the presenter through its states."""

    def __init__(self, code, succeed_status="succeeded"):
        self.runner = job_script_runner(code)
        self.status = "running"
        self.error = None
        self.segmentationNode = None

    def poll(self):
        events = self.runner.poll()
        for event in events:
            if event["event"] == "error":
                self.error = UserFacingError(event["message"], event.get("hint"))
            if event["event"] == "process_exit":
                self.status = "succeeded" if event["returncode"] == 0 else "failed"
        return events

    def cancel(self):
        self.runner.cancel()
        self.status = "cancelled"


def run_until_settled(presenter, timeout=30):
    import time
    deadline = time.monotonic() + timeout
    while presenter.isRunning() and time.monotonic() < deadline:
        presenter.poll()
        time.sleep(0.02)


EVENTS = """
    import json, sys, time
    def e(**k): print(json.dumps(k), flush=True)
    e(event="stage", stage="predict", message="predicting 1 case(s)")
    e(event="progress", what="tile", current=1, total=4, case="case")
    e(event="progress", what="tile", current=3, total=4, case="case")
    e(event="log", message="a log line", level="info")
    e(event="epoch_end", epoch=1, of=2)
"""


def test_running_then_done(tmp_path):
    scene, _ = scene_with_volume()
    presenter, changes = presenter_for(scene, tmp_path)
    presenter.runJob(ScriptJob(EVENTS + "\n    time.sleep(1.0)\n    e(event='done', outputs=[])\n"),
                     "import", "Importing")
    view = presenter.view()
    assert view.state == RUNNING and view.buttonText == "Cancel" and view.buttonEnabled
    assert not view.inputsEnabled and view.progressVisible and view.progressValue == -1
    import time
    deadline = time.monotonic() + 20
    while presenter.view().progressValue != 75 and time.monotonic() < deadline:
        presenter.poll()
        time.sleep(0.02)
    view = presenter.view()
    assert view.state == RUNNING and view.progressValue == 75 and view.progressText == "case 3/4"
    assert "a log line" in presenter.logLines
    with pytest.raises(UserFacingError):  # one task at a time
        presenter.runJob(ScriptJob("pass"), "import", "x")
    run_until_settled(presenter)
    view = presenter.view()
    assert view.state == DONE and view.progressValue == 100 and view.buttonText == "Segment"
    assert view.inputsEnabled and view.errorText == ""
    assert presenter.takeErrorForDialog() is None
    assert changes[0] == RUNNING and changes[-1] == DONE


def test_running_then_failed_keeps_the_process_message_and_details(tmp_path):
    scene, _ = scene_with_volume()
    presenter, _ = presenter_for(scene, tmp_path)
    presenter.runJob(ScriptJob(EVENTS + """
    sys.stderr.write("Traceback: something deep\\n")
    e(event="error", message="the model needs 2 channels", hint="pass both files")
    sys.exit(2)
    """), "import", "Importing")
    run_until_settled(presenter)
    view = presenter.view()
    assert view.state == FAILED and view.errorText == "the model needs 2 channels\npass both files"
    assert view.buttonText == "Segment" and view.inputsEnabled
    assert "ERROR: the model needs 2 channels" in presenter.logLines
    assert "Traceback: something deep" in presenter.logLines


def test_running_then_cancelled_with_the_button(tmp_path):
    scene, _ = scene_with_volume()
    presenter, _ = presenter_for(scene, tmp_path)
    job = ScriptJob(EVENTS + "\n    time.sleep(60)\n")
    presenter.runJob(job, "import", "Importing")
    presenter.poll()
    presenter.pressButton()  # the same button is Cancel while running
    view = presenter.view()
    assert view.state == CANCELLED and view.buttonText == "Segment" and view.inputsEnabled
    assert not view.progressVisible and view.errorText == ""
    assert job.runner.poll()[-1]["cancelled"] is True
    presenter.cancel()  # cancelling twice is harmless
    assert presenter.state == CANCELLED


def test_segment_from_cancelled_or_failed_starts_again(tmp_path):
    scene, volume = scene_with_volume()
    presenter, _ = presenter_for(scene, tmp_path)
    presenter.setVolumes([volume])
    presenter.segment()
    assert presenter.state == FAILED and "No model" in presenter.view().errorText
    presenter.setModelFolder(writeModelFolder(tmp_path, {"background": 0}))
    presenter.pressButton()
    assert presenter.state == FAILED and "only a background" in presenter.view().errorText


def test_options_reach_the_command_line(tmp_path):
    from UMambaSegmentationLib.SegmentationLogic import SegmentationJob
    model = ModelInfo.fromFolder(writeModelFolder(tmp_path, LABELS, folds=("0", "1")))
    job = SegmentationJob(None, model, [], SegmentationOptions(device="cpu", disableTta=True, stepSize=0.75),
                          "/py", None)
    command = job.command(["a_0000.nii.gz"], "out.nii.gz")
    assert command[:4] == ["/py", "-m", "umamba", "predict"]
    assert command[command.index("-f") + 1:command.index("-f") + 3] == ["0", "1"]
    assert "--disable-tta" in command and command[command.index("--device") + 1] == "cpu"
    assert command[command.index("--step-size") + 1] == "0.75" and command[-1] == "--progress-json"
    auto = SegmentationJob(None, model, [], SegmentationOptions(), "/py", None).command(["a"], "o")
    assert "--device" not in auto and "--disable-tta" not in auto
