"""Where umamba keeps data: the nnU-Net workspace and the model store. Never inside the package."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

NNUNET_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def user_data_dir() -> Path:
    """The per-user data folder: $UMAMBA_HOME, else the platform's usual place."""
    if os.environ.get("UMAMBA_HOME"):
        return Path(os.environ["UMAMBA_HOME"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "umamba"


def default_model_store() -> Path:
    return Path(os.environ.get("UMAMBA_MODEL_STORE") or user_data_dir() / "models").expanduser()


@dataclass(frozen=True)
class Workspace:
    raw: Path
    preprocessed: Path
    results: Path

    def export_to_environment(self) -> None:
        """nnU-Net reads these variables when `nnunetv2.paths` is first imported: call this before that. The folders
        are made by whoever writes into them (nnU-Net makes its own), so a failing command creates none."""
        for var, path in zip(NNUNET_VARS, (self.raw, self.preprocessed, self.results)):
            os.environ[var] = str(path)


def resolve_workspace(workspace: str | os.PathLike | None = None) -> Workspace:
    """`--workspace` when given (what a person typed wins), else nnU-Net's environment variables when all three
    are set, else the per-user default. Nothing is created here: a command that fails leaves no folders."""
    env = [os.environ.get(v) for v in NNUNET_VARS]
    if workspace is None and all(env):
        return Workspace(*(Path(p).expanduser() for p in env))
    root = Path(workspace).expanduser() if workspace else user_data_dir() / "workspace"
    return Workspace(root / "nnUNet_raw", root / "nnUNet_preprocessed", root / "nnUNet_results")
