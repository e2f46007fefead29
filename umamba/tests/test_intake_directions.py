"""Labels stored with flipped or permuted axes are resampled exactly; DICOM folders get a way forward."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from intake_cases import LPS, SPACING, case_arrays, write_image
from umamba.cli import main
from umamba.errors import UserError
from umamba.intake import inspect_source, write_dataset
from umamba.nnunet.predict_inputs import resolve_cases


def _flipped_y(label: np.ndarray) -> tuple[np.ndarray, tuple, tuple]:
    """The same voxels with the y axis stored the other way round: (array, origin, direction)."""
    direction = list(LPS)
    direction[4] = -direction[4]   # y axis reversed
    origin = (0.0, -(label.shape[1] - 1) * SPACING[1], 0.0)  # LPS y runs -1 * index; flipped: starts at the end
    return label[:, ::-1, :].copy(), origin, tuple(direction)


def test_a_label_with_a_flipped_axis_is_resampled_exactly(tmp_path):
    src = tmp_path / "flipped"
    src.mkdir()
    labels = {}
    for i in range(2):
        image, label = case_arrays(i)
        write_image(src / f"case{i}.nii.gz", image)
        labels[f"case{i}"] = label
        flipped, origin, direction = _flipped_y(label)
        write_image(src / f"case{i}_seg.nii.gz", flipped, origin=origin, direction=direction)
    plan = inspect_source(src)
    assert any("flipped or permuted" in w and "nearest neighbour, exact" in w for w in plan.warnings), plan.warnings
    folder = write_dataset(plan, tmp_path / "raw", "Flipped")
    for case, label in labels.items():
        written = sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz"))
        image = sitk.ReadImage(str(src / f"{case}.nii.gz"))
        assert written.GetDirection() == image.GetDirection() and written.GetOrigin() == image.GetOrigin()
        assert np.array_equal(sitk.GetArrayFromImage(written), label)


def test_the_dicom_ct_and_its_flipped_label_are_imported(shared_data, tmp_path):
    """The real pair: a CT DICOM series and a label whose direction flips y over the same voxels."""
    examples = shared_data / "TotalSegmentator_examples"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(examples / "example_ct_dicom")))
    ct = reader.Execute()
    src = tmp_path / "ct"
    src.mkdir()
    sitk.WriteImage(ct, str(src / "ct1.nii.gz"))
    for case in ("ct1", "ct2"):
        if case != "ct1":
            shutil.copy(src / "ct1.nii.gz", src / f"{case}.nii.gz")
        shutil.copy(examples / "example_seg_dicom.nii.gz", src / f"{case}_seg.nii.gz")
    plan = inspect_source(src)
    assert len(plan.cases) == 2 and any("flipped" in w for w in plan.warnings)
    folder = write_dataset(plan, tmp_path / "raw", "CT")
    written = sitk.ReadImage(str(folder / "labelsTr" / "ct1.nii.gz"))
    source = sitk.ReadImage(str(examples / "example_seg_dicom.nii.gz"))
    expected = sitk.Resample(source, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    values = sorted(plan.labels.values())
    lut = np.zeros(int(sitk.GetArrayViewFromImage(source).max()) + 1, np.int64)
    for src_value, dst_value in plan.cases[0].label.value_map.items():
        lut[src_value] = dst_value
    assert np.array_equal(sitk.GetArrayFromImage(written), lut[sitk.GetArrayFromImage(expected)])
    assert values[0] == 0 and len(values) > 2


def test_dicom_folders_are_named_with_how_to_convert(shared_data, tmp_path, capsys):
    dicom = shared_data / "TotalSegmentator_examples" / "example_ct_dicom"
    rc = main(["import-dataset", str(dicom), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "DICOM" in err and "dcm2niix" in err and "Slicer" in err, err
    with pytest.raises(UserError, match="DICOM series") as info:
        resolve_cases([str(dicom)], str(tmp_path / "out"), ["CT"])
    assert "dcm2niix" in info.value.hint
    one = next(p for p in dicom.iterdir() if p.is_file())
    with pytest.raises(UserError, match="is a DICOM file"):
        resolve_cases([str(one)], str(tmp_path / "out"), ["CT"])
