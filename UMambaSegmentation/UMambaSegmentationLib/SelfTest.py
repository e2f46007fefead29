"""The module self-test's work, GUI-free so that pytest can run it on a slicer-core scene too.

Obtaining a model without internet: train one. A synthetic phantom dataset (umamba.synthetic, written by a
subprocess) is planned and trained briefly on the CPU with the real `umamba plan` / `umamba train`, through the
same ProcessRunner the panel uses. The model is then used through SegmentationLogic exactly as the panel does,
on a synthetic volume with a known ellipsoid and core built here, and the result is checked: segment names,
geometry, the Dice of each label against the known object, and that cancelling a run leaves nothing behind. Nothing is installed: `missingDependencies()` says when umamba or torch
is missing (the module test is then skipped). A model folder can be passed in to skip the training.
"""

import glob
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .Errors import UserFacingError
from .ModelInfo import ModelInfo
from .ProcessRunner import ProcessRunner
from .SegmentationImport import placeNextTo, voxelArray
from .SegmentationLogic import SegmentationLogic, SegmentationOptions
from .UmambaCommand import findPythonExecutable, umambaCommand

DATASET_ID = 987
DATASET_NAME = "SlicerSelfTest"
SHAPE = (24, 24, 24)
# The 2d configuration learns the phantom in far fewer CPU-seconds than 3d_fullres (24x24 slices, large batches);
# it runs the same U-Mamba code, predictor and import path. See BENCHMARKS.md (module self-test) for the time.
CONFIGURATION, EPOCHS, ITERATIONS = "2d", 2, 15


@dataclass
class SelfTestResult:
    segmentNames: list
    expectedNames: list
    geometryMatches: bool
    dicePerLabel: dict          # {label name: Dice of that label against the known object}
    modelFolder: str
    cancelLeftNothing: bool = None  # None: not checked


def missingDependencies(pythonExecutable=None):
    """None when the Python that runs umamba imports umamba and torch, else a message saying what to do."""
    import subprocess
    try:
        pythonExecutable = pythonExecutable or findPythonExecutable()
        proc = subprocess.run([pythonExecutable, "-c", "import umamba, torch"], capture_output=True, text=True,
                              timeout=300)
    except (OSError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return f"Skipped: no Python to run umamba ({exc})."
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return (f"Skipped: umamba/torch are not installed in Slicer's Python ({last}). Open the module and press "
                "'Install dependencies...' to run this test.")
    return None


def trainingCommands(workDir, pythonExecutable, configuration=CONFIGURATION, epochs=EPOCHS,
                     iterationsPerEpoch=ITERATIONS):
    workspace = os.path.join(workDir, "workspace")
    raw = os.path.join(workspace, "nnUNet_raw")
    makeData = (f"from umamba.synthetic import make_phantom_dataset; "
                f"make_phantom_dataset({raw!r}, {DATASET_ID}, {DATASET_NAME!r}, 4, shape={SHAPE}, "
                f"n_labels=2, overwrite=True)")
    return [
        ("Writing a synthetic phantom dataset", [pythonExecutable, "-c", makeData]),
        ("Planning and preprocessing", umambaCommand(
            ["plan", str(DATASET_ID), "-c", configuration, "-np", "1", "--workspace", workspace], pythonExecutable)),
        ("Training a tiny U-Mamba Bot", umambaCommand(
            ["train", str(DATASET_ID), configuration, "all", "-tr", "bot", "--epochs", str(epochs),
             "--iterations-per-epoch", str(iterationsPerEpoch), "--val-iterations", "2", "--device", "cpu",
             "--no-final-validation", "--workspace", workspace], pythonExecutable)),
    ]


def selfTestEnvironment():
    """One process, no data-augmentation workers: on a CPU the worker processes of nnU-Net cost more than the
    tiny phantom's augmentation (and the build server may have 2 cores)."""
    return {**os.environ, "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}


def runStep(title, command, log, processEvents, timeout=1800):
    log(title)
    runner = ProcessRunner(command, env=selfTestEnvironment()).start()
    deadline = time.monotonic() + timeout
    while True:
        for event in runner.poll():
            if event.get("event") == "error":
                raise UserFacingError(f"{title} failed: {event.get('message')}", event.get("hint"))
            if event.get("event") == "process_exit":
                if event.get("returncode") != 0:
                    tail = "\n".join(list(runner.stderrTail)[-20:])
                    raise UserFacingError(f"{title} failed (exit code {event.get('returncode')}).",
                                          "Is umamba installed in Slicer's Python?", details=tail)
                return
        if time.monotonic() > deadline:
            runner.cancel()
            raise UserFacingError(f"{title} took longer than {timeout} s.", None)
        if processEvents:
            processEvents()
        time.sleep(0.1)


def trainTinyModel(workDir, pythonExecutable, log=print, processEvents=None, configuration=CONFIGURATION,
                   **trainingArgs):
    for title, command in trainingCommands(workDir, pythonExecutable, configuration, **trainingArgs):
        runStep(title, command, log, processEvents)
    pattern = os.path.join(workDir, "workspace", "nnUNet_results", f"Dataset{DATASET_ID:03d}_{DATASET_NAME}",
                           f"*__*__{configuration}")
    folders = sorted(glob.glob(pattern))
    if not folders:
        raise UserFacingError(f"Training finished but no model folder matches {pattern}.", None)
    return folders[0]


def knownObjectVolume(scene, name="SelfTest phantom"):
    """A 32^3 volume with one bright ellipsoid (label 1) around a brighter core (label 2), phantom-like
    intensities, 1.5 mm spacing and an origin away from zero; returns (node, expected label array [k, j, i])."""
    rng = np.random.default_rng(1234)
    k, j, i = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in SHAPE], indexing="ij")
    # r2 = sum(((x - c) / r)^2) <= 1 inside the ellipsoid
    r2 = ((k - 15) / 8.0) ** 2 + ((j - 16) / 7.0) ** 2 + ((i - 14) / 9.0) ** 2
    labels = np.zeros(SHAPE, np.uint8)
    labels[r2 <= 1.0] = 1
    labels[r2 <= 0.3] = 2
    image = (1.0 * (labels > 0) + 0.5 * (labels > 1) + rng.normal(0, 0.3, SHAPE)) * 100.0 + 200.0
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(SHAPE[2], SHAPE[1], SHAPE[0])
    imageData.GetPointData().SetScalars(numpy_support.numpy_to_vtk(image.astype(np.float32).ravel(), deep=True))
    node.SetAndObserveImageData(imageData)
    node.SetSpacing(1.0, 1.0, 1.0)
    node.SetOrigin(-20.0, 35.0, 7.5)
    placeNextTo(scene, node, node)
    return node, labels


