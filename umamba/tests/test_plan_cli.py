"""`umamba plan` through the real command: events of a successful plan, and bad raw datasets refused whole."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_umamba
from umamba.progress import parse_event
from umamba.synthetic import make_phantom_dataset


def _events(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    events = [parse_event(line) for line in lines]
    assert all(e is not None for e in events), f"non-event line on stdout: {lines}"
    return events


def test_plan_events_and_outputs(tiny_workspace):
    events = _events((tiny_workspace / "plan_events.jsonl").read_text())
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    assert stages == ["validate", "fingerprint", "plan", "preprocess"]
    done = events[-1]
    assert done["event"] == "done" and done["configurations"] == ["2d", "3d_fullres"]
    folder = tiny_workspace / "nnUNet_preprocessed" / "Dataset990_TinyPhantom"
    assert done["outputs"] == [str(folder)]
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    for config in ("2d", "3d_fullres"):
        data = folder / plans["configurations"][config]["data_identifier"]
        assert len(list(data.glob("*.pkl"))) == 4
    assert len(list((folder / "gt_segmentations").iterdir())) == 4
    leftovers = [p.name for p in (tiny_workspace / "nnUNet_preprocessed").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the staging folder is gone


def test_unknown_dataset_is_an_error_event(tmp_path):
    proc = run_umamba(["plan", "123", "--progress-json"], tmp_path, timeout=120)
    assert proc.returncode == 2
    (error,) = _events(proc.stdout)
    assert error["event"] == "error" and "'123' not found" in error["message"] and error["hint"]
    assert not (tmp_path / "nnUNet_preprocessed").exists()  # a failing plan creates no folders


def test_broken_raw_dataset_lists_every_problem_and_writes_nothing(tmp_path):
    raw = tmp_path / "nnUNet_raw"
    folder = make_phantom_dataset(raw, 77, "Broken", n_cases=4, shape=(8, 10, 12), seed=1)
    # case 0: label on another voxel grid (spacing differs)
    label0 = sitk.ReadImage(str(folder / "labelsTr" / "phantom_000.nii.gz"))
    label0.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(label0, str(folder / "labelsTr" / "phantom_000.nii.gz"))
    # case 1: label of another size
    small = sitk.GetImageFromArray(np.zeros((8, 10, 11), np.uint8))
    sitk.WriteImage(small, str(folder / "labelsTr" / "phantom_001.nii.gz"))
    # case 2: fractional label values
    frac = sitk.GetImageFromArray(np.full((8, 10, 12), 0.5, np.float32))
    sitk.WriteImage(frac, str(folder / "labelsTr" / "phantom_002.nii.gz"))
    # case 3: its channel file is missing
    os.remove(folder / "imagesTr" / "phantom_003_0000.nii.gz")

    proc = run_umamba(["plan", "77", "--progress-json"], tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    events = _events(proc.stdout)
    assert [e["event"] for e in events] == ["stage", "error"]
    error = events[-1]
    message = error["message"]
    assert error["event"] == "error" and "4 problem(s)" in message, message
    assert "phantom_000" in message and "spacing" in message
    assert "phantom_001" in message and "size" in message
    assert "phantom_002" in message and "non-integer" in message
    assert "phantom_003_0000.nii.gz is missing" in message
    assert "nothing was planned" in error["hint"]
    assert not (tmp_path / "nnUNet_preprocessed").exists()  # a failing plan creates no folders

    # the same in human mode: the message on stderr, nothing on stdout but the stage line
    shutil.rmtree(tmp_path / "umamba_home", ignore_errors=True)
    human = run_umamba(["plan", "Dataset077_Broken"], tmp_path, timeout=120)
    assert human.returncode == 2 and "error: the raw dataset" in human.stderr and "-> fix these" in human.stderr
    assert "error" not in human.stdout


@pytest.mark.slow
def test_existing_splits_final_is_kept(tiny_workspace, tmp_path):
    """Planning again (here only 2d, on a copy of the tiny workspace) replaces the preprocessed data but keeps a
    custom splits_final.json, which nnU-Net's own preprocessing would not touch either."""
    ws = tmp_path / "ws"
    for sub in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(tiny_workspace / sub, ws / sub)
    folder = ws / "nnUNet_preprocessed" / "Dataset990_TinyPhantom"
    cases = sorted(p.stem for p in (folder / "gt_segmentations").iterdir())
    custom = [{"train": cases[:3], "val": cases[3:]}, {"train": cases[1:], "val": cases[:1]}]
    (folder / "splits_final.json").write_text(json.dumps(custom))
    proc = run_umamba(["plan", "990", "-c", "2d", "--progress-json"], ws)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((folder / "splits_final.json").read_text()) == custom
    assert _events(proc.stdout)[-1]["event"] == "done"
