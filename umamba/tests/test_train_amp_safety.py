"""AMP safety in a real training loop: non-finite losses skip their step, three of them switch the run to float32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import umamba_env

PROBE = Path(__file__).with_name("_train_amp_probe.py")


def test_nonfinite_losses_skip_steps_then_switch_to_float32(tiny_workspace, tmp_path):
    report_file = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(PROBE), str(tiny_workspace), str(report_file)],
                          env=umamba_env(tiny_workspace), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(report_file.read_text())
    steps = {s["iteration"]: s for s in report["steps"]}
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]

    # iteration 1: mixed precision really on, a normal step
    assert steps[1]["amp_before"] and steps[1]["output_dtype"] == "torch.bfloat16" and steps[1]["weights_changed"]
    # iterations 2-4: inf batches -> no optimizer step, weights stay finite; the third one switches to float32
    for i in (2, 3, 4):
        assert steps[i]["poisoned"] and not steps[i]["weights_changed"], steps[i]
        assert steps[i]["amp_before"]
    assert steps[2]["amp_after"] and steps[3]["amp_after"] and not steps[4]["amp_after"]
    # iterations 5-6: float32 training goes on
    for i in (5, 6):
        assert not steps[i]["amp_before"] and steps[i]["output_dtype"] == "torch.float32"
        assert steps[i]["weights_changed"]
    assert all(s["weights_finite"] for s in report["steps"])
    assert report["skipped_steps"] == 3 and report["grad_scaler"] == "None"
    assert report["train_loss"] is not None and report["train_loss"] == report["train_loss"]  # finite, not NaN

    warnings = [e["message"] for e in report["events"] if e["event"] == "log" and e["level"] == "warning"]
    assert sum("optimizer step skipped" in w for w in warnings) == 2, warnings
    assert sum("float32" in w and "rest of this run" in w for w in warnings) == 1, warnings
    epoch_end = [e for e in report["events"] if e["event"] == "epoch_end"]
    assert len(epoch_end) == 1 and epoch_end[0]["train_loss"] is not None

    # NoAMP: an autocast region around the network (as nnU-Net's validation and predictor open) is neutralised
    assert report["noamp_dtypes"] == ["torch.float32"]
    assert "torch.bfloat16" in report["unguarded_dtypes"]
