"""Every decision of the segmentation panel, without Qt: state, button, progress, errors (the widget only binds).

States and transitions:
    idle ──segment()──> running ──process ends, result imported──> done
      ^                   │ ├────process fails / result unusable──> failed
      │                   │ └────cancel()──────────────────────────> cancelled
      └──(done, failed and cancelled behave like idle: the next segment() starts again)
    segment() with bad input goes straight to failed, with the reason; nothing starts.

`view()` returns what the widget shows in the current state. A job is anything with `status`, `poll()`,
`cancel()` and `error` (SegmentationJob, ModelImportJob), so model imports use the same machine.
"""

from dataclasses import dataclass

from .Errors import UserFacingError
from .ModelInfo import ModelInfo

IDLE, RUNNING, DONE, FAILED, CANCELLED = "idle", "running", "done", "failed", "cancelled"


@dataclass(frozen=True)
class PanelView:
    state: str
    buttonText: str         # "Segment" or "Cancel"
    buttonEnabled: bool
    buttonToolTip: str
    inputsEnabled: bool     # model/volume selectors, options and store buttons
    progressVisible: bool
    progressValue: int      # 0..100; -1 means "busy, no known fraction"
    progressText: str
    statusText: str         # one line under the button
    errorText: str          # empty unless failed


class SegmentationPresenter:
    def __init__(self, logic, onChange=None):
        self.logic = logic
        self.onChange = onChange
        self.state = IDLE
        self.model = None
        self.modelError = None
        self.volumeNodes = []
        self.options = None
        self.job = None
        self.activity = "segment"   # what the running job does: "segment" or "import"
        self.error = None
        self.errorPending = False  # the widget shows one dialog per failure: see takeErrorForDialog()
        self.progressValue = 0
        self.progressText = ""
        self.statusText = "Choose a model and a volume, then press Segment."
        self.logLines = []
        self.segmentationNode = None

    # -- inputs ----------------------------------------------------------------------------------------------------
    def setModel(self, model):
        self.model, self.modelError = model, None
        self._changed()

    def setModelFolder(self, folder, name=None, card=None):
        """Read a model folder now, so a damaged one is reported when it is chosen (and again on Segment)."""
        try:
            self.model, self.modelError = ModelInfo.fromFolder(folder, name=name, card=card), None
        except UserFacingError as exc:
            self.model, self.modelError = None, exc
        self._changed()

    def setModelError(self, error):
        self.model, self.modelError = None, error
        self._changed()

    def setVolumes(self, volumeNodes):
        self.volumeNodes = [v for v in volumeNodes if v is not None]
        self._changed()

    def setOptions(self, options):
        self.options = options

    # -- actions ---------------------------------------------------------------------------------------------------
    def pressButton(self):
        if self.state == RUNNING:
            self.cancel()
        else:
            self.segment()

    def segment(self):
        if self.state == RUNNING:
            return
        self.segmentationNode = None
        self.logLines = []
        try:
            if self.modelError is not None:
                raise self.modelError
            self.job = self.logic.start(self.model, self.volumeNodes, self.options)
        except UserFacingError as exc:
            self._fail(exc)
            return
        except OSError as exc:  # no interpreter, temp folder not writable, ...
            self._fail(UserFacingError(f"Could not start the segmentation: {exc}",
                                       "Check that the dependencies are installed (Install dependencies)."))
            return
        self._startRunning("segment", "Starting the prediction...")

    def runJob(self, job, activity, text):
        """Drive an already started job (a model import) through the same states."""
        if self.state == RUNNING:
            raise UserFacingError("Another task is still running.", "Wait for it or cancel it.")
        self.job = job
        self.logLines = []
        self._startRunning(activity, text)

    def cancel(self):
        if self.state != RUNNING:
            return
        self.job.cancel()
        self.state = CANCELLED
        self.statusText = "Cancelled. Nothing was added to the scene." if self.activity == "segment" \
            else "Cancelled."
        self.progressText = ""
        self._changed()

    def poll(self):
        """Call on a timer while `isRunning()`: reads the job's events and moves the state on."""
        if self.state != RUNNING:
            return
        events = self.job.poll()
        for event in events:
            self._onEvent(event)
        if self.job.status == "running":
            if events:
                self._changed()
        elif self.job.status == "succeeded":
            self.state = DONE
            self.progressValue = 100
            self.segmentationNode = getattr(self.job, "segmentationNode", None)
            if self.activity == "segment" and self.segmentationNode is not None:
                count = self.segmentationNode.GetSegmentation().GetNumberOfSegments()
                self.statusText = f"Done: '{self.segmentationNode.GetName()}' with {count} segments."
            else:
                self.statusText = "Done."
            self.progressText = "Done"
            self._changed()
        elif self.job.status == "failed":
            self._fail(self.job.error or UserFacingError("The task failed.", "See the log for details."))
        elif self.job.status == "cancelled" and self.state == RUNNING:
            self.state = CANCELLED
            self._changed()

    def isRunning(self):
        return self.state == RUNNING

    def takeErrorForDialog(self):
        """The error to show in a dialog, once per failure (None otherwise)."""
        if not self.errorPending:
            return None
        self.errorPending = False
        return self.error

    # -- what the widget shows -------------------------------------------------------------------------------------
    def view(self):
        running = self.state == RUNNING
        if running:
            buttonToolTip = "Stop the running task and every process it started."
        elif self.modelError is not None:
            buttonToolTip = self.modelError.message
        elif self.model is None:
            buttonToolTip = "Choose a model first."
        elif not self.volumeNodes:
            buttonToolTip = "Choose an input volume first."
        else:
            buttonToolTip = f"Segment '{self.volumeNodes[0].GetName()}' with {self.model.name}."
        errorText = ""
        if self.state == FAILED and self.error is not None:
            errorText = self.error.message + (f"\n{self.error.hint}" if self.error.hint else "")
        return PanelView(
            state=self.state,
            buttonText="Cancel" if running else "Segment",
            buttonEnabled=True,
            buttonToolTip=buttonToolTip,
            inputsEnabled=not running,
            progressVisible=running or self.state == DONE,
            progressValue=self.progressValue,
            progressText=self.progressText,
            statusText=self.statusText,
            errorText=errorText,
        )

    # -- internals -------------------------------------------------------------------------------------------------
    def _startRunning(self, activity, text):
        self.activity = activity
        self.state = RUNNING
        self.error = None
        self.errorPending = False
        self.progressValue = -1
        self.progressText = text
        self.statusText = "Running in the background; the rest of Slicer stays usable."
        self._changed()

    def _fail(self, error):
        self.state = FAILED
        self.error = error
        self.errorPending = True
        self.progressText = ""
        self.statusText = "Failed: " + error.message
        self._changed()

    def _onEvent(self, event):
        kind = event.get("event")
        if kind == "stage":
            self.progressText = str(event.get("message") or event.get("stage") or "")
            self.progressValue = -1
            self._log(self.progressText)
        elif kind == "progress":
            total = event.get("total") or 0
            current = event.get("current") or 0
            if isinstance(total, (int, float)) and total > 0 and isinstance(current, (int, float)):
                self.progressValue = max(0, min(100, int(round(100.0 * current / total))))
                label = event.get("case") or event.get("message") or event.get("what") or ""
                self.progressText = f"{label} {int(current)}/{int(total)}".strip()
        elif kind == "log":
            self._log(str(event.get("message", "")))
        elif kind == "output":
            self._log(str(event.get("message", "")))
        elif kind == "error":
            self._log("ERROR: " + str(event.get("message", "")))
        elif kind == "done":
            self._log("Finished.")
        # other events (epoch_end, checkpoint, unknown future ones) do not concern this panel

    def _log(self, line):
        self.logLines.append(line)
        del self.logLines[:-2000]

    def _changed(self):
        if self.onChange is not None:
            self.onChange()
