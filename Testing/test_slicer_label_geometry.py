"""The predicted label file is imported only when it lies on the input volume's grid: size, origin, spacing and
direction are each checked, and a mismatch is a clear error that adds nothing to the scene."""

import numpy as np
import pytest

from test_slicer_helpers import addVolume, newScene, writeModelFolder

from UMambaSegmentationLib.Errors import UserFacingError
from UMambaSegmentationLib.ModelInfo import ModelInfo
from UMambaSegmentationLib.SegmentationImport import writeVolume
from UMambaSegmentationLib.SegmentationLogic import SegmentationJob, SegmentationOptions

GRID = dict(spacing=(0.8, 1.25, 2.5), origin=(10.0, -20.0, 5.0), directions=((-1, 0, 0), (0, -1, 0), (0, 0, 1)))
OTHER_GRIDS = {
    "size": dict(shape=(7, 9, 12)),
    "origin": dict(origin=(10.0, -20.0, 9.0)),
    "spacing": dict(spacing=(0.8, 1.25, 3.0)),
    "direction": dict(directions=((1, 0, 0), (0, -1, 0), (0, 0, 1))),
}


def jobWithLabelFile(tmp_path, scene, shape=(7, 9, 11), **grid):
    model = ModelInfo.fromFolder(str(writeModelFolder(tmp_path / "model", labels={"background": 0, "liver": 1})))
    volume = addVolume(scene, np.zeros((7, 9, 11), np.int16), "ct", **GRID)
    labels = np.zeros(shape, np.uint8)
    labels[2:4, 3:6, 4:8] = 1
    labelNode = addVolume(newScene(), labels, "label", **{**GRID, **grid})
    job = SegmentationJob(scene, model, [volume], SegmentationOptions(device="cpu"), None, str(tmp_path))
    job.outputFile = str(tmp_path / "case.nii.gz")
    writeVolume(labelNode, job.outputFile)
    return job


def test_label_on_the_volume_grid_is_imported(tmp_path):
    scene = newScene()
    node = jobWithLabelFile(tmp_path, scene)._importResult()
    assert node.GetSegmentation().GetNthSegment(0).GetName() == "liver"


@pytest.mark.parametrize("what", sorted(OTHER_GRIDS))
def test_label_on_another_grid_is_refused_with_what_differs(tmp_path, what):
    scene = newScene()
    change = dict(OTHER_GRIDS[what])
    job = jobWithLabelFile(tmp_path, scene, **change)
    before = scene.GetNumberOfNodes()
    with pytest.raises(UserFacingError) as caught:
        job._importResult()
    assert caught.value.message.startswith("The predicted label file is not on the grid of 'ct' (")
    assert f"{what} " in caught.value.message and [w for w in OTHER_GRIDS if w != what and f"; {w} " in
                                                   caught.value.message] == []
    assert scene.GetNumberOfNodes() == before
