"""Train a U-Mamba model from a folder of images and labels, in the background (Qt-free, GUI-free).

    logic = TrainingLogic(scene)                          # pythonExecutable / storeFolder injectable
    job = logic.inspect(folder)                           # `umamba import-dataset --dry-run`: layout, cases, labels
    job = logic.start(TrainingSettings(source=folder, trainingFolder=workspace, epochs=50))
    while job.status == "running":
        for event in job.poll(): ...                      # every event of every step, plus `training_stage`
    job.state.modelName                                   # in the model store once job.status == "succeeded"
    logic.resume(runState)                                # after cancel, failure or a Slicer restart
    logic.startFromScene([(volumeNode, segmentationNode), ...], settings)   # cases from the current scene

One run is a chain of `umamba` commands, each a background process through the module's one ProcessRunner:
import-dataset -> plan -> train --progress-json -> import-model. The run's state (RunState) is saved in the
training folder after every step and every epoch, and each `epoch_end` adds a row to the run's TrainingChart.
"""

import os
import shutil
import time

from .Errors import UserFacingError
from .ModelStore import ModelStore, defaultStoreFolder
from .ProcessRunner import ProcessRunner
from .TrainingChart import TrainingChart
from .TrainingRun import CANCELLED, FAILED, FINISHED, RUNNING, STAGES, RunState, findRuns
from .TrainingRun import TrainingSettings  # noqa: F401  (callers build settings with the logic's import)
from .UmambaCommand import umambaCommand

VARIANTS = ("bot", "enc")
CONFIGURATIONS = ("3d_fullres", "2d")
DEVICES = ("auto", "cuda", "cpu", "mps")


def defaultTrainingFolder():
    """umamba's own default workspace (umamba.paths: <user data>/umamba/workspace), so the command line sees the
    same datasets and models. The model store folder follows the same per-user rule."""
    return os.path.join(os.path.dirname(defaultStoreFolder()), "workspace")


def validateSettings(settings):
    if not settings.source or not os.path.isdir(settings.source):
        raise UserFacingError(f"The source folder '{settings.source}' does not exist.",
                              "Choose the folder that holds your images and labels.")
    if settings.variant not in VARIANTS:
        raise UserFacingError(f"Unknown variant '{settings.variant}'.", "Choose Bot or Enc.")
    if settings.configuration not in CONFIGURATIONS:
        raise UserFacingError(f"Unknown configuration '{settings.configuration}'.", "Choose 3d_fullres or 2d.")
    if settings.device not in DEVICES:
        raise UserFacingError(f"Unknown device '{settings.device}'.", f"Choose one of {', '.join(DEVICES)}.")
    if int(settings.epochs) < 1:
        raise UserFacingError("The number of epochs must be at least 1.", "nnU-Net's default is 1000.")
    if str(settings.fold) != "all" and not (str(settings.fold).isdigit() and 0 <= int(settings.fold) <= 4):
        raise UserFacingError(f"Fold '{settings.fold}' is not valid.", "Use 'all' or 0-4.")
    if not settings.trainingFolder:
        raise UserFacingError("No training folder chosen.", "Choose where datasets and models are kept.")
    # Absolute paths: the run file must still be right when Slicer starts again from another working folder.
    settings.source = os.path.abspath(os.path.expanduser(settings.source))
    settings.trainingFolder = os.path.abspath(os.path.expanduser(settings.trainingFolder))
    try:
        os.makedirs(settings.trainingFolder, exist_ok=True)
    except OSError as exc:
        raise UserFacingError(f"Cannot create the training folder {settings.trainingFolder}: {exc}",
                              "Choose a folder you can write to.") from None


class _Step:
    """One background `umamba` command of a job."""

    def __init__(self, command, env=None):
        self.runner = ProcessRunner(command, env=env).start()
        self.error = None

    def lastLines(self):
        return "\n".join(self.runner.stderrTail)


