"""A training process killed by the system (SIGKILL) still ends the `--progress-json` stream with an `error`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import umamba_env
from umamba.progress import parse_event


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the training process through /proc")
def test_sigkill_of_the_training_process_ends_with_an_error_event(tiny_workspace, tmp_path):
    shutil.copytree(tiny_workspace / "nnUNet_preprocessed", tmp_path / "nnUNet_preprocessed")
    args = ["train", "990", "2d", "all", "-tr", "bot-noamp", "--epochs", "50", "--iterations-per-epoch", "2",
            "--val-iterations", "1", "--no-final-validation", "--device", "cpu", "--progress-json",
            "--workspace", str(tmp_path)]
    reader = subprocess.Popen([sys.executable, "-m", "umamba", *args], env=umamba_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events, killed, deadline = [], None, time.time() + 300
    try:
        for line in reader.stdout:
            event = parse_event(line)
            if event is None:
                continue
            events.append(event)
            if killed is None and event["event"] == "stage" and event["stage"] == "train":
                (killed,) = _children(reader.pid)  # the training process under the watching parent
                os.kill(killed, signal.SIGKILL)  # what the out-of-memory killer does
            assert time.time() < deadline, "training did not start in time"
        reader.wait(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert killed is not None, [e["event"] for e in events]
    final = events[-1]
    assert final["event"] == "error" and "SIGKILL" in final["message"] and "memory" in final["message"], final
    assert final["hint"] and "--continue" in final["hint"]
    assert final["memory"]["estimate_gb"] > 0  # the estimate the training reported, for the reader to show
    assert reader.returncode == 128 + signal.SIGKILL
