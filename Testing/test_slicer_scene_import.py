"""Volumes out to files and label files back in as segmentations, on a real MRML scene (slicer-core wheel)."""

import json

import nibabel as nib
import numpy as np
import pytest

from test_slicer_helpers import addVolume, loadVolume, newScene, segmentLabelArray

import slicer
from UMambaSegmentationLib.SegmentationImport import (distinctColors, ijkToRas, importLabelmap, readLabelmap,
                                                       voxelArray, writeVolume)

def oblique_volume(scene):
    """A volume with anisotropic spacing, an oblique direction and an origin: any RAS/LPS slip shows."""
    rng = np.random.default_rng(0)
    array = rng.integers(-100, 1000, size=(7, 9, 11)).astype(np.int16)  # [k, j, i]
    c, s = np.cos(0.3), np.sin(0.3)
    return addVolume(scene, array, "oblique", spacing=(0.8, 1.25, 2.5), origin=(10.0, -20.0, 5.0),
                     directions=((c, s, 0), (-s, c, 0), (0, 0, 1))), array


def test_written_volume_has_the_nifti_geometry_of_the_node(tmp_path):
    scene = newScene()
    node, array = oblique_volume(scene)
    path = tmp_path / "x_0000.nii.gz"
    writeVolume(node, path)
    image = nib.load(str(path))
    # ITK works in LPS and the NIfTI header in RAS: after both conversions nibabel's affine (voxel -> RAS)
    # must equal the node's IJK-to-RAS exactly, and the voxels must not be flipped.
    assert np.allclose(image.affine, ijkToRas(node), atol=1e-4)
    assert np.array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), array)
    assert scene.GetNumberOfNodesByClass("vtkMRMLStorageNode") == 0  # nothing left in the scene


def test_label_file_becomes_named_segments_with_the_volume_geometry(tmp_path):
    scene = newScene()
    node, _ = oblique_volume(scene)
    labels = np.zeros((7, 9, 11), np.uint8)
    labels[1:4, 2:6, 3:8] = 1
    labels[5:7, 0:3, 0:2] = 3  # value 2 ("empty") never occurs: its segment stays empty
    affine = ijkToRas(node)  # the label file shares the input's grid, as a prediction does
    path = tmp_path / "pred.nii.gz"
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), affine), str(path))
    before = scene.GetNumberOfNodes()
    segmentation = importLabelmap(scene, readLabelmap(path), [(1, "liver"), (2, "empty"), (3, "spleen")], node,
                                  "oblique segmentation")
    assert scene.GetNumberOfNodes() > before
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    assert [seg.GetSegment(i).GetName() for i in ids] == ["liver", "empty", "spleen"]
    colors = [tuple(seg.GetSegment(i).GetColor()) for i in ids]
    assert len(set(colors)) == 3
    assert segmentation.GetName() == "oblique segmentation"
    # reference geometry = the volume's, and the labelmaps equal the file voxel for voxel
    expected = slicer.vtkSegmentationConverter.SerializeImageGeometry(_matrix(node), node.GetImageData())
    assert seg.GetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()) \
        == expected
    assert np.array_equal(segmentLabelArray(segmentation, ids, node), np.where(labels == 3, 3, labels))
    # placed next to the input in the subject hierarchy, and shown
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(segmentation)) == sh.GetItemParent(sh.GetItemByDataNode(node))
    assert segmentation.GetDisplayNode().GetVisibility()


def test_real_ct_with_117_labels(shared_data, tmp_path):
    root = shared_data / "Dataset504_TSAbdomenCT"
    scene = newScene()
    ct = loadVolume(scene, root / "imagesTr" / "tsct_000_0000.nii.gz", "tsct_000")
    names = json.loads((root / "dataset.json").read_text())["labels"]
    labels = sorted((v, n) for n, v in names.items() if v)
    segmentation = importLabelmap(scene, readLabelmap(root / "labelsTr" / "tsct_000.nii.gz"), labels, ct, "ct seg")
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    assert [seg.GetSegment(i).GetName() for i in ids] == [n for _v, n in labels]
    reference = np.asarray(nib.load(str(root / "labelsTr" / "tsct_000.nii.gz")).dataobj).transpose(2, 1, 0)
    assert np.array_equal(segmentLabelArray(segmentation, ids, ct), reference)
    # the written CT reads back identical (geometry and voxels)
    writeVolume(ct, tmp_path / "ct.nii.gz")
    original = nib.load(str(root / "imagesTr" / "tsct_000_0000.nii.gz"))
    written = nib.load(str(tmp_path / "ct.nii.gz"))
    assert np.allclose(written.affine, original.affine, atol=1e-4)
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))


def test_failed_import_leaves_the_scene_as_it_was(tmp_path):
    scene = newScene()
    node, _ = oblique_volume(scene)
    before = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    with pytest.raises(Exception):
        importLabelmap(scene, readLabelmap(tmp_path / "missing.nii.gz"), [(1, "a")], node, "x")
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()  # a labelmap without image data makes Slicer's import fail
    with pytest.raises(Exception):
        importLabelmap(scene, labelmap, [(1, "a")], node, "x")
    assert [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())] == before


def test_colors_are_distinct_for_many_labels():
    colors = np.array(distinctColors(117))
    distances = np.linalg.norm(colors[:, None] - colors[None], axis=-1) + np.eye(117)
    assert distances.min() > 0.01


def _matrix(node):
    import vtk
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return m


def test_voxel_array_of_a_vector_volume_keeps_components():
    scene = newScene()
    node = addVolume(scene, np.zeros((2, 3, 4, 3), np.float32), "rgb", components=3)
    assert voxelArray(node).shape == (2, 3, 4, 3)


def test_a_truncated_label_file_is_refused_by_name(tmp_path):
    """ITK would read the cut file with the missing voxels set to zero; the import names the file instead."""
    from UMambaSegmentationLib.Errors import UserFacingError

    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.uint8), np.eye(4)), str(path))
    assert readLabelmap(path).GetImageData() is not None
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(UserFacingError, match="truncated") as info:
        readLabelmap(path)
    assert str(path) in str(info.value)
