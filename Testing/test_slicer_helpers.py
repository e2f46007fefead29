"""Shared helpers of the Slicer-side tests (no tests here): a real MRML scene from the slicer-core wheel,
volumes made from arrays, model folders written to disk."""

import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "UMambaSegmentation"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

import slicer  # noqa: E402  (the slicer-core wheel)
import vtk  # noqa: E402
from vtk.util import numpy_support  # noqa: E402


def pythonForUmamba():
    """The interpreter the module runs umamba with in tests (the project's venv)."""
    return str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))


def serveModel(dataDir, modelFolder, name="tiny"):
    """A real `umamba serve` on a free 127.0.0.1 port (no GPU) offering `modelFolder` as `name`; call .stop()."""
    import subprocess
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "umamba" / "tests"))
    from remote_server import Server  # the package tests' loopback server

    subprocess.run([pythonForUmamba(), "-m", "umamba", "import-model", str(modelFolder), "--store",
                    str(Path(dataDir) / "models"), "--name", name], check=True, capture_output=True)
    return Server(dataDir, "--gpus", "none").start()


_moduleLogics = []  # kept alive for the whole test session, as Slicer keeps its module logics


def newScene():
    """A bare scene plus what Slicer's application always has: the subject hierarchy node and the
    Segmentations module logic (whose construction registers the segment representation converters)."""
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    _moduleLogics.append(logic)
    return scene


def nodeCount(scene):
    return scene.GetNumberOfNodes()


def addVolume(scene, array, name="volume", spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
              directions=((-1, 0, 0), (0, -1, 0), (0, 0, 1)), components=1):
    """A scalar (or vector) volume node in the scene from a numpy array indexed [k, j, i(, c)]."""
    array = np.ascontiguousarray(array)
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if components > 1 else "vtkMRMLScalarVolumeNode",
                                   name)
    image = vtk.vtkImageData()
    shape = array.shape[:3]
    image.SetDimensions(shape[2], shape[1], shape[0])
    flat = array.reshape(-1, components) if components > 1 else array.ravel()
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    image.GetPointData().SetScalars(scalars)
    node.SetAndObserveImageData(image)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    matrix = vtk.vtkMatrix4x4()
    for col, axis in enumerate(directions):
        for row in range(3):
            matrix.SetElement(row, col, axis[row])
    node.SetIJKToRASDirectionMatrix(matrix)
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if not shNode.GetItemByDataNode(node):
        shNode.CreateItem(shNode.GetSceneItemID(), node)
    return node


def loadVolume(scene, path, name="volume"):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node), path
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    shNode.CreateItem(shNode.GetSceneItemID(), node)
    return node


def writeModelFolder(root, labels=None, channels=("CT",), configuration="3d_fullres", patchSize=(32, 32, 32),
                     folds=("0",), trainer="nnUNetTrainerUMambaBot"):
    """The files ModelInfo reads, as nnU-Net writes them (the checkpoint is not a real network: these folders
    are for the checks that happen before anything runs)."""
    folder = Path(root) / f"{trainer}__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True)
    dataset = {"channel_names": {str(i): c for i, c in enumerate(channels)}, "numTraining": 2,
               "file_ending": ".nii.gz"}
    if labels is not None:
        dataset["labels"] = labels
    (folder / "dataset.json").write_text(json.dumps(dataset))
    plans = {"plans_name": "nnUNetPlans",
             "configurations": {configuration: {"patch_size": list(patchSize), "data_identifier": "x"}}}
    (folder / "plans.json").write_text(json.dumps(plans))
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"not a real checkpoint")
    return folder


def segmentLabelArray(segmentationNode, segmentIds, referenceVolume):
    """The segments exported back to a label array on the reference volume's grid, indexed [k, j, i]."""
    from UMambaSegmentationLib.SegmentationImport import voxelArray
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    segmentationNode.GetScene().AddNode(labelmap)
    ids = vtk.vtkStringArray()
    for segmentId in segmentIds:
        ids.InsertNextValue(segmentId)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentationNode, ids, labelmap, referenceVolume)
    array = voxelArray(labelmap)
    segmentationNode.GetScene().RemoveNode(labelmap)
    return array


def childPids(pid):
    from UMambaSegmentationLib.ProcessRunner import descendantPids
    return descendantPids(pid)


def pidAlive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
