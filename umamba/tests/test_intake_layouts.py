"""Dataset intake: every supported folder layout becomes an nnU-Net raw dataset with the right files and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from intake_cases import SHAPE, case_arrays, write_image, write_slicer_segmentation
from umamba.errors import UserError
from umamba.intake import inspect_source, write_dataset


def voxels(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def same_geometry(a, b):
    ia, ib = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    return (ia.GetSize() == ib.GetSize() and np.allclose(ia.GetSpacing(), ib.GetSpacing())
            and np.allclose(ia.GetOrigin(), ib.GetOrigin()) and np.allclose(ia.GetDirection(), ib.GetDirection()))


def test_side_by_side_nifti_pairs_pass_nnunets_own_check(tmp_path):
    src = tmp_path / "boxes"
    src.mkdir()
    truth = {}
    for i in range(3):
        image, label = case_arrays(i)
        write_image(src / f"case{i}.nii.gz", image)
        write_image(src / f"case{i}_seg.nii.gz", label)
        truth[f"case{i}"] = (image, label)
    (src / "notes.txt").write_text("not an image")

    plan = inspect_source(src)
    assert plan.layout == "side-by-side"
    assert [c.case_id for c in plan.cases] == ["case0", "case1", "case2"]
    assert plan.labels == {"background": 0, "label_1": 1, "label_2": 2}
    assert plan.ignored == ["notes.txt"]

    out = write_dataset(plan, tmp_path / "raw", "Boxes")
    assert out == tmp_path / "raw" / "Dataset501_Boxes"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "image"} and meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"
    for cid, (image, label) in truth.items():
        np.testing.assert_array_equal(voxels(out / "imagesTr" / f"{cid}_0000.nii.gz"), image)
        np.testing.assert_array_equal(voxels(out / "labelsTr" / f"{cid}.nii.gz"), label)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset501_Boxes"]  # no temporary left

    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    verify_dataset_integrity(str(out), num_processes=1)  # raises on anything nnU-Net would reject


def test_image_and_label_folders_with_numbered_channels_and_label_names(tmp_path):
    src = tmp_path / "mr"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    # Non-consecutive source values 3 and 7, named by labels.json; nnU-Net needs 0, 1, 2.
    (src / "labels.json").write_text(json.dumps({"3": "liver", "7": "spleen"}))
    truth = {}
    for i in range(2):
        image, label = case_arrays(10 + i)
        source_label = np.where(label == 1, 3, np.where(label == 2, 7, 0)).astype(np.int16)
        write_image(src / "images" / f"pat{i}_0000.mha", image)
        write_image(src / "images" / f"pat{i}_0001.mha", image * 2)
        write_image(src / "labels" / f"pat{i}.mha", source_label)
        truth[f"pat{i}"] = (image, label)

    plan = inspect_source(src)
    assert plan.layout == "folders"
    assert plan.channel_names == ["channel0", "channel1"]
    assert plan.labels == {"background": 0, "liver": 1, "spleen": 2}
    out = write_dataset(plan, tmp_path / "raw", "MR")
    for cid, (image, label) in truth.items():
        np.testing.assert_array_equal(voxels(out / "imagesTr" / f"{cid}_0000.nii.gz"), image)
        np.testing.assert_array_equal(voxels(out / "imagesTr" / f"{cid}_0001.nii.gz"), image * 2)
        np.testing.assert_array_equal(voxels(out / "labelsTr" / f"{cid}.nii.gz"), label)


def test_named_channels_side_by_side_nrrd(tmp_path):
    src = tmp_path / "brains"
    src.mkdir()
    for i in range(2):
        image, label = case_arrays(20 + i)
        write_image(src / f"sub-{i}_t1.nrrd", image)
        write_image(src / f"sub-{i}_t2.nrrd", -image)
        write_image(src / f"sub-{i}_label.nrrd", label)
    plan = inspect_source(src, channel_names=["T1", "T2"])
    assert plan.channel_names == ["T1", "T2"]
    out = write_dataset(plan, tmp_path / "raw", "Brains")
    t2 = voxels(out / "imagesTr" / "sub-1_0001.nii.gz")
    np.testing.assert_array_equal(t2, -case_arrays(21)[0])
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "T1", "1": "T2"}


def test_nnunet_raw_folder_is_copied_under_a_new_free_id(tmp_path):
    raw = tmp_path / "raw"
    src = raw / "Dataset501_Orig"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    for i in range(2):
        image, label = case_arrays(30 + i, n_labels=1)
        write_image(src / "imagesTr" / f"c{i}_0000.nii.gz", image)
        write_image(src / "labelsTr" / f"c{i}.nii.gz", label)
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "kidney": 1},
                                                  "numTraining": 2, "file_ending": ".nii.gz"}))
    (tmp_path / "results" / "Dataset502_Other").mkdir(parents=True)  # ids are unique across all nnU-Net folders
    plan = inspect_source(src)
    assert plan.layout == "nnunet" and plan.channel_names == ["CT"] and plan.labels == {"background": 0, "kidney": 1}
    with pytest.raises(UserError, match="(?s)already used.*next free one is 503"):
        write_dataset(plan, raw, "Copy", dataset_id=501, other_roots=(tmp_path / "results",))
    out = write_dataset(plan, raw, "Copy", other_roots=(tmp_path / "results",))
    assert out.name == "Dataset503_Copy"
    assert (out / "labelsTr" / "c1.nii.gz").is_file()


def test_slicer_segmentations_map_each_segment_name_to_one_value(tmp_path):
    """Slicer numbers segments per file; intake goes by name. Overlaps (Slicer's extra layers): the later wins."""
    src = tmp_path / "slicer"
    src.mkdir()
    liver = np.zeros(SHAPE, bool)
    liver[1:6, 2:9, 3:10] = True
    tumor = np.zeros(SHAPE, bool)
    tumor[2:4, 3:5, 4:6] = True
    vessel = np.zeros(SHAPE, bool)
    vessel[5:7, 9:11, 10:12] = True
    image = case_arrays(40)[0]
    for cid in ("a", "b", "c"):
        write_image(src / f"{cid}.nrrd", image)
    write_slicer_segmentation(src / "a.seg.nrrd", [("liver", liver & ~tumor), ("tumor", tumor)])
    write_slicer_segmentation(src / "b.seg.nrrd", [("tumor", tumor), ("vessel", vessel), ("liver", liver & ~tumor)])
    write_slicer_segmentation(src / "c.seg.nrrd", [("liver", liver), ("tumor", tumor)])  # overlap: 2 layers
    header = sitk.ReadImage(str(src / "b.seg.nrrd"))
    assert header.GetMetaData("Segment0_Name") == "tumor" and header.GetMetaData("Segment0_LabelValue") == "1"
    assert sitk.ReadImage(str(src / "c.seg.nrrd")).GetNumberOfComponentsPerPixel() == 2
    assert header.GetSize() != tuple(reversed(SHAPE))  # Slicer cropped it to the segments' extent

    plan = inspect_source(src)
    assert plan.layout == "side-by-side"
    assert plan.labels == {"background": 0, "liver": 1, "tumor": 2, "vessel": 3}
    assert any("c: segments overlap" in w for w in plan.warnings)
    out = write_dataset(plan, tmp_path / "raw", "Liver")
    expected_ab = liver * 1 + tumor * 1  # liver=1, tumor=2 (liver excludes tumor in a and b)
    np.testing.assert_array_equal(voxels(out / "labelsTr" / "a.nii.gz"), expected_ab)
    np.testing.assert_array_equal(voxels(out / "labelsTr" / "b.nii.gz"), expected_ab + 3 * vessel)
    np.testing.assert_array_equal(voxels(out / "labelsTr" / "c.nii.gz"), expected_ab)
    assert same_geometry(out / "labelsTr" / "b.nii.gz", src / "b.nrrd")


@pytest.mark.shared_data
def test_real_nrrd_pairs_from_pyradiomics(shared_data, tmp_path):
    src = shared_data / "pyradiomics_nrrd_pairs"
    plan = inspect_source(src)
    assert plan.layout == "side-by-side"
    assert [c.case_id for c in plan.cases] == ["brain1", "brain2", "breast1"]
    assert plan.labels == {"background": 0, "label_1": 1}
    out = write_dataset(plan, tmp_path / "raw", "Radiomics")
    for cid in ("brain1", "brain2", "breast1"):
        written = out / "labelsTr" / f"{cid}.nii.gz"
        np.testing.assert_array_equal(voxels(written), voxels(src / f"{cid}_label.nrrd") > 0)
        assert same_geometry(written, src / f"{cid}_image.nrrd")
        np.testing.assert_array_equal(voxels(out / "imagesTr" / f"{cid}_0000.nii.gz"), voxels(src / f"{cid}_image.nrrd"))


def test_old_slicer_segmentation_with_one_layer_per_segment(tmp_path):
    """Files from Slicer < 4.11: a 4D NRRD, one layer per segment, no LabelValue/Layer fields (written here with
    pynrrd the way those Slicer versions wrote them)."""
    nrrd = pytest.importorskip("nrrd")
    src = tmp_path / "old"
    src.mkdir()
    masks = []
    for cid in ("p", "q"):
        image = case_arrays(50)[0]
        write_image(src / f"{cid}.nii.gz", image, direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
        kidney = np.zeros(SHAPE, np.uint8)
        kidney[1:3, 1:4, 1:5] = 1
        cyst = np.zeros(SHAPE, np.uint8)
        cyst[4:6, 6:9, 7:12] = 1
        # NRRD axis order is x, y, z (fastest first): (layers, x, y, z)
        data = np.stack([kidney.transpose(2, 1, 0), cyst.transpose(2, 1, 0)])
        header = {"type": "unsigned char", "dimension": 4, "space": "left-posterior-superior",
                  "kinds": ["list", "domain", "domain", "domain"],
                  "space directions": [[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0]],
                  "space origin": [0.0, 0.0, 0.0], "encoding": "gzip",
                  "Segment0_ID": "kidney", "Segment0_Name": "kidney",
                  "Segment1_ID": "cyst", "Segment1_Name": "cyst"}
        nrrd.write(str(src / f"{cid}.seg.nrrd"), data, header)
        masks.append((kidney, cyst))
    plan = inspect_source(src)
    assert plan.labels == {"background": 0, "kidney": 1, "cyst": 2}
    out = write_dataset(plan, tmp_path / "raw", "Old")
    kidney, cyst = masks[0]
    np.testing.assert_array_equal(voxels(out / "labelsTr" / "p.nii.gz"), kidney + 2 * cyst)
