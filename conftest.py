"""Fixtures shared by the package tests (umamba/tests) and the Slicer-side tests (Testing/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("UMAMBA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data when present (a developer checkout and CI), else the test is skipped."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present (real datasets are only beside the project checkout)")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """torch on one thread for the test (`pytestmark = pytest.mark.usefixtures("one_thread")`): on tiny tensors
    thread start-up costs more than it saves, and much more on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- a tiny trained U-Mamba model -------------------------------------------------------------------------------------
# One synthetic phantom dataset per test session, planned and trained through the real `umamba` command line.
TINY_DATASET = "Dataset990_TinyPhantom"


def umamba_env(workspace: Path | None = None, **extra: str) -> dict:
    """Environment for `umamba` subprocesses in tests: no inherited nnUNet_* paths, few CPU workers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")
    if workspace is not None:
        env["UMAMBA_HOME"] = str(Path(workspace) / "umamba_home")
    env.update(extra)
    return env


def run_umamba(args: list[str], workspace: Path, timeout: float = 600, **env: str):
    """Run `python -m umamba ARGS` (plus `--workspace WORKSPACE` for plan/train) with `umamba_env(workspace)`;
    returns the CompletedProcess (text stdout/stderr)."""
    import subprocess
    import sys

    where = ["--workspace", str(workspace)] if args and args[0] in ("plan", "train") else []
    return subprocess.run([sys.executable, "-m", "umamba", *args, *where],
                          env=umamba_env(workspace, **env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory) -> Path:
    """A workspace (nnUNet_raw / nnUNet_preprocessed / nnUNet_results) holding Dataset990_TinyPhantom: 4 training
    and 2 test cases (imagesTs + labelsTs) of 16x16x16 voxels, 1 channel, label 1 = "object", planned and
    preprocessed for 2d and 3d_fullres with the real `umamba plan` (its --progress-json events are in
    `tiny_workspace / "plan_events.jsonl"`)."""
    from umamba.synthetic import make_phantom_dataset

    workspace = tmp_path_factory.mktemp("tiny_workspace")
    make_phantom_dataset(workspace / "nnUNet_raw", 990, "TinyPhantom", n_cases=4, shape=(16, 16, 16), n_test=2,
                         seed=990)
    proc = run_umamba(["plan", "990", "-c", "2d", "3d_fullres", "--progress-json"], workspace)
    (workspace / "plan_events.jsonl").write_text(proc.stdout)
    if proc.returncode != 0:
        pytest.fail(f"umamba plan failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return workspace


@pytest.fixture(scope="session")
def trained_tiny_model(tiny_workspace) -> Path:
    """The nnU-Net model folder of U-Mamba Bot (nnUNetTrainerUMambaBot__nnUNetPlans__3d_fullres) trained with the
    real `umamba train 990 3d_fullres all -tr bot` for 1 epoch of 2 iterations on the tiny phantom (not a useful
    model, but a complete one): dataset.json, plans.json, fold_all/checkpoint_final.pth. Its raw dataset (with
    imagesTs/labelsTs) is `trained_tiny_model.parents[2] / "nnUNet_raw" / "Dataset990_TinyPhantom"`; the
    `--progress-json` events of the training are in `tiny_workspace / "train_bot_events.jsonl"`."""
    proc = run_umamba(["train", "990", "3d_fullres", "all", "-tr", "bot", "--epochs", "1",
                       "--iterations-per-epoch", "2", "--val-iterations", "1", "--no-final-validation",
                       "--device", "cpu", "--progress-json"], tiny_workspace)
    (tiny_workspace / "train_bot_events.jsonl").write_text(proc.stdout)
    if proc.returncode != 0:
        pytest.fail(f"umamba train failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    model = (tiny_workspace / "nnUNet_results" / TINY_DATASET / "nnUNetTrainerUMambaBot__nnUNetPlans__3d_fullres")
    assert (model / "fold_all" / "checkpoint_final.pth").is_file(), proc.stderr[-3000:]
    return model


# -- another Python: Slicer >= 5.10 runs Python 3.12 ------------------------------------------------------------------
def find_python(version: str = "3.12") -> tuple[str | None, str]:
    """(an interpreter of `version` on this machine, where it was found) or (None, every place looked at):
    PATH (pythonX.Y), pyenv's versions (PYENV_ROOT or ~/.pyenv), uv's managed Pythons (`uv python find`, and
    UV_PYTHON_INSTALL_DIR or ~/.local/share/uv/python)."""
    import glob
    import shutil
    import subprocess
    import sys

    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable, "the interpreter running the tests"
    candidates = [(shutil.which(f"python{version}"), f"python{version} on PATH")]
    pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += [(p, "pyenv") for p in sorted(glob.glob(f"{pyenv}/versions/{version}*/bin/python{version}"))]
    uv = shutil.which("uv")
    if uv:
        try:
            found = subprocess.run([uv, "python", "find", "--no-python-downloads", version], capture_output=True,
                                   text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        candidates.append((found or None, "uv python find"))
    uv_dir = os.environ.get("UV_PYTHON_INSTALL_DIR") or str(Path.home() / ".local" / "share" / "uv" / "python")
    candidates += [(p, "uv") for p in sorted(glob.glob(f"{uv_dir}/cpython-{version}*/bin/python{version}"))]
    for path, where in candidates:
        if path and os.access(path, os.X_OK):
            probe = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.stdout.strip() == version:
                return path, where
    return None, (f"no Python {version} found: looked for python{version} on PATH, in {pyenv}/versions, "
                  f"{'with `uv python find`, ' if uv else '(no uv on PATH), '}and in {uv_dir}")