class InspectJob:
    """`umamba import-dataset SOURCE --dry-run`: what the folder holds (`summary`), or every problem (`error`)."""

    def __init__(self, source, channelNames, pythonExecutable):
        args = ["import-dataset", source, "--dry-run"]
        if channelNames:
            args += ["--channel-names", channelNames]
        self.status = "running"
        self.error = None
        self.summary = None
        self.step = _Step(umambaCommand(args, pythonExecutable))

    def poll(self):
        if self.status != "running":
            return []
        events = self.step.runner.poll()
        for event in events:
            kind = event.get("event")
            if kind == "error":
                self.error = _errorFrom(event)
            elif kind == "done":
                self.summary = event
            elif kind == "process_exit":
                if event.get("returncode") == 0 and self.summary is not None:
                    self.status = "succeeded"
                else:
                    self.error = self.error or _exitError("import-dataset", event, self.step)
                    self.status = "failed"
        return events

    def cancel(self):
        if self.status == "running":
            self.step.runner.cancel()
            self.status = "cancelled"


def _errorFrom(event):
    problems = event.get("problems") or []
    details = "\n".join(f"{p.get('case')}: {p.get('message')}" for p in problems if isinstance(p, dict))
    return UserFacingError(str(event.get("message") or "failed"), event.get("hint"), details or None)


def _exitError(command, event, step):
    last = next((line for line in reversed(step.runner.stderrTail) if line.strip()), "")
    error = UserFacingError(f"umamba {command} stopped with exit code {event.get('returncode')}"
                            + (f": {last}" if last else "."), "See the log for details.")
    error.details = step.lastLines()
    return error


