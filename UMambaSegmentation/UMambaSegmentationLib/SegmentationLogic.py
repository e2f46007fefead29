"""Segment the selected volume(s) with a model: validate, export, run `umamba predict`, import (GUI-free).

    logic = SegmentationLogic(scene)                        # pythonExecutable / tempRoot injectable
    job = logic.start(modelInfo, [volumeNode], SegmentationOptions(device="cpu"))
    while job.status == "running":
        for event in job.poll(): ...                        # progress events of `umamba predict`
    job.segmentationNode                                    # when job.status == "succeeded"

Nothing is added to the scene before the prediction has finished and its label file has been checked, so a
failure or a cancel leaves the scene as it was. The temporary folder (inputs and prediction) is always removed.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from .Errors import UserFacingError
from .ProcessRunner import ProcessRunner
from .SegmentationImport import (geometryDifference, importLabelmap, readLabelmap, sameGeometry, voxelArray,
                                 writeVolume)
from .UmambaCommand import umambaCommand

DEVICES = ("auto", "cuda", "cpu", "mps")


@dataclass
class SegmentationOptions:
    device: str = "auto"      # auto: umamba picks CUDA, then MPS, then CPU
    disableTta: bool = False  # mirroring off: about 4x (2D) to 8x (3D) faster, slightly less accurate
    stepSize: float = 0.5     # sliding-window step as a fraction of the patch; larger is faster
    fast: bool = False        # `umamba predict --fast`: no mirroring and a larger step (unless stepSize is changed)
    folds: tuple = ()         # empty: every trained fold of the model
    compute: object = None    # RemoteCompute.ComputeTarget; None or local: this computer


def validateInputs(model, volumeNodes):
    """Raise UserFacingError for anything that would make the prediction fail or be meaningless."""
    if model is None:
        raise UserFacingError("No model selected.",
                              "Choose a model in 'Model', or import one into the model store first.")
    volumeNodes = [v for v in volumeNodes if v is not None]
    if not volumeNodes:
        raise UserFacingError("No input volume selected.", "Load an image and choose it in 'Input volume'.")
    if len(volumeNodes) < model.numberOfChannels:
        names = ", ".join(model.channelNames)
        raise UserFacingError(
            f"The model '{model.name}' needs {model.numberOfChannels} input volumes ({names}); "
            f"{len(volumeNodes)} selected.", "Choose one volume for each input channel.")
    volumeNodes = volumeNodes[:model.numberOfChannels]
    for channel, node in zip(model.channelNames, volumeNodes):
        image = node.GetImageData() if hasattr(node, "GetImageData") else None
        if image is None:
            raise UserFacingError(f"The volume '{node.GetName()}' ({channel}) has no image data.",
                                  "Choose a loaded image volume.")
        components = image.GetNumberOfScalarComponents()
        if components != 1:
            raise UserFacingError(
                f"The volume '{node.GetName()}' has {components} values per voxel (a 4D, colour or vector "
                f"volume); the model expects one scalar 3D volume per channel.",
                "Extract a single frame/component (e.g. with the Sequences or Vector to Scalar Volume module).")
        dims = image.GetDimensions()
        if min(dims) < 1 or np.prod(dims) == 0:
            raise UserFacingError(f"The volume '{node.GetName()}' is empty.", "Choose a loaded image volume.")
        if model.dimensions == 3 and sorted(dims)[0] == 1:
            raise UserFacingError(
                f"The volume '{node.GetName()}' is a single slice ({dims[0]}x{dims[1]}x{dims[2]}), "
                f"but '{model.name}' is a 3D model ({model.configuration}).",
                "Choose a 3D volume, or a model trained with the 2d configuration.")
    first = volumeNodes[0]
    for node in volumeNodes[1:]:
        if not sameGeometry(first, node):
            raise UserFacingError(
                f"The input volumes '{first.GetName()}' and '{node.GetName()}' have different voxel grids.",
                "Resample all channels onto the first one (Resample Scalar/Vector/DWI Volume module).")
    return volumeNodes


class SegmentationLogic:
    def __init__(self, scene, pythonExecutable=None, tempRoot=None, keepTemporaryFiles=False):
        self.scene = scene
        self.pythonExecutable = pythonExecutable
        self.tempRoot = tempRoot
        self.keepTemporaryFiles = keepTemporaryFiles  # for debugging: inputs and prediction stay in job.tempDir

    def start(self, model, volumeNodes, options=None):
        """Validate, export the inputs and start `umamba predict`; returns the running SegmentationJob."""
        volumeNodes = validateInputs(model, volumeNodes)
        job = SegmentationJob(self.scene, model, volumeNodes, options or SegmentationOptions(),
                              self.pythonExecutable, self.tempRoot)
        job.keepTemporaryFiles = self.keepTemporaryFiles
        job.start()
        return job


class SegmentationJob:
    """One prediction. `status`: 'running', 'succeeded', 'failed' (see `error`) or 'cancelled'."""

    def __init__(self, scene, model, volumeNodes, options, pythonExecutable, tempRoot):
        self.scene = scene
        self.model = model
        self.volumeNodes = volumeNodes
        self.options = options
        self.pythonExecutable = pythonExecutable
        self.tempRoot = tempRoot
        self.status = "new"
        self.error = None
        self.segmentationNode = None
        self.tempDir = None
        self.runner = None
        self.keepTemporaryFiles = False

    # -- start -----------------------------------------------------------------------------------------------------
    def _remote(self):
        return self.options.compute is not None and self.options.compute.isRemote

    def command(self, inputFiles, outputFile):
        if self._remote():  # the model is one of the server's (by name); the server picks its checkpoint
            args = ["predict", "-i", *inputFiles, "-o", outputFile, "-m", self.model.name,
                    "-f", *(self.options.folds or self.model.folds), *self.options.compute.arguments()]
        else:
            args = ["predict", "-i", *inputFiles, "-o", outputFile, "-m", self.model.folder,
                    "-f", *(self.options.folds or self.model.folds), "--checkpoint", self.model.checkpointName()]
        if self.options.fast:
            args.append("--fast")
        if not (self.options.fast and self.options.stepSize == 0.5):   # --fast's own step unless one was chosen
            args += ["--step-size", f"{self.options.stepSize:g}"]
        if self.options.device and self.options.device != "auto":
            args += ["--device", self.options.device]
        if self.options.disableTta:
            args.append("--disable-tta")
        return umambaCommand(args, self.pythonExecutable)

    def start(self):
        self.tempDir = tempfile.mkdtemp(prefix="umamba-segment-", dir=self.tempRoot)
        try:
            inputFiles = []
            for channel, node in enumerate(self.volumeNodes):
                path = os.path.join(self.tempDir, f"case_{channel:04d}.nii.gz")
                writeVolume(node, path)
                inputFiles.append(path)
            self.outputFile = os.path.join(self.tempDir, "prediction", "case.nii.gz")
            env = self.options.compute.environment() if self._remote() else None
            self.runner = ProcessRunner(self.command(inputFiles, self.outputFile), env=env).start()
        except Exception:
            self._removeTemp()
            raise
        self.status = "running"

    # -- while running ---------------------------------------------------------------------------------------------
    def poll(self):
        """Events since the last call. When the process has ended, imports the result (or records the error)."""
        if self.status != "running":
            return []
        events = self.runner.poll()
        for event in events:
            if event.get("event") == "error":
                self.error = UserFacingError(str(event.get("message") or "umamba predict failed"),
                                             event.get("hint"))
            elif event.get("event") == "process_exit":
                self._finish(event.get("returncode"))
        return events

    def cancel(self):
        """Stop the prediction and every process it started; the scene is not touched."""
        if self.status not in ("running", "new"):
            return
        if self.runner is not None:
            self.runner.cancel()
        self._removeTemp()
        self.status = "cancelled"

    # -- end -------------------------------------------------------------------------------------------------------
    def _details(self):
        return "\n".join(self.runner.stderrTail) if self.runner else ""

    def _finish(self, returncode):
        try:
            if returncode != 0:
                if self.error is None:
                    lastLine = next((line for line in reversed(self.runner.stderrTail) if line.strip()), "")
                    self.error = UserFacingError(
                        f"umamba predict stopped with exit code {returncode}" + (f": {lastLine}" if lastLine else "."),
                        "See the log for details. If umamba is missing, install the dependencies first.")
                self.error.details = self._details()
                self.status = "failed"
                return
            self.segmentationNode = self._importResult()
            self.status = "succeeded"
        except UserFacingError as exc:
            exc.details = exc.details or self._details()
            self.error = exc
            self.status = "failed"
        finally:
            if not self.keepTemporaryFiles:
                self._removeTemp()

    def _importResult(self):
        if not os.path.isfile(self.outputFile):
            raise UserFacingError("umamba predict finished but wrote no label file.",
                                  "This looks like a bug in umamba; the log has the details.")
        labelmap = readLabelmap(self.outputFile)
        reference = self.volumeNodes[0]
        difference = geometryDifference(labelmap, reference)
        if difference:  # a label on another grid would be placed wrongly in the scene: refuse it
            raise UserFacingError(
                f"The predicted label file is not on the grid of '{reference.GetName()}' ({difference}; label "
                "file vs volume).", "This looks like a bug in umamba predict; the log has the details.")
        found = set(np.unique(voxelArray(labelmap)).tolist()) - {0}
        unknown = sorted(found - set(self.model.labelValues()))
        if unknown:
            raise UserFacingError(
                f"The prediction contains label values {unknown} that dataset.json of '{self.model.name}' does "
                "not name.", "Fix the model's dataset.json so that it lists every label the model predicts.")
        return importLabelmap(self.scene, labelmap, self.model.labels, reference,
                              f"{reference.GetName()} segmentation")

    def _removeTemp(self):
        if self.tempDir and os.path.isdir(self.tempDir):
            shutil.rmtree(self.tempDir, ignore_errors=True)
