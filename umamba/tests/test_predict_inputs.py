"""How `umamba predict` turns INPUT / OUTPUT into cases, for a two-channel model (checked before any work)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from umamba.errors import UserError
from umamba.nnunet.predict_inputs import check_case_images, check_endings, resolve_cases

CHANNELS = ["T2", "ADC"]


def touch_image(path: Path, shape=(4, 5, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.float32)), str(path))
    return path


def test_folder_layout_and_outputs(tmp_path):
    for case in ("b", "a"):
        for c in range(2):
            touch_image(tmp_path / "in" / f"{case}_{c:04d}.nii.gz")
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    cases = resolve_cases([str(tmp_path / "in")], str(tmp_path / "out"), CHANNELS)
    assert [(c.case_id, [f.name for f in c.files], c.output) for c in cases] == [
        ("a", ["a_0000.nii.gz", "a_0001.nii.gz"], tmp_path / "out" / "a.nii.gz"),
        ("b", ["b_0000.nii.gz", "b_0001.nii.gz"], tmp_path / "out" / "b.nii.gz")]
    with pytest.raises(UserError, match="looks like a file"):
        resolve_cases([str(tmp_path / "in")], str(tmp_path / "out.nii.gz"), CHANNELS)


def test_channel_files_of_one_case(tmp_path):
    files = [touch_image(tmp_path / f"p_{c:04d}.nrrd") for c in range(2)]
    [case] = resolve_cases([str(f) for f in files], str(tmp_path / "seg.nii.gz"), CHANNELS)
    assert case.case_id == "p" and case.files == files and case.output == tmp_path / "seg.nii.gz"
    [case] = resolve_cases([str(f) for f in files], str(tmp_path / "outdir"), CHANNELS)
    assert case.output == tmp_path / "outdir" / "p.nrrd"  # output format follows the input's
    with pytest.raises(UserError, match="not a file type this model's image reader handles"):
        check_endings([case], [".nii.gz"])


def test_missing_and_extra_channels(tmp_path):
    touch_image(tmp_path / "in" / "a_0000.nii.gz")
    with pytest.raises(UserError, match=r"missing channel file .*a_0001.nii.gz \(channel 1: ADC\)") as err:
        resolve_cases([str(tmp_path / "in")], str(tmp_path / "out"), CHANNELS)
    assert "T2" in err.value.hint and "ADC" in err.value.hint
    with pytest.raises(UserError, match="has 1 channel file"):
        resolve_cases([str(tmp_path / "in" / "a_0000.nii.gz")], str(tmp_path / "o.nii.gz"), CHANNELS)
    with pytest.raises(UserError, match="input file not found"):
        resolve_cases([str(tmp_path / "in" / "a_0000.nii.gz"), str(tmp_path / "in" / "a_0001.nii.gz")],
                      str(tmp_path / "o.nii.gz"), CHANNELS)
    for c in (1, 2):
        touch_image(tmp_path / "in" / f"a_{c:04d}.nii.gz")
    with pytest.raises(UserError, match="has 3 channel files .* but the model expects 2"):
        resolve_cases([str(tmp_path / "in")], str(tmp_path / "out"), CHANNELS)
    with pytest.raises(UserError, match="holds no images"):
        resolve_cases([str(_empty(tmp_path))],
                      str(tmp_path / "out"), CHANNELS)


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_image_headers_are_checked(tmp_path):
    a = touch_image(tmp_path / "a_0000.nii.gz", shape=(4, 5, 6))
    b = touch_image(tmp_path / "a_0001.nii.gz", shape=(4, 5, 7))
    [case] = resolve_cases([str(a), str(b)], str(tmp_path / "o.nii.gz"), CHANNELS)
    with pytest.raises(UserError, match="differ in size"):
        check_case_images(case)
    (tmp_path / "broken_0000.nii.gz").write_bytes(b"not an image")
    [case] = resolve_cases([str(tmp_path / "broken_0000.nii.gz"), str(a)], str(tmp_path / "o.nii.gz"), CHANNELS)
    with pytest.raises(UserError, match="cannot read image"):
        check_case_images(case)
