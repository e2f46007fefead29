"""The memory estimate against a measured CPU peak, and a training over the limit refused before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_umamba
from umamba.progress import parse_event

PROBE = Path(__file__).with_name("memory_probe.py")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc (Linux)")
@pytest.mark.parametrize("variant", ["bot", "enc"])
def test_estimate_is_within_30_percent_of_the_measured_peak(variant):
    """One forward+backward in a fresh process per patch size; the peak resident memory the step adds is compared
    with the step part of the estimate (network, batch 2, 3 classes, deep supervision)."""
    for patch in ("40x40x40", "56x56x56"):
        proc = subprocess.run([sys.executable, str(PROBE), variant, patch], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.splitlines()[-1])
        ratio = result["estimate_step"] / result["peak"]
        assert 0.7 <= ratio <= 1.3, (variant, patch, result)


def test_training_over_the_limit_is_refused_with_the_numbers(tiny_workspace):
    results = tiny_workspace / "nnUNet_results"
    before = sorted(p.relative_to(results) for p in results.rglob("*")) if results.exists() else []
    for extra, env in ((["--memory-limit-gb", "0.5"], {}), ([], {"UMAMBA_MEMORY_LIMIT_GB": "0.5"})):
        proc = run_umamba(["train", "990", "3d_fullres", "all", "-tr", "enc", "--device", "cpu", "--progress-json",
                           *extra], tiny_workspace, timeout=300, **env)
        assert proc.returncode == 2, proc.stderr[-3000:]
        events = [parse_event(line) for line in proc.stdout.splitlines() if line.strip()]
        error = events[-1]
        assert error["event"] == "error" and "nothing was started" in error["message"], error
        memory = error["memory"]
        assert memory["limit_gb"] == 0.5 and memory["estimate_gb"] > 0.5 and memory["patch_size"]
        assert f"{memory['estimate_gb']:.1f} GB" in error["message"] and "0.5 GB" in error["message"]
        assert "patch" in error["hint"] and "2d" in error["hint"]
        assert not any(e["event"] == "stage" and e["stage"] == "train" for e in events)
    after = sorted(p.relative_to(results) for p in results.rglob("*")) if results.exists() else []
    assert after == before  # no model folder, no settings file: nothing ran


def test_prediction_over_the_limit_is_refused_before_the_model_loads(trained_tiny_model, tmp_path, capsys):
    from intake_cases import case_arrays, write_image
    from umamba.cli import main

    image = write_image(tmp_path / "c_0000.nii.gz", case_arrays(0)[0])
    rc = main(["predict", "-i", str(image), "-o", str(tmp_path / "out"), "-m", str(trained_tiny_model),
               "--device", "cpu", "--memory-limit-gb", "0.2"])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    assert "prediction of U-Mamba Bot" in captured.err and "the limit is 0.2 GB" in captured.err, captured.err
    assert "loading model" not in captured.out + captured.err and not (tmp_path / "out").exists()