class TrainingJob:
    """A run from its current stage to the end. `status`: running, succeeded, failed (`error`), cancelled."""

    def __init__(self, state, scene, pythonExecutable=None, resume=False, compute=None):
        self.state = state
        self.compute = compute  # RemoteCompute.ComputeTarget: plan and train run on a server
        self.pythonExecutable = pythonExecutable
        self.store = ModelStore(state.settings.modelStoreFolder or None)
        self.resume = resume
        self.status = "new"
        self.error = None
        self.step = None
        self.chart = TrainingChart(scene, state.runId, title=self._title()) if scene is not None else None
        for epoch in state.epochs:  # a resumed run (maybe after a restart) shows its earlier epochs again
            self._chartEpoch(epoch)

    def _title(self):
        s = self.state.settings
        name = self.state.dataset or s.datasetName or os.path.basename(os.path.normpath(s.source))
        return f"{name} {s.variant} {s.configuration}"

    # -- commands --------------------------------------------------------------------------------------------------
    def command(self, stage):
        s, workspace = self.state.settings, ["--workspace", self.state.settings.trainingFolder]
        if stage == "import":
            args = ["import-dataset", s.source, *workspace]
            if s.datasetName:
                args += ["--name", s.datasetName]
            if s.channelNames:
                args += ["--channel-names", s.channelNames]
        elif stage == "plan":
            args = ["plan", str(self.state.datasetId), "-c", s.configuration, *workspace]
        elif stage == "train" and self._remote():
            return self._remoteTrainCommand()
        elif stage == "train":
            args = ["train", str(self.state.datasetId), s.configuration, str(s.fold), *self._trainOptions(),
                    *workspace]
            if self.resume:
                args.append("--continue")  # umamba starts fresh when no checkpoint exists yet
        else:
            raise ValueError(stage)
        return umambaCommand(args, self.pythonExecutable)

    def _trainOptions(self):
        s = self.state.settings
        args = ["-tr", s.variant, "--epochs", str(int(s.epochs))]
        if s.iterationsPerEpoch:
            args += ["--iterations-per-epoch", str(int(s.iterationsPerEpoch))]
        if s.valIterations:
            args += ["--val-iterations", str(int(s.valIterations))]
        if s.device and s.device != "auto":
            args += ["--device", s.device]
        if str(s.fold) == "all":
            # With fold 'all' the validation cases are the training cases: nnU-Net's final sliding-window
            # validation would only re-predict the training set, at the cost of minutes to hours.
            args.append("--no-final-validation")
        return args

    # -- running ---------------------------------------------------------------------------------------------------
    def start(self):
        self.state.status = RUNNING
        self.state.message = ""
        self.state.save()
        self.status = "running"
        self._startStage()
        return self

    def _startStage(self):
        stage = self.state.stage
        if stage == "register":
            self.step = self.store.importJob(self.state.modelFolder, name=self._modelName(),
                                             pythonExecutable=self.pythonExecutable)
        else:
            self.step = _Step(self.command(stage), env=self.compute.environment() if self._remote() else None)

    # -- on a server: the dataset is checked and written here (import), then `umamba train --server` sends it,
    # the server plans and trains it, and the client puts the model into the local store (no plan/register step)
    def _remote(self):
        return self.compute is not None and self.compute.isRemote

    def _remoteTrainCommand(self):
        s = self.state.settings
        dataset = os.path.join(s.trainingFolder, "nnUNet_raw", self.state.dataset)
        args = ["train", dataset, s.configuration, str(s.fold), *self._trainOptions(), "--store", self.store.folder,
                *self.compute.arguments()]
        if self.resume and self.state.remoteJob:
            args += ["--job", self.state.remoteJob]  # follow the server's job again: it went on without us
        return umambaCommand(args, self.pythonExecutable)

    def _modelName(self):
        taken = {m.name for m in self.store.models()}
        s = self.state.settings
        base = f"{self.state.dataset or 'Dataset'}_{s.variant}_{s.configuration}"
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        return name

    def poll(self):
        """Events since the last call (the steps' events, and `training_stage` when a step starts)."""
        if self.status != "running":
            return []
        stage = self.state.stage
        if stage == "register":
            events = self.step.poll()
            if self.step.status == "succeeded":
                self.state.modelName = (self.step.importedNames or [""])[0]
                return events + self._advance()
            if self.step.status == "failed":
                self._fail(self.step.error)
            return events
        events = self.step.runner.poll()
        extra = []
        for event in events:
            kind = event.get("event")
            if kind == "error":
                self.step.error = _errorFrom(event)
            elif kind == "epoch_end" and stage == "train":
                self.state.recordEpoch(event)
                self._chartEpoch(event)
                self.state.save()
            elif kind == "checkpoint" and stage == "train" and isinstance(event.get("epoch"), int):
                self.state.lastCheckpointEpoch = event["epoch"]
                self.state.save()
            elif kind == "log" and event.get("job") and stage == "train" and self._remote():
                self.state.remoteJob = str(event["job"])
                self.state.save()
            elif kind == "done":
                self._stageDone(stage, event)
            elif kind == "process_exit":
                if event.get("cancelled"):
                    continue
                if event.get("returncode") == 0:
                    extra += self._advance()
                else:
                    self._fail(self.step.error or _exitError(stage, event, self.step))
        return events + extra

    def _stageDone(self, stage, event):
        if stage == "import":
            self.state.datasetId = int(event.get("dataset_id") or 0)
            self.state.dataset = str(event.get("dataset") or "")
            self.state.labels = list((event.get("labels") or {}).keys())
        elif stage == "train":
            self.state.modelFolder = str(event.get("model_folder") or (event.get("outputs") or [""])[0])
            if self._remote():
                self.state.modelName = str(event.get("model") or "")

    def _advance(self):
        nextStage = STAGES[STAGES.index(self.state.stage) + 1]
        while self._remote() and nextStage in ("plan", "register"):  # the server plans; the client registers
            nextStage = STAGES[STAGES.index(nextStage) + 1]
        self.state.stage = nextStage
        self.resume = False
        if nextStage == "finished":
            self.state.status = FINISHED
            self.state.save()
            self.status = "succeeded"
            return [{"event": "training_stage", "stage": "finished"}]
        self.state.save()
        try:
            self._startStage()
        except (UserFacingError, OSError) as exc:
            self._fail(exc if isinstance(exc, UserFacingError) else
                       UserFacingError(f"Could not start the {nextStage} step: {exc}", None))
        return [{"event": "training_stage", "stage": nextStage}]

    def _fail(self, error):
        self.error = error
        self.state.status = FAILED
        self.state.message = error.message
        self.state.save()
        self.status = "failed"

    def cancel(self):
        """Stop the running step with its whole process tree; the run can be resumed later."""
        if self.status != "running":
            return
        if self.step is not None:
            (self.step if self.state.stage == "register" else self.step.runner).cancel()
        self.state.status = CANCELLED
        self.state.message = f"cancelled during {self.state.stage}"
        self.state.save()
        self.status = "cancelled"

    def _chartEpoch(self, event):
        if self.chart is not None:
            self.chart.addEpoch(event)


