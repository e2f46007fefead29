"""`umamba train --num-gpus N`'s DDP path: without GPUs, two ranks in a CPU (gloo) process group through the
runner's own spawn and event forwarding (_ddp_cpu_trainer.py says what a test trainer class must change for that),
and rank 0's checkpoint and event duties with a simulated rank; on a machine with 2 GPUs, `umamba train --num-gpus
2` itself. Each multi-process run is killed after epoch 1 and continued."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_DATASET, umamba_env
from test_train_resume import _alive, _children
from umamba.checkpoint import load_checkpoint
from umamba.progress import Reporter, parse_event

DRIVER = Path(__file__).with_name("_ddp_cpu_trainer.py")
MODEL = "CpuDdpBot__nnUNetPlans__3d_fullres"


def kill_after_first_checkpoint(argv: list[str], env: dict) -> list[dict]:
    """Run a two-rank training, SIGKILL it as soon as epoch 1's checkpoint is announced, and check that rank 0
    alone reported (each event once) and that no rank process outlived it. Returns the events seen."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first, ranks, deadline = [], [], time.time() + 400
    try:
        for line in proc.stdout:
            event = parse_event(line)
            if event is None:
                continue
            first.append(event)
            if event["event"] == "checkpoint" and event["kind"] == "latest":
                ranks = _children(proc.pid)
                proc.send_signal(signal.SIGKILL)
                break
            assert time.time() < deadline, "epoch 1 did not finish in time"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert [e["epoch"] for e in first if e["event"] == "epoch_end"] == [1]  # rank 0's events only, once each
    assert [e["epoch"] for e in first if e["event"] == "checkpoint" and e["kind"] == "latest"] == [1]
    assert len(ranks) >= 2  # the two ranks (and the event queue's helper) were children of the killed process
    end = time.time() + 30
    while any(_alive(p) for p in ranks) and time.time() < end:
        time.sleep(0.2)
    assert not any(_alive(p) for p in ranks), "rank processes outlived the killed training"
    return first


def continue_to_epoch_2(argv: list[str], env: dict, fold: Path) -> list[dict]:
    """`--continue` after the kill: epoch 2 only, from epoch 1's checkpoint, to the final checkpoint."""
    done = subprocess.run([*argv, "--continue"], env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    events = [e for e in map(parse_event, done.stdout.splitlines()) if e]
    assert any(e["event"] == "log" and "continuing from" in e["message"] for e in events)
    assert "epochs 2..2" in next(e["message"] for e in events if e["event"] == "stage")
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [2]
    assert [e["kind"] for e in events if e["event"] == "checkpoint"][-1] == "final"
    assert load_checkpoint(fold / "checkpoint_final.pth")["current_epoch"] == 2
    assert not list(fold.glob("*.tmp-*"))
    return events


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to watch the rank processes")
def test_two_rank_ddp_run_killed_and_continued(tiny_workspace, tmp_path):
    fold = tiny_workspace / "nnUNet_results" / TINY_DATASET / MODEL / "fold_all"
    # rank 1's batch is all inf at epoch 2, iteration 2: every rank must skip that step, not only rank 1
    env = umamba_env(tiny_workspace, UMAMBA_TEST_REPORT_DIR=str(tmp_path), UMAMBA_TEST_POISON="1:2:2")
    argv = [sys.executable, str(DRIVER), str(tiny_workspace), "990", "2", "2"]

    kill_after_first_checkpoint(argv, env)
    assert load_checkpoint(fold / "checkpoint_latest.pth")["current_epoch"] == 1
    assert not (fold / "checkpoint_final.pth").exists()

    events = continue_to_epoch_2(argv, env, fold)
    # rank 0's batch was finite, yet rank 0 reports the skipped step: the decision is shared by the ranks
    skipped = [e for e in events if e["event"] == "log" and "optimizer step skipped" in e["message"]]
    assert len(skipped) == 1 and "epoch 2, iteration 2" in skipped[0]["message"]
    reports = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    for rank, report in enumerate(reports):
        assert (report["rank"], report["world_size"], report["device"]) == (rank, 2, "cpu")
        assert report["skipped_steps"] == 1 and report["finite"]
    assert reports[0]["batch_size"] + reports[1]["batch_size"] == json.loads(
        (fold.parent / "plans.json").read_text())["configurations"]["3d_fullres"]["batch_size"]
    assert reports[0]["checksum"] == reports[1]["checksum"]  # the replicas' weights are still identical


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (umamba/benchmarks/gpu_check.sh ddp)")
def test_umamba_train_on_two_gpus_killed_and_continued(tiny_workspace):
    """The real thing on 2 GPUs: `umamba train --num-gpus 2` (NCCL, nnU-Net's trainer, mixed precision)."""
    fold = tiny_workspace / "nnUNet_results" / TINY_DATASET / "nnUNetTrainerUMambaEnc__nnUNetPlans__3d_fullres" \
        / "fold_all"
    argv = [sys.executable, "-m", "umamba", "train", "990", "3d_fullres", "all", "-tr", "enc", "--num-gpus", "2",
            "--epochs", "2", "--iterations-per-epoch", "4", "--val-iterations", "1", "--no-final-validation",
            "--progress-json", "--workspace", str(tiny_workspace)]
    env = umamba_env(tiny_workspace)
    kill_after_first_checkpoint(argv, env)
    assert load_checkpoint(fold / "checkpoint_latest.pth")["current_epoch"] == 1
    assert not (fold / "checkpoint_final.pth").exists()
    continue_to_epoch_2(argv, env, fold)


def test_only_rank_0_writes_checkpoints_and_reports(tiny_workspace, tmp_path, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tiny_workspace / var))
    from umamba.nnunet import runner

    stream = io.StringIO()
    req = runner.TrainRequest("990", "3d_fullres", "all", trainer="bot", device="cpu")
    trainer = runner.build_trainer(req, tiny_workspace / "nnUNet_preprocessed", "cpu",
                                   Reporter(json_mode=True, stream=stream))
    trainer.initialize()
    trainer.local_rank = 1  # as nnUNetTrainer sets it from the process group
    trainer.save_checkpoint(str(tmp_path / "rank1.pth"))
    assert not list(tmp_path.iterdir()) and stream.getvalue() == ""
    trainer.local_rank = 0
    trainer.save_checkpoint(str(tmp_path / "rank0.pth"))
    assert [p.name for p in tmp_path.iterdir()] == ["rank0.pth"]
    (event,) = map(json.loads, stream.getvalue().splitlines())
    assert event["event"] == "checkpoint" and event["path"] == str(tmp_path / "rank0.pth")
