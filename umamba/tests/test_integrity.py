"""Truncated and corrupt image files are refused before use: intake, plan's dataset check and predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_umamba
from intake_cases import case_arrays, write_image
from umamba.cli import main
from umamba.intake.integrity import integrity_problem
from umamba.progress import parse_event
from umamba.synthetic import make_phantom_dataset


def truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def short_nrrd(path, shape=(8, 12, 14)):
    """A raw NRRD whose header describes more voxels than the file holds (ITK reads such a file with zeros)."""
    write_image(path, np.arange(np.prod(shape), dtype=np.int16).reshape(shape))
    data = path.read_bytes()
    path.write_bytes(data[:-200])
    return path


@pytest.mark.parametrize("name, compress", [("a.nii.gz", True), ("a.nii", False), ("a.nrrd", False),
                                            ("a.nrrd", True), ("a.mha", False), ("a.nhdr", False),
                                            ("a.nhdr", True)])
def test_complete_files_pass_and_cut_files_are_named(tmp_path, name, compress):
    image = sitk.GetImageFromArray(np.arange(4000, dtype=np.int16).reshape(10, 20, 20))
    path = tmp_path / name
    sitk.WriteImage(image, str(path), useCompression=compress)
    assert integrity_problem(path) is None
    # the data (attached, or the .nhdr's data file) loses its last part
    data_file = path if name != "a.nhdr" else next(p for p in tmp_path.iterdir() if p.name != name)
    truncate(data_file)
    problem = integrity_problem(path)
    assert problem and "truncated" in problem, problem
    if not compress:
        assert "8000" in problem  # the size the header describes


def test_gzip_crc_and_missing_detached_data(tmp_path):
    path = tmp_path / "a.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((6, 6, 6), np.float32)), str(path), useCompression=True)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    path.write_bytes(bytes(data))
    assert "corrupt" in integrity_problem(path)
    detached = tmp_path / "d.nhdr"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((6, 6, 6), np.float32)), str(detached))
    for p in tmp_path.glob("d.raw*"):
        p.unlink()
    assert "does not exist" in integrity_problem(detached)


@pytest.fixture
def damaged_source(tmp_path):
    """Two good cases, one with a truncated .nii.gz image and one with a NRRD label shorter than its header."""
    src = tmp_path / "Dataset612_Damaged"
    src.mkdir()
    for i in range(2):
        image, label = case_arrays(i)
        write_image(src / f"good{i}.nii.gz", image)
        write_image(src / f"good{i}_seg.nii.gz", label)
    image, label = case_arrays(3)
    truncate(write_image(src / "cut.nii.gz", image))
    write_image(src / "cut_seg.nii.gz", label)
    write_image(src / "short.nii.gz", image)
    short_nrrd(src / "short_seg.nrrd")
    return src


@pytest.mark.parametrize("dry_run", [True, False])
def test_import_dataset_refuses_damaged_files(damaged_source, tmp_path, capsys, dry_run):
    workspace = tmp_path / "ws"
    rc = main(["import-dataset", str(damaged_source), "--workspace", str(workspace)]
              + (["--dry-run"] if dry_run else []))
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.splitlines()
    assert any("truncated" in line and "[cut.nii.gz]" in line for line in lines), err
    assert any("truncated" in line and "[short_seg.nrrd]" in line for line in lines), err
    assert not workspace.exists()


def test_plan_refuses_damaged_files(tmp_path):
    raw = tmp_path / "nnUNet_raw"
    gz = make_phantom_dataset(raw, 611, "CutGz", n_cases=2, shape=(8, 10, 12), seed=3)
    truncate(gz / "imagesTr" / "phantom_001_0000.nii.gz")
    nrrd = make_phantom_dataset(raw, 612, "ShortNrrd", n_cases=2, shape=(8, 10, 12), seed=3, file_ending=".nrrd")
    label = nrrd / "labelsTr" / "phantom_000.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(label)), str(label), useCompression=False)
    label.write_bytes(label.read_bytes()[:-20])
    for dataset, fragment in (("611", "imagesTr/phantom_001_0000.nii.gz is truncated"),
                              ("612", "labelsTr/phantom_000.nrrd is truncated")):
        proc = run_umamba(["plan", dataset, "--progress-json"], tmp_path, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        error = parse_event(proc.stdout.splitlines()[-1])
        assert error["event"] == "error" and fragment in error["message"], error
        assert "Traceback" not in proc.stderr
    preprocessed = tmp_path / "nnUNet_preprocessed"
    assert not preprocessed.exists() or not any(preprocessed.iterdir())


def test_predict_refuses_damaged_inputs(trained_tiny_model, tmp_path, capsys):
    n = len(json.loads((trained_tiny_model / "dataset.json").read_text())["channel_names"])
    assert n == 1
    image, _ = case_arrays(1)
    cut = truncate(write_image(tmp_path / "cut_0000.nii.gz", image))
    short = short_nrrd(tmp_path / "short_0000.nrrd")
    for damaged in (cut, short):
        out = tmp_path / "out"
        rc = main(["predict", "-i", str(damaged), "-o", str(out), "-m", str(trained_tiny_model), "--device", "cpu"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert str(damaged) in err and "truncated" in err and "Traceback" not in err, err
        assert not out.exists()
