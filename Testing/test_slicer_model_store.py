"""The panel's model store (through the real `umamba import-model` process) and the self-test's parts."""

import argparse
import importlib
import json
import os
import time
import zipfile

import pytest

from test_slicer_helpers import newScene, pythonForUmamba

from UMambaSegmentationLib import SelfTest
from UMambaSegmentationLib.Errors import UserFacingError
from UMambaSegmentationLib.ModelStore import ModelStore
from UMambaSegmentationLib.Presenter import DONE, FAILED, SegmentationPresenter
from UMambaSegmentationLib.SegmentationLogic import SegmentationLogic


def drive(presenter, job, timeout=300):
    presenter.runJob(job, "import", "Importing")
    deadline = time.monotonic() + timeout
    while presenter.isRunning():
        assert time.monotonic() < deadline
        presenter.poll()
        time.sleep(0.05)


def test_import_list_open_delete_through_the_real_command(trained_tiny_model, tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    assert store.models() == []
    presenter = SegmentationPresenter(SegmentationLogic(newScene(), pythonExecutable=pythonForUmamba()))
    drive(presenter, store.importJob(str(trained_tiny_model), name="tiny", pythonExecutable=pythonForUmamba()))
    assert presenter.state == DONE, presenter.view().errorText
    [model] = store.models()
    assert model.name == "tiny" and os.path.isdir(store.folderOf("tiny"))
    dataset = json.loads((trained_tiny_model / "dataset.json").read_text())
    assert model.card["labels"] == dataset["labels"] and model.card["configuration"] == "3d_fullres"
    text = model.description()
    assert "Trainer: nnUNetTrainerUMambaBot (bot)" in text and "Folds: all" in text
    info = store.modelInfo("tiny")  # the stored folder is a complete model for the logic
    assert info.name == "tiny" and info.folds == ["all"] and info.configuration == "3d_fullres"
    assert [n for _v, n in info.labels] == [n for n, v in dataset["labels"].items() if v != 0]
    # a second import under the same name is refused by umamba, and the message reaches the panel
    drive(presenter, store.importJob(str(trained_tiny_model), name="tiny", pythonExecutable=pythonForUmamba()))
    assert presenter.state == FAILED and "already has a model named tiny" in presenter.view().errorText
    store.delete("tiny")
    assert store.models() == [] and [p for p in os.listdir(store.folder)] == []
    with pytest.raises(UserFacingError, match="no model named 'tiny'"):
        store.delete("tiny")


def test_a_zip_escaping_its_folder_is_refused_and_nothing_is_stored(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil/plans.json", "{}")
    store = ModelStore(str(tmp_path / "store"))
    presenter = SegmentationPresenter(SegmentationLogic(newScene(), pythonExecutable=pythonForUmamba()))
    drive(presenter, store.importJob(str(bad), pythonExecutable=pythonForUmamba()))
    assert presenter.state == FAILED and "outside the target folder" in presenter.view().errorText
    assert store.models() == [] and not (tmp_path / "evil").exists()
    with pytest.raises(UserFacingError, match="does not exist"):
        store.importJob(str(tmp_path / "missing"), pythonExecutable=pythonForUmamba())


def test_self_test_segments_and_checks_with_a_given_model(trained_tiny_model, tmp_path):
    scene = newScene()
    result = SelfTest.run(scene, str(tmp_path), log=lambda message: None, pythonExecutable=pythonForUmamba(),
                          modelFolder=str(trained_tiny_model))
    assert result.segmentNames == result.expectedNames and result.geometryMatches
    assert set(result.dicePerLabel) == {"object"} and 0.0 <= result.dicePerLabel["object"] <= 1.0  # 2 iterations
    assert result.cancelLeftNothing


def test_self_test_training_commands_parse_with_the_real_command_line(tmp_path):
    from umamba.cli import COMMANDS
    for _title, command in SelfTest.trainingCommands(str(tmp_path), "python")[1:]:
        assert command[1:3] == ["-m", "umamba"]
        name = command[3]
        parser = argparse.ArgumentParser()
        parser.add_argument("--progress-json", action="store_true")
        importlib.import_module(f"umamba.cli.{COMMANDS[name][0]}").add_arguments(parser)
        args = parser.parse_args(command[4:])  # exits (fails the test) on an unknown or malformed option
        assert args.progress_json and args.workspace == os.path.join(str(tmp_path), "workspace")
