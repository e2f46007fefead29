"""Every decision of the "Train from folder" section, without Qt (TrainingWidget only binds).

States:
    idle ──setSource()──> inspecting ──folder is usable──> ready ──start()──> running ──> done
                              └──────problems found──────> invalid          │  ├─────> failed
                                                                            │  └cancel()> cancelled
    cancelled / failed (or an unfinished run found in the training folder) ──resume()──> running
`view()` says what the widget shows; `poll()` is called on a timer while a job runs.
"""

import time
from dataclasses import dataclass

from .Errors import UserFacingError
from .TrainingRun import TrainingSettings

IDLE, INSPECTING, READY, INVALID, RUNNING, DONE, FAILED, CANCELLED = (
    "idle", "inspecting", "ready", "invalid", "running", "done", "failed", "cancelled")
STAGE_TEXT = {"import": "Importing the dataset", "plan": "Planning and preprocessing", "train": "Training",
              "register": "Adding the model to the model store", "finished": "Finished"}


def formatDuration(seconds):
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass(frozen=True)
class TrainingView:
    state: str
    sourceText: str        # detected layout and case count, or what is wrong
    labelsText: str
    channelsText: str
    inputsEnabled: bool    # source, options
    startEnabled: bool
    cancelEnabled: bool
    resumeEnabled: bool
    resumeText: str        # which run Resume continues
    progressVisible: bool
    progressValue: int     # 0..100, -1 busy
    progressText: str      # "Training: epoch 3/50, elapsed 0:02:10, ETA 0:30:00"
    statusText: str
    errorText: str