class TrainingLogic:
    def __init__(self, scene, pythonExecutable=None, storeFolder=None, compute=None):
        self.scene = scene
        self.pythonExecutable = pythonExecutable
        self.storeFolder = storeFolder
        self.compute = compute  # RemoteCompute.ComputeTarget (None: this computer)

    def inspect(self, source, channelNames=""):
        if not source or not os.path.isdir(source):
            raise UserFacingError(f"The source folder '{source}' does not exist.",
                                  "Choose the folder that holds your images and labels.")
        return InspectJob(source, channelNames, self.pythonExecutable)

    def start(self, settings):
        validateSettings(settings)
        if not settings.modelStoreFolder and self.storeFolder:
            settings.modelStoreFolder = self.storeFolder
        return TrainingJob(RunState.new(settings), self.scene, self.pythonExecutable, compute=self.compute).start()

    def exportSceneCases(self, trainingFolder):
        """Write every segmentation of the scene with its volume (scenePairs) into a new folder under the training
        folder; the panel then treats it like a folder the user chose."""
        from .TrainingScenePairs import exportScenePairs, scenePairs

        folder = os.path.join(trainingFolder, "scene_cases", time.strftime("%Y%m%d-%H%M%S"))
        try:
            return exportScenePairs(scenePairs(self.scene), folder)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def startFromScene(self, pairs, settings):
        """Train on (volume node, segmentation node) pairs of the scene: they are written into the run's folder
        (TrainingScenePairs) and go through the same intake as a folder would."""
        from .TrainingScenePairs import exportScenePairs

        settings.datasetName = settings.datasetName or "SceneCases"
        if not settings.trainingFolder:
            raise UserFacingError("No training folder chosen.", "Choose where datasets and models are kept.")
        state = RunState.new(settings)
        folder = os.path.join(state.folder, "scene_cases")
        try:
            settings.source = exportScenePairs(pairs, folder)
            validateSettings(settings)
        except Exception:
            shutil.rmtree(state.folder, ignore_errors=True)  # a failed start leaves no half-written run
            raise
        if not settings.modelStoreFolder and self.storeFolder:
            settings.modelStoreFolder = self.storeFolder
        return TrainingJob(state, self.scene, self.pythonExecutable, compute=self.compute).start()

    def resume(self, state):
        """Continue a cancelled, failed or interrupted run from its stage (training from its last checkpoint)."""
        if isinstance(state, str):
            state = RunState.load(state)
        if not state.resumable:
            raise UserFacingError(f"The run {state.runId} has finished; there is nothing to resume.",
                                  "Start a new training instead.")
        resumeTraining = state.stage == "train"
        return TrainingJob(state, self.scene, self.pythonExecutable, resume=resumeTraining,
                           compute=self.compute).start()

    @staticmethod
    def runs(trainingFolder):
        return findRuns(trainingFolder)

    @staticmethod
    def resumableRuns(trainingFolder):
        return [r for r in findRuns(trainingFolder) if r.resumable]
