"""`umamba train` end to end through the real command (CPU): events, checkpoints, Enc 2d, bad arguments."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_DATASET, run_umamba
from umamba.checkpoint import load_checkpoint
from umamba.nets import build_network
from umamba.progress import parse_event

FAST = ["--epochs", "1", "--iterations-per-epoch", "2", "--val-iterations", "1", "--no-final-validation",
        "--device", "cpu"]


def _events(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    events = [parse_event(line) for line in lines]
    assert all(e is not None for e in events), f"non-event line on stdout: {lines}"
    return events


def _load_strictly(model_dir, variant: str, configuration: str) -> dict:
    plans = json.loads((model_dir / "plans.json").read_text())
    dataset_json = json.loads((model_dir / "dataset.json").read_text())
    ckpt = load_checkpoint(model_dir / "fold_all" / "checkpoint_final.pth")
    net = build_network(variant, plans, configuration, len(dataset_json["channel_names"]),
                        len(dataset_json["labels"]), deep_supervision=False)
    net.load_state_dict(ckpt["network_weights"], strict=True)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    return ckpt


def test_bot_3d_fullres_events_and_checkpoint(trained_tiny_model, tiny_workspace):
    events = _events((tiny_workspace / "train_bot_events.jsonl").read_text())
    kinds = [e["event"] for e in events]
    assert kinds[0] in ("stage", "log") and kinds[-1] == "done" and "error" not in kinds
    if kinds[0] == "log":  # the memory estimate, where the free memory is known
        assert events[0]["memory"]["estimate_gb"] > 0 and "needs about" in events[0]["message"]
    assert all(isinstance(e["time"], float) for e in events)

    (epoch_end,) = [e for e in events if e["event"] == "epoch_end"]
    assert (epoch_end["epoch"], epoch_end["of"]) == (1, 1)
    for field in ("train_loss", "val_loss", "epoch_time_s", "eta_s"):
        assert isinstance(epoch_end[field], float), field
    assert epoch_end["labels"] == ["object"] and len(epoch_end["pseudo_dice"]) == 1
    assert epoch_end["eta_s"] == 0.0 and epoch_end["epoch_time_s"] > 0

    iterations = [e for e in events if e["event"] == "progress"]
    assert iterations and iterations[-1]["current"] == iterations[-1]["total"] == 2

    checkpoints = {e["kind"]: e for e in events if e["event"] == "checkpoint"}
    assert set(checkpoints) >= {"best", "final"}
    assert checkpoints["final"]["path"] == str(trained_tiny_model / "fold_all" / "checkpoint_final.pth")
    assert checkpoints["final"]["epoch"] == 1

    done = events[-1]
    assert done["model_folder"] == str(trained_tiny_model) and done["outputs"] == [str(trained_tiny_model)]
    assert done["checkpoint"] == checkpoints["final"]["path"]
    for name in ("dataset.json", "plans.json", "dataset_fingerprint.json"):
        assert (trained_tiny_model / name).is_file()
    # no temporary checkpoint left behind; checkpoint_latest is removed by nnU-Net at the end
    assert sorted(p.name for p in (trained_tiny_model / "fold_all").glob("checkpoint*")) == [
        "checkpoint_best.pth", "checkpoint_final.pth"]

    ckpt = _load_strictly(trained_tiny_model, "bot", "3d_fullres")
    assert ckpt["trainer_name"] == "nnUNetTrainerUMambaBot" and ckpt["current_epoch"] == 1


def test_enc_2d_trains_with_human_output(tiny_workspace):
    proc = run_umamba(["train", "990", "2d", "all", "-tr", "enc", *FAST], tiny_workspace)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("epoch 1/1: train loss") and "pseudo Dice [" in line for line in lines), lines
    assert lines[-1].startswith("done: ")
    assert not any(line.startswith("{") for line in lines)
    model = tiny_workspace / "nnUNet_results" / TINY_DATASET / "nnUNetTrainerUMambaEnc__nnUNetPlans__2d"
    ckpt = _load_strictly(model, "enc", "2d")
    assert ckpt["trainer_name"] == "nnUNetTrainerUMambaEnc"


@pytest.mark.parametrize("args, expected", [
    (["990", "3d_fullres", "all", "-tr", "nonsense"], "unknown trainer 'nonsense'"),
    (["990", "3d_fullres", "all", "--num-gpus", "2", "--device", "cpu"], "needs CUDA GPUs"),
    (["990", "3d_fullres", "all", "--device", "tpu"], "unknown device 'tpu'"),
    (["990", "3d_fullres", "0"], "needs at least 5 training cases"),
    (["990", "3d_lowres", "all"], "configuration '3d_lowres' is not in nnUNetPlans.json"),
    (["404", "3d_fullres", "all"], "dataset '404' not found"),
    (["990", "3d_fullres", "all", "--continue", "--pretrained", "x.pth"], "cannot be combined"),
])
def test_bad_arguments_are_error_events(tiny_workspace, args, expected):
    proc = run_umamba(["train", *args, "--progress-json"], tiny_workspace, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    events = _events(proc.stdout)
    assert events[-1]["event"] == "error" and expected in events[-1]["message"], events


def test_num_gpus_without_cuda_is_refused(tiny_workspace):
    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        pytest.skip("this machine has 2 GPUs: the argument would be valid")
    proc = run_umamba(["train", "990", "3d_fullres", "all", "--num-gpus", "2", "--progress-json"], tiny_workspace,
                      timeout=300)
    assert proc.returncode == 2
    (error,) = _events(proc.stdout)
    assert "--num-gpus 2 needs 2 CUDA GPUs" in error["message"] and error["hint"]
