"""The benchmarks' shared harness: the side-by-side loop, the timer, and the GPU benchmarks refusing cleanly
without a GPU. (The figures themselves are measured by the benchmarks and written to BENCHMARKS.md.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from umamba.bench import harness

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_side_by_side_runs_every_arm_and_compares_with_mamba_ssm(capsys):
    def measure(item, arm):
        if arm == "broken":
            raise RuntimeError("CUDA out of memory\nmore lines")
        return {"kind": "k", "item": item, "backend": arm, "ms": {"triton": 2.0, "mamba-ssm": 6.0}[arm],
                "gib": {"triton": 1.0, "mamba-ssm": 4.0}[arm]}

    rows = harness.side_by_side(["a", "b"], ["triton", "broken", "mamba-ssm"], measure,
                                label=lambda item: {"kind": "k", "item": item},
                                speedups={"speedup": "ms"}, ratios={"peak_ratio": "gib"})
    assert [(r["item"], r["backend"]) for r in rows] == [(i, a) for i in "ab" for a in ("triton", "broken",
                                                                                        "mamba-ssm")]
    triton, broken, ref = rows[:3]
    assert triton["speedup"] == 3.0 and triton["peak_ratio"] == 0.25 and ref["speedup"] == 1.0
    assert broken == {"kind": "k", "item": "a", "backend": "broken", "error": "RuntimeError: CUDA out of memory"}
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows


def test_time_ms_warms_up_then_reports_the_chosen_statistic():
    calls = []
    ms = harness.time_ms(lambda: calls.append("timed"), "cpu", reps=5, warmup=2,
                         warmup_fn=lambda: calls.append("warm"), stat="min")
    assert calls == ["warm"] * 2 + ["timed"] * 5 and 0 <= ms < 1000
    with pytest.raises(KeyError):
        harness.time_ms(lambda: None, "cpu", reps=1, warmup=0, stat="best")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run")
def test_gpu_benchmarks_refuse_cleanly_without_a_gpu():
    proc = subprocess.run([sys.executable, "-m", "umamba", "bench", "layer"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stdout + proc.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_developer_benchmarks_import_and_parse_their_options(script):
    """The tools in umamba/benchmarks/ have the benchmark module shape and import against this package."""
    spec = importlib.util.spec_from_file_location(f"dev_benchmark_{Path(script).stem}", BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import argparse

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    assert callable(module.run) and parser.parse_args([]) is not None
