"""The panel's Resume runs `umamba train --continue` as TrainingJob builds it: a checkpoint whose unpickling would
run code is refused there too (the message names --trust-checkpoint), and the code never runs."""

import shutil
import subprocess

import torch

from conftest import TINY_DATASET, umamba_env
from test_slicer_helpers import pythonForUmamba

from UMambaSegmentationLib.TrainingLogic import TrainingJob
from UMambaSegmentationLib.TrainingRun import RunState, TrainingSettings


class RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_resume_refuses_a_checkpoint_that_runs_code(tiny_workspace, trained_tiny_model, tmp_path):
    from umamba.checkpoint import load_checkpoint

    ws, marker = tmp_path / "training", tmp_path / "code_ran"
    for sub in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(tiny_workspace / sub, ws / sub)
    fold = ws / "nnUNet_results" / TINY_DATASET / trained_tiny_model.name / "fold_all"
    fold.mkdir(parents=True)
    ckpt = load_checkpoint(trained_tiny_model / "fold_all" / "checkpoint_final.pth")
    ckpt["payload"] = RunsCodeWhenUnpickled(marker)
    torch.save(ckpt, fold / "checkpoint_latest.pth")  # a run stopped after its first epoch

    settings = TrainingSettings(source=str(tmp_path / "images"), trainingFolder=str(ws), epochs=2, device="cpu",
                                iterationsPerEpoch=1, valIterations=1)
    state = RunState(runId="resume", settings=settings, stage="train", datasetId=990, dataset=TINY_DATASET)
    command = TrainingJob(state, None, pythonForUmamba(), resume=True).command("train")
    assert "--continue" in command
    proc = subprocess.run(command, env=umamba_env(ws), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "--trust-checkpoint" in out and "arbitrary code" in out, out[-2000:]
    assert not marker.exists()
