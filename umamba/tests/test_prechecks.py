"""Checks that run before the work: output location, device, --pretrained compatibility, names in the plans."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import run_umamba
from intake_cases import case_arrays, write_image
from umamba.checkpoint import first_shape_mismatch
from umamba.cli import main
from umamba.progress import parse_event


def _error(proc) -> dict:
    events = [e for e in map(parse_event, proc.stdout.splitlines()) if e]
    assert events and events[-1]["event"] == "error", proc.stderr[-3000:]
    return events[-1]


def test_predict_output_under_a_file_is_refused_before_the_model_loads(trained_tiny_model, tmp_path, capsys):
    image = write_image(tmp_path / "c_0000.nii.gz", case_arrays(0)[0])
    (tmp_path / "afile").write_text("not a folder")
    rc = main(["predict", "-i", str(image), "-o", str(tmp_path / "afile" / "sub" / "out.nii.gz"),
               "-m", str(trained_tiny_model), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 2 and "afile is a file" in captured.err, captured.err
    assert "loading model" not in captured.out + captured.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_predict_on_cuda_without_cuda_fails_before_the_model_loads(trained_tiny_model, tmp_path, capsys):
    image = write_image(tmp_path / "c_0000.nii.gz", case_arrays(0)[0])
    rc = main(["predict", "-i", str(image), "-o", str(tmp_path / "out"), "-m", str(trained_tiny_model),
               "--device", "cuda"])
    captured = capsys.readouterr()
    assert rc == 2 and "--device cuda" in captured.err and "no CUDA" in captured.err, captured.err
    assert "loading model" not in captured.out + captured.err and "bug" not in captured.err


def test_first_shape_mismatch_names_the_key_and_both_shapes():
    net = {"a.weight": (4, 2, 3), "b.weight": (8, 4), "seg_layers.0.weight": (3, 8)}
    ckpt = {"module.a.weight": torch.zeros(4, 2, 3), "module.b.weight": torch.zeros(8, 5)}
    assert first_shape_mismatch(net, ckpt, skip=("seg_layers",)) == \
        "key b.weight has shape (8, 5) in the checkpoint but (8, 4) in the network"
    assert "key c (shape (1,)) is missing" in first_shape_mismatch({"a.weight": (4, 2, 3), "c": (1,)},
                                                                   {"a.weight": torch.zeros(4, 2, 3)})
    assert first_shape_mismatch({"a.weight": (4, 2, 3)}, {"_orig_mod.a.weight": torch.zeros(4, 2, 3)}) is None


@pytest.fixture
def workspace_copy(tiny_workspace, tmp_path):
    """The tiny dataset's preprocessed folder in a workspace of its own (what a test trains there stays there)."""
    shutil.copytree(tiny_workspace / "nnUNet_preprocessed", tmp_path / "nnUNet_preprocessed")
    return tmp_path


def test_pretrained_checkpoint_of_another_configuration_is_named_and_leaves_no_folder(trained_tiny_model,
                                                                                      workspace_copy):
    ckpt = trained_tiny_model / "fold_all" / "checkpoint_final.pth"  # a 3d_fullres network
    proc = run_umamba(["train", "990", "2d", "all", "-tr", "bot", "--pretrained", str(ckpt), "--epochs", "1",
                       "--device", "cpu", "--progress-json"], workspace_copy, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = _error(proc)
    assert "does not fit" in error["message"] and "in the checkpoint but" in error["message"], error
    assert "tensor(" not in proc.stdout + proc.stderr and len(error["message"]) < 600
    assert "bug" not in error["hint"]
    model = workspace_copy / "nnUNet_results" / "Dataset990_TinyPhantom" / "nnUNetTrainerUMambaBot__nnUNetPlans__2d"
    assert not model.exists()


def test_unknown_class_name_in_the_plans_is_named_by_train_and_predict(trained_tiny_model, workspace_copy, capsys):
    plans_file = workspace_copy / "nnUNet_preprocessed" / "Dataset990_TinyPhantom" / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["NoSuchNormalization"]
    plans_file.write_text(json.dumps(plans))
    proc = run_umamba(["train", "990", "3d_fullres", "all", "--device", "cpu", "--progress-json"], workspace_copy,
                      timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = _error(proc)
    assert "normalization_schemes: NoSuchNormalization" in error["message"] and "bug" not in error["hint"], error
    assert "Traceback" not in proc.stderr

    model = workspace_copy / "model"
    shutil.copytree(trained_tiny_model, model)
    model_plans = json.loads((model / "plans.json").read_text())
    model_plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["NoSuchNormalization"]
    (model / "plans.json").write_text(json.dumps(model_plans))
    image = write_image(workspace_copy / "c_0000.nii.gz", case_arrays(0)[0])
    rc = main(["predict", "-i", str(image), "-o", str(workspace_copy / "out"), "-m", str(model), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "normalization_schemes: NoSuchNormalization" in err and "Traceback" not in err, err
    assert not (workspace_copy / "out").exists()