class TrainingPresenter:
    def __init__(self, logic, onChange=None, onModelReady=None, onEvent=None, clock=time.monotonic):
        self.logic = logic
        self.onEvent = onEvent             # called with every event of the running job (the widget, tests)
        self.onChange = onChange
        self.onModelReady = onModelReady   # called with the model's name in the store when a run finishes
        self.clock = clock
        self.state = IDLE
        self.source = ""
        self.channelNames = ""
        self.summary = None
        self.inspectJob = None
        self.job = None
        self.settings = None
        self.error = None
        self.errorPending = False
        self.foundRuns = []
        self.startedAt = None
        self.lastEpoch = None
        self.logLines = []
        self.statusText = "Choose a folder with images and labels."

    # -- inputs ----------------------------------------------------------------------------------------------------
    def setSource(self, source, channelNames=""):
        """Check the folder in the background (a dry run of the import)."""
        if self.state == RUNNING:
            return
        unchanged = (source, channelNames) == (self.source, self.channelNames)
        if unchanged and self.state in (INSPECTING, READY):
            return  # the same folder again (the field lost focus); after problems, the same folder is re-checked
        if self.inspectJob is not None:
            self.inspectJob.cancel()
        self.source, self.channelNames, self.summary, self.error = source, channelNames, None, None
        if not source:
            self.state = IDLE
            self.statusText = "Choose a folder with images and labels."
            return self._changed()
        try:
            self.inspectJob = self.logic.inspect(source, channelNames)
        except UserFacingError as exc:
            self.state, self.error = INVALID, exc
            self.statusText = exc.message
            return self._changed()
        self.state = INSPECTING
        self.statusText = f"Checking {source} ..."
        self._changed()

    def setSettings(self, settings):
        self.settings = settings

    def setFoundRuns(self, runs):
        """Unfinished runs in the training folder (after a Slicer restart), newest first."""
        self.foundRuns = [r for r in runs if r.resumable]
        self._changed()

    # -- actions ---------------------------------------------------------------------------------------------------
    def start(self):
        if self.state not in (READY, DONE, FAILED, CANCELLED) or self.summary is None:
            return
        settings = self.settings or TrainingSettings(source=self.source, trainingFolder="")
        settings.source = self.source
        try:
            self.job = self.logic.start(settings)
        except UserFacingError as exc:
            return self._fail(exc)
        except OSError as exc:
            return self._fail(UserFacingError(f"Could not start the training: {exc}",
                                              "Check that the dependencies are installed."))
        self._running("Started: " + self.job.state.runId)

    def resumeTarget(self):
        if self.job is not None and self.job.state.resumable and self.job.status in ("cancelled", "failed"):
            return self.job.state
        return self.foundRuns[0] if self.foundRuns else None

    def resume(self):
        if self.state in (RUNNING, INSPECTING):
            return
        target = self.resumeTarget()
        if target is None:
            return
        try:
            self.job = self.logic.resume(target)
        except UserFacingError as exc:
            return self._fail(exc)
        self.foundRuns = [r for r in self.foundRuns if r.runId != target.runId]
        self._running(f"Resumed {target.runId} at stage {target.stage}")

    def cancel(self):
        if self.state == RUNNING:
            self.job.cancel()
            self.state = CANCELLED
            self.statusText = (f"Cancelled during {STAGE_TEXT.get(self.job.state.stage, self.job.state.stage).lower()}"
                               ". Resume continues from the last checkpoint.")
            self._changed()
        elif self.state == INSPECTING:
            self.inspectJob.cancel()
            self.state = IDLE
            self._changed()

    def poll(self):
        if self.state == INSPECTING:
            return self._pollInspect()
        if self.state != RUNNING:
            return
        events = self.job.poll()
        for event in events:
            self._onEvent(event)
            if self.onEvent is not None:
                self.onEvent(event)
        if self.job.status == "succeeded":
            self.state = DONE
            name = self.job.state.modelName
            self.statusText = f"Done: the model '{name}' is in the model store and selected for segmentation."
            self._changed()
            if self.onModelReady is not None and name:
                self.onModelReady(name)
        elif self.job.status == "failed":
            self._fail(self.job.error or UserFacingError("The training failed.", "See the log for details."))
        elif events:
            self._changed()

    def _pollInspect(self):
        job = self.inspectJob
        events = job.poll()
        for event in events:
            if event.get("event") == "progress" and event.get("case"):
                # Every file is read: on a large folder this takes a while, so say how far it is.
                self.statusText = f"Checking case {int(event.get('current', 0)) + 1}/{event.get('total')}: " \
                                  f"{event.get('case')}"
        if job.status == "succeeded":
            self.summary = job.summary
            self.state = READY
            warnings = list(self.summary.get("warnings") or [])
            self.logLines = [f"warning: {w}" for w in warnings]
            self.statusText = "Ready: press Start training." + (
                f" {len(warnings)} warning(s), see the log." if warnings else "")
        elif job.status == "failed":
            self.state, self.error = INVALID, job.error
            self.statusText = "The folder cannot be used as it is."
        elif not events:
            return
        self._changed()

    def isBusy(self):
        return self.state in (RUNNING, INSPECTING)

    def takeErrorForDialog(self):
        if not self.errorPending:
            return None
        self.errorPending = False
        return self.error

    # -- view ------------------------------------------------------------------------------------------------------
    def view(self):
        running = self.state == RUNNING
        s = self.summary or {}
        if self.summary:
            sourceText = f"{s.get('layout')} layout, {s.get('cases')} cases"
            labels = s.get("labels") or {}
            labelsText = ", ".join(labels) if labels else "-"
            channelsText = ", ".join(s.get("channels") or []) or "-"
        else:
            sourceText = {IDLE: "-", INSPECTING: "checking ..."}.get(self.state, "-")
            labelsText = channelsText = "-"
        target = None if running or self.state == INSPECTING else self.resumeTarget()
        errorText = ""
        if self.state in (INVALID, FAILED) and self.error is not None:
            errorText = self.error.message + (f"\n{self.error.hint}" if self.error.hint else "")
        return TrainingView(
            state=self.state, sourceText=sourceText, labelsText=labelsText, channelsText=channelsText,
            inputsEnabled=not running,
            startEnabled=self.state in (READY, DONE, FAILED, CANCELLED) and self.summary is not None,
            cancelEnabled=running or self.state == INSPECTING,
            resumeEnabled=target is not None,
            resumeText=f"Resume: {target.describe()}" if target is not None else "",
            progressVisible=running or self.state in (DONE, CANCELLED),
            progressValue=self._progressValue(),
            progressText=self._progressText(),
            statusText=self.statusText, errorText=errorText)

    def _progressValue(self):
        if self.job is None:
            return 0
        st = self.job.state
        if st.stage == "finished":
            return 100
        if st.stage == "train" and st.epochs:
            return int(100 * st.epochs[-1]["epoch"] / max(1, int(st.settings.epochs)))
        return -1 if self.state == RUNNING else 0

    def _progressText(self):
        if self.job is None:
            return ""
        st = self.job.state
        text = STAGE_TEXT.get(st.stage, st.stage)
        if st.stage == "train":
            done = st.epochs[-1]["epoch"] if st.epochs else 0
            text += f": epoch {done}/{int(st.settings.epochs)}"
        if self.startedAt is not None and self.state == RUNNING:
            text += f", elapsed {formatDuration(self.clock() - self.startedAt)}"
        if st.stage == "train" and self.lastEpoch and self.lastEpoch.get("eta_s") is not None:
            text += f", ETA {formatDuration(self.lastEpoch['eta_s'])}"
        return text

    # -- internals -------------------------------------------------------------------------------------------------
    def _running(self, message):
        self.state = RUNNING
        self.error = None
        self.errorPending = False
        self.startedAt = self.clock()
        self.lastEpoch = None
        self.logLines = [message]
        self.statusText = "Training runs in the background; Slicer stays usable."
        self._changed()

    def _fail(self, error):
        self.state = FAILED
        self.error = error
        self.errorPending = True
        self.statusText = "Failed: " + error.message
        self._changed()

    def _onEvent(self, event):
        kind = event.get("event")
        if kind == "epoch_end":
            self.lastEpoch = event
            self._log(f"epoch {event.get('epoch')}/{event.get('of')}: train loss {_fmt(event.get('train_loss'))}, "
                      f"val loss {_fmt(event.get('val_loss'))}, pseudo Dice "
                      f"{', '.join(_fmt(d) for d in event.get('pseudo_dice') or [])}")
        elif kind == "training_stage":
            self._log(f"== {STAGE_TEXT.get(event.get('stage'), event.get('stage'))}")
        elif kind == "stage":
            self._log(f"== {event.get('message') or event.get('stage')}")
        elif kind in ("log", "output"):
            self._log(str(event.get("message", "")))
        elif kind == "error":
            self._log("ERROR: " + str(event.get("message", "")))
        elif kind == "checkpoint":
            self._log(f"checkpoint after epoch {event.get('epoch')}: {event.get('path')}")

    def _log(self, line):
        self.logLines.append(line)
        del self.logLines[:-3000]

    def _changed(self):
        if self.onChange is not None:
            self.onChange()


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