def segmentAndCheck(scene, modelFolder, log=print, processEvents=None, pythonExecutable=None, timeout=600):
    model = ModelInfo.fromFolder(modelFolder)
    volume, expected = knownObjectVolume(scene)
    job = SegmentationLogic(scene, pythonExecutable=pythonExecutable).start(
        model, [volume], SegmentationOptions(device="cpu", disableTta=True))
    log("Segmenting the synthetic volume")
    deadline = time.monotonic() + timeout
    while job.status == "running":
        job.poll()
        if processEvents:
            processEvents()
        if time.monotonic() > deadline:
            job.cancel()
            raise UserFacingError(f"Segmentation took longer than {timeout} s.", None)
        time.sleep(0.1)
    if job.status != "succeeded":
        raise job.error or UserFacingError(f"Segmentation ended as {job.status}.", None)
    node = job.segmentationNode
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    names = [segmentation.GetSegment(s).GetName() for s in ids]
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(labelmap)
    idArray = vtk.vtkStringArray()
    for segmentId in ids:
        idArray.InsertNextValue(segmentId)
    slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, idArray, labelmap, volume)
    predicted = voxelArray(labelmap)
    scene.RemoveNode(labelmap)
    geometry = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    ijkToRas = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijkToRas)
    expectedGeometry = slicer.vtkSegmentationConverter.SerializeImageGeometry(ijkToRas, volume.GetImageData())
    dicePerLabel = {}
    for value, name in model.labels:
        a, b = predicted == value, expected == value
        dicePerLabel[name] = float(2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))  # 2|A∩B|/(|A|+|B|)
    return SelfTestResult(names, [n for _v, n in model.labels],
                          segmentation.GetConversionParameter(geometry) == expectedGeometry
                          and predicted.shape == expected.shape, dicePerLabel, modelFolder)


def cancelLeavesNothing(scene, modelFolder, processEvents=None, pythonExecutable=None, timeout=120):
    """Start a segmentation and cancel it once its process runs: True when no node was added, the process has
    ended and its temporary folder is gone."""
    model = ModelInfo.fromFolder(modelFolder)
    volume, _expected = knownObjectVolume(scene, name="SelfTest cancel")
    before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    job = SegmentationLogic(scene, pythonExecutable=pythonExecutable).start(
        model, [volume], SegmentationOptions(device="cpu", disableTta=True))
    deadline = time.monotonic() + timeout
    while job.runner is None or not job.runner.isRunning():
        if job.status != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    job.cancel()
    while job.runner is not None and job.runner.isRunning() and time.monotonic() < deadline:
        if processEvents:
            processEvents()
        time.sleep(0.05)
    left = (job.runner is not None and job.runner.isRunning()) or (job.tempDir and os.path.exists(job.tempDir))
    scene.RemoveNode(volume)
    return job.status == "cancelled" and not left and \
        scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before


def run(scene, workDir, log=print, processEvents=None, pythonExecutable=None, modelFolder=None, **trainingArgs):
    pythonExecutable = pythonExecutable or findPythonExecutable()
    if modelFolder is None:
        shutil.rmtree(workDir, ignore_errors=True)
        os.makedirs(workDir, exist_ok=True)
        modelFolder = trainTinyModel(workDir, pythonExecutable, log, processEvents, **trainingArgs)
    result = segmentAndCheck(scene, modelFolder, log, processEvents, pythonExecutable)
    log("Cancelling a segmentation")
    result.cancelLeftNothing = cancelLeavesNothing(scene, modelFolder, processEvents, pythonExecutable)
    return result
