"""`umamba predict` with a trained tiny model: a file, a channel list, a folder; geometry, events, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from umamba.cli import main

DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated 90 degrees about z: not the identity


@pytest.fixture(scope="module")
def model(trained_tiny_model) -> Path:
    assert (trained_tiny_model / "plans.json").is_file(), trained_tiny_model
    return trained_tiny_model


def model_channels(model: Path) -> int:
    return len(json.loads((model / "dataset.json").read_text())["channel_names"])


def write_image(path: Path, seed: int, shape=(14, 17, 22), spacing=(1.1, 0.9, 1.0)) -> Path:
    """A phantom-like volume (bright ellipsoid in noise) with a non-trivial origin / spacing / direction."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    inside = (z / 0.6) ** 2 + (y / 0.5) ** 2 + (x / 0.55) ** 2 <= 1
    array = (200 + 100 * inside + 30 * rng.standard_normal(shape)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((12.5, -40.0, 7.25))
    image.SetDirection(DIRECTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def case_files(folder: Path, case: str, n_channels: int, seed: int) -> list[Path]:
    return [write_image(folder / f"{case}_{c:04d}.nii.gz", seed + c) for c in range(n_channels)]


def assert_same_geometry(label_file: Path, image_file: Path, allowed_labels: set[int]) -> None:
    label, image = sitk.ReadImage(str(label_file)), sitk.ReadImage(str(image_file))
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayFromImage(label)).tolist()) <= allowed_labels


def label_values(model: Path) -> set[int]:
    return {int(v) for v in json.loads((model / "dataset.json").read_text())["labels"].values()}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "umamba", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_predict_file_json_events_and_geometry(model, tmp_path):
    """The real command in a subprocess, with test-time mirroring (the default). The image is a little larger
    than the tiny model's 16^3 patch, so the sliding window has a few tiles."""
    inputs = case_files(tmp_path / "in", "patient", model_channels(model), seed=1)
    out = tmp_path / "out" / "patient_label.nii.gz"
    run = run_cli("predict", "-i", *map(str, inputs), "-o", str(out), "-m", str(model), "--device", "cpu",
                  "--progress-json")
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines()]  # every stdout line is one JSON event
    assert all(e["event"] in ("stage", "progress", "log", "done") for e in events)
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    assert stages == ["load", "predict"]
    cases = [e for e in events if e["event"] == "progress" and e["what"] == "case"]
    assert [(e["current"], e["total"], e["case"]) for e in cases] == [(0, 1, "patient"), (1, 1, "patient")]
    tiles = [e for e in events if e["event"] == "progress" and e["what"] == "tile"]
    assert len(tiles) > 1 and [e["current"] for e in tiles] == list(range(1, tiles[0]["total"] + 1))
    assert all(e["case"] == "patient" for e in tiles)
    assert events[-1]["event"] == "done" and events[-1]["outputs"] == [str(out)]
    assert_same_geometry(out, inputs[0], label_values(model))
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left behind


def test_predict_channel_list_and_folder(model, tmp_path, capsys):
    n = model_channels(model)
    folder = tmp_path / "cases"
    first = case_files(folder, "caseA", n, seed=3)
    case_files(folder, "caseB", n, seed=5)
    # the channel files of one case, output into a folder
    rc = main(["predict", "-i", *map(str, first), "-o", str(tmp_path / "one"), "-m", str(model), "--device", "cpu",
               "--disable-tta"])
    assert rc == 0, capsys.readouterr().err
    single = tmp_path / "one" / "caseA.nii.gz"
    assert_same_geometry(single, first[0], label_values(model))
    # a folder in nnU-Net layout
    rc = main(["predict", "-i", str(folder), "-o", str(tmp_path / "many"), "-m", str(model), "--device", "cpu",
               "--disable-tta", "--step-size", "0.5"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["caseA.nii.gz", "caseB.nii.gz"]
    assert_same_geometry(tmp_path / "many" / "caseB.nii.gz", folder / "caseB_0000.nii.gz", label_values(model))
    # the same case gives the same labels whichever way it was passed
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(single))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "many" / "caseA.nii.gz"))))


def _expect_user_error(capsys, argv: list[str], *fragments: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_bad_input_is_reported_and_nothing_written(model, tmp_path, capsys):
    n = model_channels(model)
    image = case_files(tmp_path / "in", "c", n, seed=9)
    out = tmp_path / "out"
    base = ["predict", "-o", str(out), "--device", "cpu", "--disable-tta"]

    broken = tmp_path / "no_plans"
    shutil.copytree(model, broken)
    (broken / "plans.json").unlink()
    _expect_user_error(capsys, base + ["-i", *map(str, image), "-m", str(broken)], "has no plans.json")

    no_ckpt = tmp_path / "no_checkpoint"
    shutil.copytree(model, no_ckpt)
    for ckpt in no_ckpt.glob("fold_*/checkpoint*.pth"):
        ckpt.unlink()
    _expect_user_error(capsys, base + ["-i", *map(str, image), "-m", str(no_ckpt)], "checkpoint_final.pth")

    extra = write_image(tmp_path / "in" / f"c_{n:04d}.nii.gz", seed=11)
    _expect_user_error(capsys, base + ["-i", *map(str, image), str(extra), "-m", str(model)],
                       f"has {n + 1} channel file(s) but the model expects {n}")
    _expect_user_error(capsys, base + ["-i", str(tmp_path / "in"), "-m", str(model)],
                       f"but the model expects {n}")  # the folder now holds one channel too many

    missing = tmp_path / "in" / "nothere_0000.nii.gz"
    _expect_user_error(capsys, base + ["-i", str(missing), *map(str, image[1:]), "-m", str(model)],
                       "input file not found", str(missing))

    four_d = sitk.JoinSeries([sitk.ReadImage(str(image[0]))] * 2)
    sitk.WriteImage(four_d, str(tmp_path / "four_d.nii.gz"))
    if n == 1:
        _expect_user_error(capsys, base + ["-i", str(tmp_path / "four_d.nii.gz"), "-m", str(model)],
                           "holds 2 volumes")
    _expect_user_error(capsys, base + ["-i", *map(str, image), "-m", str(model), "--step-size", "0"],
                       "--step-size")
    _expect_user_error(capsys, base + ["-i", *map(str, image), "-m", str(model), "-f", "3"],
                       "no checkpoint for fold(s) 3")
    assert not out.exists()


def test_bad_input_json_error_event(model, tmp_path):
    run = run_cli("predict", "-i", str(tmp_path / "missing_0000.nii.gz"), "-o", str(tmp_path / "o.nii.gz"),
                  "-m", str(model), "--device", "cpu", "--progress-json")
    assert run.returncode == 2
    last = json.loads(run.stdout.splitlines()[-1])
    assert last["event"] == "error" and "input file not found" in last["message"] and last["hint"]
    assert not (tmp_path / "o.nii.gz").exists()
