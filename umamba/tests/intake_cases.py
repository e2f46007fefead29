"""Small real image files for the intake tests: SimpleITK images and Slicer segmentations written by slicer-core."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (8, 12, 14)            # z, y, x
SPACING = (1.0, 1.0, 2.0)      # x, y, z
# A vtkOrientedImageData with origin 0 and identity axes is in RAS; Slicer writes it in LPS, i.e. x and y flipped.
LPS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def write_image(path: Path, array: np.ndarray, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=LPS) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def case_arrays(seed: int, n_labels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) with `n_labels` non-overlapping boxes; the image is brighter inside them."""
    rng = np.random.default_rng(seed)
    label = np.zeros(SHAPE, np.uint8)
    for k in range(1, n_labels + 1):
        z, y, x = rng.integers(1, 3), rng.integers(1, 4) + 5 * (k - 1), rng.integers(1, 5)
        label[z:z + 3, y:y + 3, x:x + 4] = k
    image = (rng.normal(0, 1, SHAPE) + 3 * (label > 0)).astype(np.float32)
    return image, label


def _slicer_with_converters():
    """slicer-core with the segmentation converter rules registered (the Slicer application does this at start-up;
    without them a segmentation cannot even hold a binary labelmap)."""
    import slicer
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
        factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    return slicer


def write_slicer_segmentation(path: Path, segments: list[tuple[str, np.ndarray]], separate: tuple[str, ...] = (),
                              spacing=SPACING) -> Path:
    """A `.seg.nrrd` written by slicer-core's own segmentation storage node.

    `segments` are (name, (z, y, x) mask) in the order Slicer adds them (which decides Slicer's label values);
    names in `separate` are moved to their own layer, as Slicer does for overlapping segments.
    """
    slicer = _slicer_with_converters()
    import vtk
    from vtk.util import numpy_support
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    segmentation = node.GetSegmentation()
    for name, mask in segments:
        image = slicer.vtkOrientedImageData()
        image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
        image.SetSpacing(*spacing)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask.astype(np.uint8).ravel()
        segment_id = segmentation.AddEmptySegment("", name)
        assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(image, node, segment_id)
    for name in separate:
        segmentation.SeparateSegmentLabelmap(segmentation.GetSegmentIdBySegmentName(name))
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node), f"slicer-core could not write {path}"
    return path
