"""Dataset intake on bad input: every problem of every case in one report, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from intake_cases import SHAPE, case_arrays, write_image, write_slicer_segmentation
from umamba.intake import IntakeError, inspect_source, write_dataset
from umamba.progress import parse_event


def problems_by_case(exc: IntakeError) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in exc.problems:
        out[p.case] = out.get(p.case, "") + p.message + " | "
    return out


@pytest.fixture
def bad_folder(tmp_path):
    """Two good cases and one of each kind of bad case, in one side-by-side folder."""
    src = write_pairs(tmp_path / "bad", 2, image="good{i}.nii.gz", label="good{i}_seg.nii.gz")
    image, label = case_arrays(5)
    write_image(src / "shifted.nii.gz", image)
    write_image(src / "shifted_seg.nii.gz", label, origin=(0.0, 0.0, 6.0))        # 3 slices off
    write_image(src / "small.nii.gz", image)
    write_image(src / "small_seg.nii.gz", label[:, :, :10])                        # different size
    write_image(src / "blurred.nii.gz", image)
    write_image(src / "blurred_seg.nii.gz", label * np.float32(0.5))              # float labels 0.5, 1.0
    write_image(src / "lonely.nii.gz", image)                                      # image without its label
    write_image(src / "orphan_seg.nii.gz", label)                                  # label without its image
    (src / "broken.nii.gz").write_bytes(b"this is not a NIfTI file at all")       # unreadable
    write_image(src / "broken_seg.nii.gz", label)
    return src


def test_every_problem_is_reported_once_and_nothing_is_written(bad_folder, tmp_path):
    with pytest.raises(IntakeError) as caught:
        inspect_source(bad_folder)
    found = problems_by_case(caught.value)
    assert set(found) == {"shifted", "small", "blurred", "lonely", "orphan", "broken"}
    assert "origin" in found["shifted"]
    assert "size 14x12x8 vs 10x12x8" in found["small"]
    assert "non-integer values (0.5" in found["blurred"]
    assert "image without a label file" in found["lonely"] and "lonely_seg.nii.gz" in found["lonely"]
    assert "has no image" in found["orphan"]
    assert "not a readable image" in found["broken"]
    report = str(caught.value)
    assert report.startswith("6 problems in 6 cases; nothing was written:")
    assert all(f"  {case}:" in report for case in found)
    assert not (tmp_path / "raw").exists()


def test_command_line_reports_problems_as_one_error_event(bad_folder, tmp_path):
    env = {**os.environ, "UMAMBA_HOME": str(tmp_path / "home")}
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "umamba", "import-dataset", str(bad_folder), "--progress-json",
                           "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    events = [e for e in map(parse_event, proc.stdout.splitlines()) if e]
    assert len(events) == len(proc.stdout.splitlines())  # stdout carries events only
    error = events[-1]
    assert error["event"] == "error" and "6 problems in 6 cases" in error["message"] and error["hint"]
    assert sorted({p["case"] for p in error["problems"]}) == ["blurred", "broken", "lonely", "orphan", "shifted",
                                                              "small"]
    assert all(p["message"] for p in error["problems"])
    assert not (tmp_path / "ws").exists()

    # Remove the bad cases: a dry run describes the folder, a real run writes it.
    for name in os.listdir(bad_folder):
        if not name.startswith("good"):
            os.remove(bad_folder / name)
    dry = subprocess.run([sys.executable, "-m", "umamba", "import-dataset", str(bad_folder), "--dry-run",
                          "--progress-json", "--workspace", str(tmp_path / "ws")],
                         capture_output=True, text=True, env=env, timeout=120)
    done = parse_event(dry.stdout.splitlines()[-1])
    assert dry.returncode == 0 and done["event"] == "done" and done["dry_run"] is True
    assert done["layout"] == "side-by-side" and done["cases"] == 2 and done["labels"] == {"label_1": 1, "label_2": 2}
    assert not (tmp_path / "ws").exists()
    real = subprocess.run([sys.executable, "-m", "umamba", "import-dataset", str(bad_folder), "--name", "Good",
                           "--progress-json", "--workspace", str(tmp_path / "ws")],
                          capture_output=True, text=True, env=env, timeout=120)
    done = parse_event(real.stdout.splitlines()[-1])
    assert real.returncode == 0, real.stderr
    assert done["dataset"] == "Dataset501_Good" and done["dataset_id"] == 501
    assert (tmp_path / "ws" / "nnUNet_raw" / "Dataset501_Good" / "dataset.json").is_file()


def write_pairs(src, n, image="c{i}.nii.gz", label="c{i}_seg.nii.gz", seed=0):
    """`n` image/label pairs (case_arrays(seed + i)) named by the patterns; returns src."""
    src.mkdir(exist_ok=True)
    for i in range(n):
        image_array, label_array = case_arrays(seed + i)
        if image:
            write_image(src / image.format(i=i), image_array)
        if label:
            write_image(src / label.format(i=i), label_array)
    return src


def two_segments_named_alike(src):
    a, b = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    a[1:3, 1:3, 1:3] = True
    b[5:7, 5:7, 5:7] = True
    write_pairs(src, 1, image="one.nrrd", label=None, seed=1)
    write_slicer_segmentation(src / "one.seg.nrrd", [("tumor", a), ("tumor", b)])


def label_names_file_naming_two_values_alike(src):
    write_pairs(src, 2, label="c{i}_label.nii.gz")
    (src / "labels.json").write_text(json.dumps({"1": "tumor", "2": "tumor"}))


def missing_channel_and_mixed_label_kinds(src):
    write_pairs(src, 3, image="c{i}_t1.nii.gz", label=None)
    for i in (0, 2):
        write_image(src / f"c{i}_t2.nii.gz", case_arrays(i)[0])
    write_image(src / "c0_seg.nii.gz", case_arrays(0)[1])
    write_image(src / "c1_seg.nii.gz", case_arrays(1)[1])
    write_slicer_segmentation(src / "c2.seg.nrrd", [("x", case_arrays(2)[1] == 1)])


@pytest.mark.parametrize("build, expected", [
    (two_segments_named_alike, {"one": "label name 'tumor' is mapped to two values",
                                "(dataset)": "found 1 case with both image and label; training needs at least 2"}),
    (label_names_file_naming_two_values_alike, {None: "label name 'tumor' is mapped to two values"}),
    (missing_channel_and_mixed_label_kinds, {
        "c1": "missing: t2",
        "(dataset)": "some labels are Slicer segmentations (c2) and others plain label maps"}),
], ids=["segment-name-twice", "label-names-file", "missing-channel-mixed-labels"])
def test_folder_problem_is_reported(tmp_path, build, expected):
    """`expected`: case -> words in that case's problems (None: anywhere in the report)."""
    src = tmp_path / "src"
    src.mkdir()
    build(src)
    with pytest.raises(IntakeError) as caught:
        inspect_source(src)
    found = problems_by_case(caught.value)
    for case, words in expected.items():
        assert words in (found[case] if case else str(caught.value)), (case, found)


def test_a_failure_while_writing_leaves_no_partial_dataset(tmp_path):
    src = write_pairs(tmp_path / "src", 3, image="c{i}.nrrd", label="c{i}_seg.nrrd")
    plan = inspect_source(src)
    (src / "c2.nrrd").write_bytes(b"NRRD0004\ntruncated")  # the file breaks after the check
    raw = tmp_path / "raw"
    with pytest.raises(RuntimeError):
        write_dataset(plan, raw, "Broken")
    assert list(raw.iterdir()) == []


def test_a_partial_folder_of_a_killed_import_is_removed_by_the_next(tmp_path):
    src = write_pairs(tmp_path / "src", 2)
    raw = tmp_path / "raw"
    dead = subprocess.Popen(["true"])  # a process that has ended: its pid no longer runs
    dead.wait()
    abandoned = raw / f".Dataset501_Old.{dead.pid}.x1.partial"
    ongoing = raw / f".Dataset502_Busy.{os.getpid()}.x2.partial"  # another import still running
    abandoned.mkdir(parents=True)
    ongoing.mkdir()
    out = write_dataset(inspect_source(src), raw, "New")
    assert sorted(p.name for p in raw.iterdir()) == sorted([out.name, ongoing.name])
