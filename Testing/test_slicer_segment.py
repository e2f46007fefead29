"""Segment current volume, end to end: a real MRML scene, the real `umamba predict` in a background process,
the tiny model trained in this test session (root conftest fixture `trained_tiny_model`)."""

import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from test_slicer_helpers import addVolume, loadVolume, newScene, pidAlive, pythonForUmamba, segmentLabelArray

import slicer
import vtk
from UMambaSegmentationLib.ModelInfo import ModelInfo
from UMambaSegmentationLib.Presenter import CANCELLED, DONE, SegmentationPresenter
from UMambaSegmentationLib.ProcessRunner import descendantPids
from UMambaSegmentationLib.SegmentationLogic import SegmentationLogic, SegmentationOptions

FAST = SegmentationOptions(device="cpu", disableTta=True)


@pytest.fixture(scope="module")
def model(trained_tiny_model):
    return ModelInfo.fromFolder(trained_tiny_model)


def node_ids(scene):
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def run_presenter(presenter, timeout=600):
    deadline = time.monotonic() + timeout
    presenter.segment()
    while presenter.isRunning():
        assert time.monotonic() < deadline, "prediction did not finish"
        presenter.poll()
        time.sleep(0.05)


def check_result(presenter, scene, volume, model, before):
    assert presenter.state == DONE, presenter.view().errorText
    node = presenter.segmentationNode
    assert node is not None and node.IsA("vtkMRMLSegmentationNode")
    assert set(node_ids(scene)) - set(before) >= {node.GetID()}
    assert node.GetName() == f"{volume.GetName()} segmentation"
    seg = node.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    labels = json.loads((Path(model.folder) / "dataset.json").read_text())["labels"]
    expected = [n for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v != 0]
    assert [seg.GetSegment(i).GetName() for i in ids] == expected  # names and count from dataset.json
    # geometry: the segmentation's reference grid is the volume's grid
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    assert seg.GetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()) \
        == slicer.vtkSegmentationConverter.SerializeImageGeometry(matrix, volume.GetImageData())
    # voxel for voxel: the segments, exported on the volume's grid, equal the predicted label file
    predicted = np.asarray(nib.load(presenter.job.outputFile).dataobj).transpose(2, 1, 0)
    assert np.array_equal(segmentLabelArray(node, ids, volume), predicted)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == sh.GetItemParent(sh.GetItemByDataNode(volume))
    return predicted


def phantom_volumes(scene, channels, shape=(20, 26, 30)):
    """Bright ellipsoid in noise, 1.1 x 0.9 x 1.3 mm, an oblique direction and an off-zero origin."""
    rng = np.random.default_rng(7)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    inside = (k / 0.6) ** 2 + (j / 0.5) ** 2 + (i / 0.55) ** 2 <= 1
    c, s = np.cos(0.4), np.sin(0.4)
    return [addVolume(scene, (200 + 100 * inside + 30 * rng.standard_normal(shape)).astype(np.float32),
                      f"phantom {n}", spacing=(1.3, 0.9, 1.1), origin=(12.5, -40.0, 7.25),
                      directions=((c, s, 0), (-s, c, 0), (0, 0, 1))) for n in range(channels)], inside


def segment(scene, model, volumes, options, tmp_path):
    """A presenter over a real SegmentationLogic (temporary files kept under tmp_path), run to the end."""
    logic = SegmentationLogic(scene, pythonExecutable=pythonForUmamba(), tempRoot=str(tmp_path),
                              keepTemporaryFiles=True)
    presenter = SegmentationPresenter(logic)
    presenter.setModel(model)
    presenter.setVolumes(volumes)
    presenter.setOptions(options)
    run_presenter(presenter)
    return presenter

def test_segment_a_generated_volume(model, tmp_path):
    scene = newScene()
    volumes, inside = phantom_volumes(scene, model.numberOfChannels)
    before = node_ids(scene)
    presenter = segment(scene, model, volumes, FAST, tmp_path)
    predicted = check_result(presenter, scene, volumes[0], model, before)
    assert set(np.unique(predicted)) <= {0} | set(model.labelValues())
    assert presenter.view().progressValue == 100 and "segments" in presenter.view().statusText


def crop(scene, volume, k, j, i, name):
    from UMambaSegmentationLib.SegmentationImport import ijkToRas, voxelArray
    array = voxelArray(volume)[k[0]:k[1], j[0]:j[1], i[0]:i[1]]
    matrix = ijkToRas(volume)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    directions = [tuple(matrix[:3, c] / spacing[c]) for c in range(3)]
    origin = matrix @ np.array([i[0], j[0], k[0], 1.0])
    return addVolume(scene, array, name, spacing=tuple(spacing), origin=tuple(origin[:3]), directions=directions)


def test_segment_the_real_ct_and_remove_temporary_files(model, shared_data, tmp_path):
    scene = newScene()
    full = loadVolume(scene, shared_data / "Dataset504_TSAbdomenCT" / "imagesTr" / "tsct_000_0000.nii.gz", "full")
    # A real 3 mm CT, cropped to 16 x 20 x 24 voxels around the liver: the tiny model works at its own (finer)
    # spacing, so the whole CT would cost a CPU ~30 x more tiles. The crop keeps the real geometry (the origin
    # moves to the crop's first voxel).
    ct = crop(scene, full, (40, 56), (30, 50), (50, 74), "tsct_000 crop")
    volumes = [ct] * model.numberOfChannels
    before = node_ids(scene)
    presenter = segment(scene, model, volumes, SegmentationOptions(device="cpu", disableTta=True, stepSize=1.0),
                        tmp_path)
    check_result(presenter, scene, ct, model, before)
    assert presenter.job.tempDir.startswith(str(tmp_path))
    # without keepTemporaryFiles (the panel's setting) nothing stays behind
    presenter.job._removeTemp()
    assert os.listdir(tmp_path) == []


def test_cancel_during_a_run_leaves_no_node_no_process_no_temp(model, tmp_path):
    scene = newScene()
    volumes, _ = phantom_volumes(scene, model.numberOfChannels, shape=(60, 64, 64))
    before = node_ids(scene)
    presenter = SegmentationPresenter(SegmentationLogic(scene, pythonExecutable=pythonForUmamba(),
                                                        tempRoot=str(tmp_path)))
    presenter.setModel(model)
    presenter.setVolumes(volumes)
    presenter.setOptions(SegmentationOptions(device="cpu"))  # with mirroring: slow enough to cancel mid-run
    presenter.segment()
    runner = presenter.job.runner
    deadline = time.monotonic() + 300
    # wait until umamba is really predicting (model loaded, nnU-Net running), then cancel
    while not any("predicting" in line for line in presenter.logLines):
        assert presenter.isRunning() and time.monotonic() < deadline, presenter.logLines[-20:]
        presenter.poll()
        time.sleep(0.05)
    tree = [runner.pid] + descendantPids(runner.pid)
    assert len(os.listdir(tmp_path)) == 1  # the job's temporary folder exists while it runs
    presenter.pressButton()
    assert presenter.state == CANCELLED
    time.sleep(0.2)
    assert [pid for pid in tree if pidAlive(pid)] == []
    assert node_ids(scene) == before
    assert os.listdir(tmp_path) == []
    presenter.poll()
    assert presenter.state == CANCELLED and presenter.segmentationNode is None
