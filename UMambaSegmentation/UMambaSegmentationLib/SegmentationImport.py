"""Volumes in and out of files, and a predicted label file into a segmentation node (real MRML, no slicer.util).

Everything here takes the scene explicitly, so it works both in Slicer and with a bare `vtkMRMLScene` from the
slicer-core wheel (where `slicer.mrmlScene` and `slicer.util`'s scene helpers do not exist).

Geometry: files are written and read by Slicer's own storage node (ITK underneath), which converts between the
RAS coordinates of the scene and the LPS coordinates of NIfTI headers. The predicted label file therefore has
the input volume's geometry, and the segmentation's reference geometry is taken from the input volume itself.
"""

import colorsys

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .Errors import UserFacingError


def writeVolume(volumeNode, path):
    """The volume's voxels and IJK-to-RAS geometry to a NIfTI/NRRD file (parent transforms are not applied)."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)  # a temporary file: speed over size
    if not storage.WriteData(volumeNode):
        raise UserFacingError(f"Could not write '{volumeNode.GetName()}' to {path}.",
                              "Check that the temporary folder is writable and has free space.")


def readLabelmap(path):
    """A label file as a vtkMRMLLabelMapVolumeNode that is NOT in any scene (so a failure leaves no trace)."""
    # ITK reads a truncated file with the missing voxels set to zero: check it first. umamba's integrity check is
    # standard-library code (no torch); where umamba is not installed in this Python the storage node decides alone.
    try:
        from umamba.intake.integrity import integrity_problem
    except ImportError:
        integrity_problem = None
    problem = integrity_problem(path) if integrity_problem else None
    if problem:
        raise UserFacingError(f"The predicted label file {path} {problem}.",
                              "Run the segmentation again; check that the temporary folder has free space.")
    node = slicer.vtkMRMLLabelMapVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise UserFacingError(f"The predicted label file {path} could not be read.", None)
    return node


def voxelArray(volumeNode):
    """The voxels as a numpy array indexed [k, j, i] (a copy)."""
    image = volumeNode.GetImageData()
    dims = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    return array.reshape(shape).copy()


def ijkToRas(volumeNode):
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def sameGeometry(nodeA, nodeB, tolerance=1e-3):
    """Same voxel grid: dimensions equal and IJK-to-RAS equal within `tolerance` (mm)."""
    if nodeA.GetImageData().GetDimensions() != nodeB.GetImageData().GetDimensions():
        return False
    return bool(np.allclose(ijkToRas(nodeA), ijkToRas(nodeB), atol=tolerance))


def geometryDifference(node, reference, tolerance=1e-3):
    """What differs between the voxel grids of `node` and `reference` ("size (..) vs (..)", "origin ...",
    "spacing ...", "direction ..."), or "" when they are the same grid (within `tolerance` mm)."""
    def direction(n):
        matrix = vtk.vtkMatrix4x4()
        n.GetIJKToRASDirectionMatrix(matrix)
        return np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])

    checks = [("size", lambda n: np.array(n.GetImageData().GetDimensions(), float), 0),
              ("origin", lambda n: np.array(n.GetOrigin()), tolerance),
              ("spacing", lambda n: np.array(n.GetSpacing()), tolerance),
              ("direction", direction, tolerance)]
    differences = []
    for name, value, atol in checks:
        a, b = value(node), value(reference)
        if not np.allclose(a, b, atol=atol):
            differences.append(f"{name} {np.round(a, 4).tolist()} vs {np.round(b, 4).tolist()}")
    return "; ".join(differences)


def distinctColors(count):
    """`count` well-separated colours: hues spaced by the golden angle, two brightness levels alternating."""
    colors = []
    for index in range(count):
        hue = (0.1 + index * 0.381966) % 1.0
        value = 0.95 if index % 2 == 0 else 0.75
        colors.append(colorsys.hsv_to_rgb(hue, 0.75, value))
    return colors


def importLabelmap(scene, labelmapNode, labels, referenceVolumeNode, name):
    """A new segmentation node in `scene`: one segment per (value, name) in `labels` (empty when the value does
    not occur), geometry from `referenceVolumeNode`, placed next to it in the subject hierarchy and shown.
    On failure the scene is left as it was."""
    segmentationNode = None
    scene.StartState(slicer.vtkMRMLScene.BatchProcessState)
    try:
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
        # The segmentation lives where the volume lives: under the same (non-hardened) transform.
        segmentationNode.SetAndObserveTransformNodeID(referenceVolumeNode.GetTransformNodeID())
        segmentation = segmentationNode.GetSegmentation()
        # Label value v goes to segment ids[v - 1]: values without a label get placeholder segments, removed below.
        maxValue = max(value for value, _n in labels)
        byValue = dict(labels)
        colors = dict(zip([v for v, _n in labels], distinctColors(len(labels))))
        segmentIds = vtk.vtkStringArray()
        placeholders = []
        for value in range(1, maxValue + 1):
            segmentId = f"label_{value}"
            segmentName = byValue.get(value, segmentId)
            segmentation.AddEmptySegment(segmentId, segmentName, colors.get(value, (0.5, 0.5, 0.5)))
            segmentIds.InsertNextValue(segmentId)
            if value not in byValue:
                placeholders.append(segmentId)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                labelmapNode, segmentationNode, segmentIds):
            raise UserFacingError("Slicer could not turn the predicted label map into segments.", None)
        for segmentId in placeholders:
            segmentation.RemoveSegment(segmentId)
        placeNextTo(scene, segmentationNode, referenceVolumeNode)
        segmentationNode.GetDisplayNode().SetVisibility(True)
    except Exception:
        removeNodeAndDisplay(scene, segmentationNode)
        raise
    finally:
        scene.EndState(slicer.vtkMRMLScene.BatchProcessState)
    return segmentationNode


def removeNodeAndDisplay(scene, node):
    """Remove a displayable node with its display nodes (a bare scene does not remove them by itself)."""
    if node is None or node.GetScene() is None:
        return
    displayNodes = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = shNode.GetItemByDataNode(node) if shNode else 0
    if item:
        shNode.RemoveItem(item, False, False)
    scene.RemoveNode(node)
    for displayNode in displayNodes:
        if displayNode is not None and displayNode.GetScene() is not None:
            scene.RemoveNode(displayNode)


def placeNextTo(scene, node, referenceNode):
    """Put `node` in the same subject-hierarchy folder/study as `referenceNode`."""
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if shNode is None:
        return
    referenceItem = shNode.GetItemByDataNode(referenceNode)
    parent = shNode.GetItemParent(referenceItem) if referenceItem else shNode.GetSceneItemID()
    item = shNode.GetItemByDataNode(node)
    if not item:  # without Slicer's application the hierarchy does not add items by itself
        item = shNode.CreateItem(parent, node)
    shNode.SetItemParent(item, parent)
    return item
