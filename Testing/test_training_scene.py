"""Training cases taken from the scene: volume + segmentation pairs exported with Slicer's own storage nodes,
then read by the same intake as a folder (segment names -> labels, one value per name)."""

import os

import numpy as np
import pytest
import SimpleITK as sitk

from test_slicer_helpers import addVolume, newScene, pythonForUmamba

import slicer

from umamba.intake import IntakeError, inspect_source, write_dataset
from UMambaSegmentationLib.Errors import UserFacingError
from UMambaSegmentationLib.TrainingLogic import TrainingLogic
from UMambaSegmentationLib.TrainingRun import RUNS_FOLDER, TrainingSettings
from UMambaSegmentationLib.TrainingScenePairs import exportScenePairs

SHAPE = (10, 20, 30)   # k, j, i
SPACING = (0.8, 0.7, 2.0)
ORIGIN = (5.0, -3.0, 10.0)
DIRECTIONS = ((0, 1, 0), (-1, 0, 0), (0, 0, 1))  # rotated 90 degrees about the superior axis


def masks():
    liver = np.zeros(SHAPE, np.uint8)
    liver[2:6, 3:12, 4:20] = 1
    tumor = np.zeros(SHAPE, np.uint8)
    tumor[3:5, 14:18, 20:25] = 1
    return {"liver": liver, "tumor": tumor}


def addSegmentation(scene, volume, names, spacing=SPACING):
    """Segments made the way Slicer imports label maps: one label map volume per segment. With the volume's
    spacing the segmentation gets the volume as its reference geometry (Slicer then resamples onto it); with
    another spacing it keeps the label map's own grid, which does not fit the volume."""
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} segmentation")
    if spacing == SPACING:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for name in names:
        source = addVolume(scene, masks()[name], name="mask", spacing=spacing, origin=ORIGIN, directions=DIRECTIONS)
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "mask-label")
        labelmap.CopyOrientation(source)
        labelmap.SetAndObserveImageData(source.GetImageData())
        before = segmentation.GetSegmentation().GetNumberOfSegments()
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
        segmentation.GetSegmentation().GetNthSegment(before).SetName(name)
        scene.RemoveNode(labelmap)
        scene.RemoveNode(source)
    return segmentation


def addCase(scene, name, seed, names, segmentationSpacing=SPACING):
    image = np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)
    volume = addVolume(scene, image, name=name, spacing=SPACING, origin=ORIGIN, directions=DIRECTIONS)
    return volume, addSegmentation(scene, volume, names, segmentationSpacing), image


def test_scene_pairs_become_a_dataset_with_segment_names_as_labels(tmp_path):
    scene = newScene()
    a = addCase(scene, "CT one", 1, ["liver", "tumor"])
    b = addCase(scene, "CT one", 2, ["tumor", "liver"])  # same name, other segment order (other values)
    nodesBefore = scene.GetNumberOfNodes()
    folder = exportScenePairs([a[:2], b[:2]], str(tmp_path / "cases"))
    assert scene.GetNumberOfNodes() == nodesBefore           # the scene is left as it was
    assert sorted(os.listdir(folder)) == ["CT_one.nrrd", "CT_one.seg.nrrd", "CT_one_2.nrrd", "CT_one_2.seg.nrrd"]
    plan = inspect_source(folder)
    assert plan.labels == {"background": 0, "liver": 1, "tumor": 2}
    out = write_dataset(plan, tmp_path / "raw", "Scene")
    m = masks()
    for case, (_, _, image) in (("CT_one", a), ("CT_one_2", b)):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / f"{case}_0000.nii.gz"))),
                                      image)
        label = sitk.ReadImage(str(out / "labelsTr" / f"{case}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), m["liver"] + 2 * m["tumor"])
        # LPS in the file = RAS of the node with x and y negated
        assert np.allclose(label.GetOrigin(), (-ORIGIN[0], -ORIGIN[1], ORIGIN[2]))


def test_a_segmentation_off_the_volume_grid_is_reported(tmp_path):
    scene = newScene()
    good = addCase(scene, "good", 1, ["liver"])
    off = addCase(scene, "off", 2, ["liver"], segmentationSpacing=(1.0, 1.0, 1.0))
    folder = exportScenePairs([good[:2], off[:2]], str(tmp_path / "cases"))
    with pytest.raises(IntakeError) as caught:
        inspect_source(folder)
    [problem] = caught.value.problems
    assert problem.case == "off" and "does not fit the image's voxel grid" in problem.message


def test_bad_pairs_are_refused_and_leave_no_run_behind(tmp_path):
    scene = newScene()
    volume, segmentation, _ = addCase(scene, "only", 1, ["liver"])
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    logic = TrainingLogic(scene, pythonExecutable=pythonForUmamba())
    settings = TrainingSettings(source="", trainingFolder=str(tmp_path / "ws"))
    with pytest.raises(UserFacingError, match="at least 2"):
        logic.startFromScene([(volume, segmentation)], settings)
    with pytest.raises(UserFacingError, match="has no segments"):
        logic.startFromScene([(volume, segmentation), (volume, empty)], settings)
    with pytest.raises(UserFacingError, match="no partner"):
        logic.startFromScene([(volume, segmentation), (volume, None)], settings)
    runs = tmp_path / "ws" / RUNS_FOLDER
    assert not runs.exists() or list(runs.iterdir()) == []


def test_the_scene_s_segmentations_are_found_with_their_volumes_and_exported(tmp_path):
    scene = newScene()
    a = addCase(scene, "CT a", 1, ["liver", "tumor"])
    addCase(scene, "CT b", 2, ["liver"])
    scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "no volume")       # no reference volume: not a case
    emptyOnVolume = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    emptyOnVolume.SetReferenceImageGeometryParameterFromVolumeNode(a[0])  # no segments: not a case
    from UMambaSegmentationLib.TrainingScenePairs import scenePairs
    assert [(v.GetName(), s.GetName()) for v, s in scenePairs(scene)] == [
        ("CT a", "CT a segmentation"), ("CT b", "CT b segmentation")]
    folder = TrainingLogic(scene).exportSceneCases(str(tmp_path / "ws"))
    assert os.path.dirname(folder) == str(tmp_path / "ws" / "scene_cases")
    plan = inspect_source(folder)
    assert plan.labels == {"background": 0, "liver": 1, "tumor": 2} and len(plan.cases) == 2


def test_exporting_a_scene_with_one_segmentation_leaves_nothing(tmp_path):
    scene = newScene()
    addCase(scene, "CT a", 1, ["liver"])
    with pytest.raises(UserFacingError, match="at least 2"):
        TrainingLogic(scene).exportSceneCases(str(tmp_path / "ws"))
    assert not (tmp_path / "ws" / "scene_cases").exists() or not any((tmp_path / "ws" / "scene_cases").iterdir())
