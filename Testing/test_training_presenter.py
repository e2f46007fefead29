"""The training presenter's states with the real logic and real `umamba` processes (no training here: the long
run is in test_training_run.py). Covers inspection, bad folders, bad settings, a failed import that is resumed,
and a cancel during planning."""

import os
import time

import pytest

import numpy as np
import SimpleITK as sitk
from test_slicer_helpers import newScene, pythonForUmamba

from UMambaSegmentationLib.TrainingLogic import TrainingLogic
from UMambaSegmentationLib.TrainingPresenter import (CANCELLED, FAILED, IDLE, INVALID, READY, RUNNING,
                                                     TrainingPresenter, formatDuration)
from UMambaSegmentationLib.TrainingRun import TrainingSettings, findRuns


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def waitWhile(presenter, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while condition():
        presenter.poll()
        assert time.monotonic() < deadline, f"timed out in state {presenter.state}: {presenter.logLines[-20:]}"
        time.sleep(0.05)


def case_arrays(seed):
    """(image, label) of one small case: a bright box labelled 1 and a second box labelled 2."""
    rng = np.random.default_rng(seed)
    label = np.zeros((8, 12, 14), np.uint8)
    label[2:5, 2:5, 2:6] = 1
    label[2:5, 7:10, 6:10] = 2
    return (rng.normal(0, 1, label.shape) + 3 * (label > 0)).astype(np.float32), label


def write_image(path, array):
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def goodFolder(folder, n=3):
    folder.mkdir(parents=True)
    for i in range(n):
        image, label = case_arrays(i)
        write_image(folder / f"case{i}.nii.gz", image)
        write_image(folder / f"case{i}_seg.nii.gz", label)
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("UMAMBA_HOME", str(tmp_path / "home"))
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(var, raising=False)
    clock = Clock()
    presenter = TrainingPresenter(TrainingLogic(newScene(), pythonExecutable=pythonForUmamba()), clock=clock)
    return presenter, clock


def test_idle_then_a_missing_folder_then_a_folder_with_problems(env, tmp_path):
    presenter, _ = env
    view = presenter.view()
    assert view.state == IDLE and not view.startEnabled and not view.cancelEnabled and not view.resumeEnabled
    presenter.setSource(str(tmp_path / "nowhere"))
    assert presenter.state == INVALID and "does not exist" in presenter.view().errorText

    bad = goodFolder(tmp_path / "bad", n=1)
    write_image(bad / "extra.nii.gz", case_arrays(5)[0])    # an image without its label
    presenter.setSource(str(bad))
    assert presenter.view().cancelEnabled                     # the check can be cancelled
    waitWhile(presenter, lambda: presenter.state == "inspecting")
    view = presenter.view()
    assert view.state == INVALID and not view.startEnabled
    assert "image without a label file" in view.errorText and "at least 2" in view.errorText
    assert "extra: image without a label file" in presenter.error.details
    # Fixed in place: entering the same folder again checks it again.
    os.remove(bad / "extra.nii.gz")
    goodFolder(tmp_path / "more", n=1)
    for name in os.listdir(tmp_path / "more"):
        os.rename(tmp_path / "more" / name, bad / name.replace("case0", "case9"))
    presenter.setSource(str(bad))
    waitWhile(presenter, lambda: presenter.state == "inspecting")
    assert presenter.state == READY and presenter.view().sourceText == "side-by-side layout, 2 cases"
    presenter.setSource(str(bad))   # the same folder while ready: nothing new starts
    assert presenter.state == READY


def test_bad_settings_fail_before_anything_starts(env, tmp_path):
    presenter, _ = env
    shown = []

    class Recording(type(presenter)):
        """Records every status the presenter sets (one poll may handle several events: onChange fires once)."""
        def __setattr__(self, name, value):
            if name == "statusText":
                shown.append(value)
            super().__setattr__(name, value)

    presenter.__class__ = Recording
    presenter.setSource(str(goodFolder(tmp_path / "src")))
    waitWhile(presenter, lambda: presenter.state == "inspecting")
    assert presenter.state == READY and presenter.view().sourceText == "side-by-side layout, 3 cases"
    assert [t for t in shown if t.startswith("Checking case ")] == [f"Checking case {i}/3: case{i - 1}"
                                                                     for i in (1, 2, 3)], shown
    assert presenter.view().labelsText == "label_1, label_2"
    presenter.setSettings(TrainingSettings(source="", trainingFolder=str(tmp_path / "ws"), epochs=0))
    presenter.start()
    assert presenter.state == FAILED and "at least 1" in presenter.view().errorText
    assert presenter.takeErrorForDialog() is presenter.error and presenter.takeErrorForDialog() is None
    assert not (tmp_path / "ws" / "umamba_runs").exists()


def test_failed_import_is_resumed_and_cancel_during_planning_stops_it(env, tmp_path):
    presenter, clock = env
    source = goodFolder(tmp_path / "src")
    presenter.setSource(str(source))
    waitWhile(presenter, lambda: presenter.state == "inspecting")
    assert presenter.state == READY
    workspace = tmp_path / "ws"
    presenter.setSettings(TrainingSettings(source=str(source), trainingFolder=str(workspace), epochs=2,
                                           device="cpu"))
    (source / "case2.nii.gz").write_bytes(b"damaged after the check")
    presenter.start()
    assert presenter.state == RUNNING
    view = presenter.view()
    assert view.cancelEnabled and not view.startEnabled and not view.inputsEnabled and not view.resumeEnabled
    clock.now += 65
    assert presenter.view().progressText == "Importing the dataset, elapsed 0:01:05"
    waitWhile(presenter, lambda: presenter.state == RUNNING)
    assert presenter.state == FAILED and "not a readable image" in presenter.view().errorText
    [run] = findRuns(str(workspace))
    assert (run.stage, run.status) == ("import", "failed") and run.resumable
    assert not list((workspace / "nnUNet_raw").glob("Dataset*"))   # the failed import left no dataset
    view = presenter.view()
    assert view.resumeEnabled and "failed at stage import" in view.resumeText

    write_image(source / "case2.nii.gz", case_arrays(2)[0])   # fixed: resume goes on with the import
    presenter.resume()
    waitWhile(presenter, lambda: presenter.job.state.stage == "import" and presenter.state == RUNNING)
    assert presenter.state == RUNNING and presenter.job.state.stage == "plan"
    assert presenter.job.state.dataset == "Dataset501_src"
    runner = presenter.job.step.runner
    presenter.cancel()
    assert presenter.state == CANCELLED and not runner.isRunning()
    [run] = findRuns(str(workspace))
    assert (run.stage, run.status) == ("plan", "cancelled")
    assert presenter.view().resumeEnabled and "cancelled at stage plan" in presenter.view().resumeText


def test_durations_read_like_a_clock():
    assert formatDuration(None) == "-"
    assert formatDuration(59.9) == "0:00:59"
    assert formatDuration(3600 + 61) == "1:01:01"
