"""Client options -> the `umamba` command lines of a job. Every option is checked against a fixed set here;
paths in the command lines are the server's own (job folder, model store), never a client's."""

from __future__ import annotations

import re
from pathlib import Path

from umamba.errors import UserError
from umamba.server.files import check_name

PREDICT_DEVICES = ("auto", "cpu", "cuda", "mps")
_FOLD_RE = re.compile(r"^(\d|all)$")
_CONFIG_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_CHECKPOINT_RE = re.compile(r"^checkpoint_[A-Za-z0-9_]{1,40}\.pth$")
TRAIN_STEP = 2  # index of `umamba train` in a training job's steps (import-dataset, plan, train, import-model)


def _int(options: dict, key: str, low: int, high: int) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"option {key} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _unknown(options: dict, known: set[str]) -> None:
    extra = sorted(set(options) - known)
    if extra:
        raise UserError(f"unknown option(s) {', '.join(extra)}", "the server and client versions may differ")


def predict_steps(options: dict, inputs: list[Path], output: Path, model_dir: Path) -> list[list[str]]:
    _unknown(options, {"model", "folds", "disable_tta", "step_size", "device", "checkpoint"})
    args = ["predict", "-i", *map(str, inputs), "-o", str(output), "-m", str(model_dir)]
    folds = options.get("folds")
    if folds:
        if not isinstance(folds, list) or not all(isinstance(f, str) and _FOLD_RE.match(f) for f in folds):
            raise UserError(f"invalid folds {folds!r}", "folds are 0-9 or 'all'")
        args += ["-f", *folds]
    if options.get("disable_tta"):
        args.append("--disable-tta")
    step = options.get("step_size", 0.5)
    if not isinstance(step, (int, float)) or not 0 < step <= 1:
        raise UserError(f"step_size must be in (0, 1], got {step!r}")
    args += ["--step-size", repr(float(step))]
    device = options.get("device") or "auto"
    if device not in PREDICT_DEVICES:
        raise UserError(f"device must be one of {', '.join(PREDICT_DEVICES)}, got {device!r}")
    args += ["--device", device]
    checkpoint = options.get("checkpoint") or "checkpoint_final.pth"
    if not _CHECKPOINT_RE.match(checkpoint):
        raise UserError(f"invalid checkpoint name {checkpoint!r}", "e.g. checkpoint_final.pth")
    return [args + ["--checkpoint", checkpoint]]


def train_steps(options: dict, source: Path, workspace: Path, store: Path, model_name: str) -> list[list[str]]:
    """import-dataset (the same checks and per-case report as locally), plan, train, import-model."""
    _unknown(options, {"dataset_name", "dataset_id", "channel_names", "configuration", "fold", "trainer", "epochs",
                       "iterations_per_epoch", "val_iterations", "num_gpus", "compile", "final_validation",
                       "device"})
    name = check_name(options.get("dataset_name") or "Remote", "dataset name")
    dataset_id = _int(options, "dataset_id", 1, 999) or 501
    configuration = options.get("configuration") or "3d_fullres"
    fold = str(options.get("fold", "all"))
    if not _CONFIG_RE.match(configuration):
        raise UserError(f"invalid configuration {configuration!r}", "e.g. 3d_fullres or 2d")
    if not _FOLD_RE.match(fold):
        raise UserError(f"invalid fold {fold!r}", "0-4 or 'all'")
    trainer = check_name(options.get("trainer") or "bot", "trainer")
    ws = ["--workspace", str(workspace)]
    importing = ["import-dataset", str(source), "--id", str(dataset_id), "--name", name, *ws]
    channels = options.get("channel_names")
    if channels:
        if not isinstance(channels, list) or not all(isinstance(c, str) and _CONFIG_RE.match(c) for c in channels):
            raise UserError(f"invalid channel names {channels!r}")
        importing += ["--channel-names", ",".join(channels)]
    training = ["train", str(dataset_id), configuration, fold, "-tr", trainer, *ws]
    for key, flag in (("epochs", "--epochs"), ("iterations_per_epoch", "--iterations-per-epoch"),
                      ("val_iterations", "--val-iterations")):
        value = _int(options, key, 1, 100_000)
        if value is not None:
            training += [flag, str(value)]
    num_gpus = _int(options, "num_gpus", 1, 64) or 1
    if num_gpus > 1:
        training += ["--num-gpus", str(num_gpus)]
    device = options.get("device")
    if device is not None:
        if device not in PREDICT_DEVICES[1:]:
            raise UserError(f"device must be cpu, cuda or mps, got {device!r}")
        training += ["--device", device]
    if options.get("compile"):
        training.append("--compile")
    if options.get("final_validation") is False:
        training.append("--no-final-validation")
    return [importing,
            ["plan", str(dataset_id), "-c", configuration, *ws],
            training,
            ["import-model", str(workspace / "nnUNet_results"), "--store", str(store), "--name", model_name,
             "--configuration", configuration, "--force"]]


def with_continue(args: list[str]) -> list[str]:
    return args if "--continue" in args else [*args, "--continue"]
