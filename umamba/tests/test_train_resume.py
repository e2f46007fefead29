"""`umamba train --continue` after the training process was killed (SIGKILL) in the middle of an epoch."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_DATASET, run_umamba, umamba_env
from umamba.checkpoint import load_checkpoint
from umamba.progress import parse_event

ARGS = ["train", "990", "2d", "all", "-tr", "bot-noamp", "--epochs", "2", "--iterations-per-epoch", "6",
        "--val-iterations", "1", "--no-final-validation", "--device", "cpu", "--progress-json"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to watch worker processes")
def test_continue_after_sigkill_mid_epoch(tiny_workspace):
    model = tiny_workspace / "nnUNet_results" / TINY_DATASET / "nnUNetTrainerUMambaBotNoAMP__nnUNetPlans__2d"
    fold = model / "fold_all"
    # one augmentation worker per loader, to check that workers die with the killed trainer
    env = umamba_env(tiny_workspace, nnUNet_n_proc_DA="1")
    proc = subprocess.Popen([sys.executable, "-m", "umamba", *ARGS, "--workspace", str(tiny_workspace)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen, workers, deadline = [], [], time.time() + 400
    try:
        for line in proc.stdout:
            event = parse_event(line)
            if event is None:
                continue
            seen.append(event)
            if event["event"] == "progress" and event.get("epoch") == 2 and event["current"] < event["total"]:
                workers = _children(proc.pid)
                proc.send_signal(signal.SIGKILL)  # in the middle of epoch 2
                break
            assert time.time() < deadline, "training did not reach epoch 2 in time"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, [e["event"] for e in seen]
    assert [e["epoch"] for e in seen if e["event"] == "epoch_end"] == [1]
    assert workers, "expected augmentation worker processes"
    end = time.time() + 20
    while any(_alive(w) for w in workers) and time.time() < end:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "augmentation workers outlived the killed trainer"

    # the checkpoint of epoch 1 is complete and loads
    latest = fold / "checkpoint_latest.pth"
    assert load_checkpoint(latest)["current_epoch"] == 1

    resumed = run_umamba(["train", "990", "2d", "all", "-tr", "bot-noamp", "--continue", "--no-final-validation",
                          "--device", "cpu", "--progress-json"], tiny_workspace)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    events = [e for e in map(parse_event, resumed.stdout.splitlines()) if e]
    assert any(e["event"] == "log" and "continuing from" in e["message"] for e in events)
    ends = [e for e in events if e["event"] == "epoch_end"]
    assert [(e["epoch"], e["of"]) for e in ends] == [(2, 2)]  # numbering continues, settings kept
    final = load_checkpoint(fold / "checkpoint_final.pth")
    assert final["current_epoch"] == 2
    assert len(final["logging"]["train_losses"]) == 2  # epoch 1's log came back from the checkpoint
    assert not (fold / "checkpoint_latest.pth").exists()
