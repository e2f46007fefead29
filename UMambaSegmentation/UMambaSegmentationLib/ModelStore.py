"""The per-user model store as the panel sees it: list, delete, open, import (Qt-free, no umamba import).

Layout (written by `umamba import-model`, defined in umamba/src/umamba/model_store.py):
    <store>/<name>/umamba_card.json    the card: name, dataset, labels, channel_names, trainer, variant,
                                       configuration, folds, created, ... (unknown keys are ignored)
    <store>/<name>/dataset.json, plans.json, fold_X/checkpoint_*.pth   the nnU-Net model folder itself
Importing runs `umamba import-model SOURCE --store STORE` in a background process, so the checks (zip members
that escape the folder, unknown trainers, missing checkpoints) are the package's, in one place.
"""

import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field

from .Errors import UserFacingError
from .ModelInfo import ModelInfo
from .ProcessRunner import ProcessRunner
from .UmambaCommand import umambaCommand

CARD_FILE = "umamba_card.json"
STORE_ENV_VARIABLE = "UMAMBA_MODEL_STORE"


def defaultStoreFolder():
    """Same rule as umamba.paths.default_model_store(), without importing umamba."""
    if os.environ.get(STORE_ENV_VARIABLE):
        return os.path.expanduser(os.environ[STORE_ENV_VARIABLE])
    if os.environ.get("UMAMBA_HOME"):
        return os.path.join(os.path.expanduser(os.environ["UMAMBA_HOME"]), "models")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "umamba", "models")


@dataclass
class StoredModel:
    name: str
    folder: str
    card: dict = field(default_factory=dict)

    def description(self):
        """The card in a few lines, for the panel."""
        c = self.card
        labels = c.get("labels") or {}
        labelNames = [n for n, v in labels.items() if v not in (0, [0])]
        return "\n".join([
            f"Dataset: {c.get('dataset', '?')}",
            f"Labels ({len(labelNames)}): {', '.join(labelNames)}",
            f"Input channels: {', '.join(c.get('channel_names') or [])}",
            f"Trainer: {c.get('trainer', '?')} ({c.get('variant', '?')}), configuration {c.get('configuration', '?')}",
            f"Folds: {', '.join(c.get('folds') or [])}",
            f"Imported: {c.get('created', '?')}",
        ])


class ModelStore:
    def __init__(self, folder=None):
        self.folder = os.path.abspath(os.path.expanduser(folder or defaultStoreFolder()))

    def models(self):
        """Every model with a readable card, sorted by name (half-imported staging folders are hidden)."""
        found = []
        if not os.path.isdir(self.folder):
            return found
        for name in sorted(os.listdir(self.folder)):
            path = os.path.join(self.folder, name)
            cardPath = os.path.join(path, CARD_FILE)
            if name.startswith(".") or not os.path.isfile(cardPath):
                continue
            try:
                with open(cardPath, encoding="utf-8") as f:
                    card = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(card, dict):
                found.append(StoredModel(str(card.get("name") or name), path, card))
        return found

    def find(self, name):
        for model in self.models():
            if model.name == name:
                return model
        raise UserFacingError(f"There is no model named '{name}' in {self.folder}.",
                              "Import it first, or choose another model store folder.")

    def modelInfo(self, name):
        """The model's ModelInfo (raises UserFacingError when its folder is damaged)."""
        stored = self.find(name)
        return ModelInfo.fromFolder(stored.folder, name=stored.name, card=stored.card)

    def delete(self, name):
        stored = self.find(name)
        # Renamed first (atomic), removed after: the store never shows a half-deleted model.
        trash = os.path.join(self.folder, f".trash-{uuid.uuid4().hex}")
        os.rename(stored.folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def folderOf(self, name):
        return self.find(name).folder

    def importJob(self, source, name=None, pythonExecutable=None):
        """A started ModelImportJob for `umamba import-model SOURCE` (a model/results folder or an nnU-Net zip)."""
        if not source or not os.path.exists(source):
            raise UserFacingError(f"{source or 'No file or folder'} does not exist.",
                                  "Choose a model folder (with dataset.json and plans.json) or a zip.")
        args = ["import-model", str(source), "--store", self.folder]
        if name:
            args += ["--name", name]
        job = ModelImportJob(umambaCommand(args, pythonExecutable))
        job.start()
        return job


class ModelImportJob:
    """Same interface as SegmentationJob (status, poll, cancel, error), so the presenter drives both."""

    def __init__(self, command):
        self.command = command
        self.runner = None
        self.status = "new"
        self.error = None
        self.importedNames = []

    def start(self):
        os.makedirs(self.command[self.command.index("--store") + 1], exist_ok=True)
        self.runner = ProcessRunner(self.command).start()
        self.status = "running"

    def poll(self):
        if self.status != "running":
            return []
        events = self.runner.poll()
        for event in events:
            kind = event.get("event")
            if kind == "error":
                self.error = UserFacingError(str(event.get("message") or "import failed"), event.get("hint"))
            elif kind == "done":
                self.importedNames = [c.get("name") for c in event.get("cards") or [] if isinstance(c, dict)]
            elif kind == "process_exit":
                if event.get("returncode") == 0:
                    self.status = "succeeded"
                else:
                    if self.error is None:
                        last = next((l for l in reversed(self.runner.stderrTail) if l.strip()), "")
                        self.error = UserFacingError(f"umamba import-model failed (exit code "
                                                     f"{event.get('returncode')}). {last}".strip(), None)
                    self.error.details = "\n".join(self.runner.stderrTail)
                    self.status = "failed"
        return events

    def cancel(self):
        if self.status == "running":
            self.runner.cancel()
            self.status = "cancelled"
