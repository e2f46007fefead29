"""The state of one training run, kept in a small JSON file inside the training folder (Qt-free).

    <training folder>/umamba_runs/<run id>/run.json     this state (rewritten atomically at every change)
    <training folder>/nnUNet_raw, nnUNet_preprocessed, nnUNet_results   the nnU-Net workspace of every run

Slicer may close (or crash) in the middle of a run: the background process is stopped, but this file survives,
so the panel lists unfinished runs (`findRuns`) and resumes them with `umamba train --continue`, and the chart is
rebuilt from the epochs recorded here.

Stages, in order: import (dataset intake) -> plan -> train -> register (into the model store) -> finished.
`status`: running, cancelled, failed, finished; a run found `running` when no process runs any more was
interrupted (Slicer closed) and counts as resumable.
"""

import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field

RUNS_FOLDER = "umamba_runs"
STATE_FILE = "run.json"
STAGES = ("import", "plan", "train", "register", "finished")
RUNNING, CANCELLED, FAILED, FINISHED = "running", "cancelled", "failed", "finished"


@dataclass
class TrainingSettings:
    source: str                        # the folder the user chose (any layout umamba import-dataset reads)
    trainingFolder: str                # workspace: nnUNet_raw / _preprocessed / _results and umamba_runs
    datasetName: str = ""              # default: the source folder's name
    variant: str = "bot"               # bot | enc (umamba train -tr)
    configuration: str = "3d_fullres"  # 3d_fullres | 2d
    epochs: int = 100
    fold: str = "all"                  # all cases train one model: the right default for small sets
    device: str = "auto"               # auto | cuda | cpu | mps
    iterationsPerEpoch: int = 0        # 0: nnU-Net's default (250)
    valIterations: int = 0             # 0: nnU-Net's default (50 validation batches per epoch)
    channelNames: str = ""             # e.g. "CT" or "T1,T2"; empty: from the file names
    modelStoreFolder: str = ""         # empty: the default store


@dataclass
class RunState:
    runId: str
    settings: TrainingSettings
    stage: str = "import"
    status: str = RUNNING
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    datasetId: int = 0
    dataset: str = ""                  # DatasetXXX_Name once imported
    labels: list = field(default_factory=list)
    epochs: list = field(default_factory=list)   # epoch_end events, one per finished epoch (sorted)
    lastCheckpointEpoch: int = 0
    modelFolder: str = ""
    modelName: str = ""                # name in the model store once registered
    remoteJob: str = ""                # the server's job id when training on a server (to follow it again)
    message: str = ""                  # last error or cancel note

    # -- files -----------------------------------------------------------------------------------------------------
    @property
    def folder(self):
        return os.path.join(self.settings.trainingFolder, RUNS_FOLDER, self.runId)

    @property
    def path(self):
        return os.path.join(self.folder, STATE_FILE)

    def save(self):
        self.updated = time.time()
        os.makedirs(self.folder, exist_ok=True)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=1)
        os.replace(tmp, self.path)  # a reader never sees half a file

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        settings = TrainingSettings(**{k: v for k, v in data.pop("settings").items()
                                       if k in TrainingSettings.__dataclass_fields__})
        return cls(settings=settings, **{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @classmethod
    def new(cls, settings):
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", settings.datasetName or os.path.basename(
            os.path.normpath(settings.source)) or "run").strip("_")[:40]
        runId = f"{time.strftime('%Y%m%d-%H%M%S')}_{name}_{settings.variant}_{settings.configuration}_" \
                f"{uuid.uuid4().hex[:6]}"
        return cls(runId=runId, settings=settings)

    # -- what the panel needs --------------------------------------------------------------------------------------
    def recordEpoch(self, event):
        """Keep one entry per epoch: a resumed run that repeats an epoch replaces the earlier entry."""
        epoch = event.get("epoch")
        if not isinstance(epoch, int):
            return
        keep = {k: event.get(k) for k in ("epoch", "of", "train_loss", "val_loss", "pseudo_dice", "labels",
                                          "epoch_time_s", "eta_s")}
        self.epochs = sorted([e for e in self.epochs if e.get("epoch") != epoch] + [keep],
                             key=lambda e: e["epoch"])

    @property
    def resumable(self):
        return self.status in (RUNNING, CANCELLED, FAILED) and self.stage != "finished"

    def describe(self):
        done = self.epochs[-1]["epoch"] if self.epochs else 0
        return (f"{self.dataset or self.settings.datasetName or os.path.basename(self.settings.source)} "
                f"({self.settings.variant}, {self.settings.configuration}): {self.status} at stage {self.stage}, "
                f"{done}/{self.settings.epochs} epochs")


def findRuns(trainingFolder):
    """Every run recorded under the training folder, newest first (unreadable files are skipped)."""
    root = os.path.join(trainingFolder, RUNS_FOLDER)
    runs = []
    if not os.path.isdir(root):
        return runs
    for name in os.listdir(root):
        path = os.path.join(root, name, STATE_FILE)
        if os.path.isfile(path):
            try:
                runs.append(RunState.load(path))
            except (OSError, ValueError, TypeError, KeyError):
                continue
    return sorted(runs, key=lambda r: r.created, reverse=True)
