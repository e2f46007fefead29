"""`umamba bench train-epoch`: `umamba train`'s own code path per arm, on the tiny phantom on CPU."""

from __future__ import annotations

import json
import math

import pytest

from conftest import run_umamba
from umamba.bench.train_epoch import add_ratios, summarize


def test_summary_times_only_the_iterations_after_warmup():
    record = {"trainer": "nnUNetTrainer", "mamba_block": None, "device": "cpu", "patch_size": [16, 16, 16],
              "batch_size_per_process": 1, "iteration_end_s": [10.0, 30.0, 31.0, 32.0, 34.0],
              "loss": [1.0, 0.9, 0.8, 0.7, 0.6], "peak_gib": 1.5, "peak_kind": "cuda_allocated"}
    row = summarize(record, warmup=2, num_gpus=2)
    # iterations 3..5 end at 31, 32, 34; the clock starts when iteration 2 ended (30.0)
    assert row["iterations"] == 3 and row["iterations_per_s"] == pytest.approx(3 / 4.0)
    assert row["ms_per_iteration"] == pytest.approx(4000 / 3)
    assert row["global_batch"] == 2 and row["loss"] == record["loss"] and row["block"] == "-"
    rows = [dict(row, arm="umamba"), dict(row, arm="plain", iterations_per_s=0.5), {"arm": "original",
                                                                                     "skipped": "no"}]
    add_ratios(rows)
    assert rows[0]["vs_plain"] == pytest.approx(1.5) and "vs_original" not in rows[0]
    assert "vs_plain" not in rows[1]  # no ratio of an arm against itself


@pytest.mark.slow
def test_bench_train_epoch_runs_each_arm_through_umamba_train(tiny_workspace):
    proc = run_umamba(["bench", "train-epoch", "990", "--variant", "bot", "--device", "cpu", "--iterations", "2",
                       "--warmup", "1", "--seed", "3", "--workspace", str(tiny_workspace)], tiny_workspace)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {r["arm"]: r for r in map(json.loads, (ln for ln in proc.stdout.splitlines() if ln.startswith("{")))
            if r.get("kind") == "train_epoch"}
    assert list(rows) == ["umamba", "original", "plain"]
    plans = json.loads((tiny_workspace / "nnUNet_preprocessed" / "Dataset990_TinyPhantom" / "nnUNetPlans.json")
                       .read_text())
    batch = plans["configurations"]["3d_fullres"]["batch_size"]
    for arm, trainer, block in (("umamba", "nnUNetTrainerUMambaBot", "umamba.Mamba"),
                                ("plain", "nnUNetTrainer", "-")):
        row = rows[arm]
        assert (row["trainer"], row["block"], row["device"]) == (trainer, block, "cpu")
        assert row["iterations"] == 2 and row["iterations_per_s"] > 0 and row["peak_gib"] > 0
        assert row["global_batch"] == batch and row["patch_size"] == plans["configurations"]["3d_fullres"][
            "patch_size"]
        assert len(row["loss"]) == 3 and all(math.isfinite(v) for v in row["loss"])
    assert rows["umamba"]["vs_plain"] == pytest.approx(rows["umamba"]["iterations_per_s"]
                                                       / rows["plain"]["iterations_per_s"])
    # mamba-ssm's module needs CUDA (and the package): the arm says why it did not run
    assert "skipped" in rows["original"] and ("mamba_ssm" in rows["original"]["skipped"]
                                              or "CUDA" in rows["original"]["skipped"])
    assert "arm original skipped" in proc.stderr
    assert "umamba train, bot 3d_fullres on Dataset990_TinyPhantom" in proc.stdout  # the table's heading
    # a benchmark leaves no model behind in the workspace
    assert not list((tiny_workspace / "nnUNet_results").glob("*/*Arm__*"))


def test_bench_train_epoch_rejects_unknown_arms(tmp_path):
    proc = run_umamba(["bench", "--progress-json", "train-epoch", "synthetic", "--arms", "umamba,fast",
                       "--workspace", str(tmp_path)], tmp_path)
    assert proc.returncode == 2
    error = json.loads(proc.stdout.splitlines()[-1])
    assert error["event"] == "error" and "fast" in error["message"]
    assert not (tmp_path / "nnUNet_raw" / "Dataset980_BenchPhantom128").exists()  # nothing written first


def test_bench_train_epoch_refuses_num_gpus_without_them(tmp_path):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has 2 GPUs: the argument would be valid")
    proc = run_umamba(["bench", "--progress-json", "train-epoch", "synthetic", "--num-gpus", "2", "--workspace",
                       str(tmp_path)], tmp_path)
    assert proc.returncode == 2
    error = json.loads(proc.stdout.splitlines()[-1])
    assert "--num-gpus 2 needs 2 CUDA GPUs" in error["message"] and error["hint"]
    assert not list((tmp_path / "nnUNet_raw").glob("*"))  # nothing written or planned first
