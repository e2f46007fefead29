"""`umamba demo --quick`: the whole demo pipeline on a SYNTHETIC phantom, through the real command.

The full demo (more iterations, a usable Dice) is run by hand and timed in BENCHMARKS.md; the pipeline is the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk


@pytest.mark.slow
def test_demo_quick_writes_label_png_and_dice(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env.pop(var, None)
    run = subprocess.run([sys.executable, "-m", "umamba", "demo", "--quick", "--output", str(out), "--device", "cpu",
                          "--progress-json"], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert "SYNTHETIC" in events[0]["message"]
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    for stage in ("data", "fingerprint", "preprocess", "train", "predict"):
        assert stage in stages
    assert any(e["event"] == "epoch_end" for e in events)
    assert any(e["event"] == "progress" and e["what"] == "tile" for e in events)
    done = events[-1]
    assert done["event"] == "done" and done["synthetic"] is True
    label_file, png = out / "prediction.nii.gz", out / "overlay.png"
    assert done["outputs"] == [str(label_file), str(png)]
    assert 0.0 <= done["dice"] <= 1.0

    # the label is on the held-out image's grid, and the Dice reported is the Dice of that file
    raw = out / "workspace" / "nnUNet_raw" / "Dataset987_DemoPhantom"
    [image_file] = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))
    image, label = sitk.ReadImage(str(image_file)), sitk.ReadImage(str(label_file))
    assert label.GetSize() == image.GetSize() and np.allclose(label.GetSpacing(), image.GetSpacing())
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTs" / image_file.name.replace("_0000", ""))))
    pred = sitk.GetArrayFromImage(label)
    dice = 2 * np.logical_and(pred == 1, truth == 1).sum() / ((pred == 1).sum() + (truth == 1).sum())
    assert done["dice"] == pytest.approx(dice, abs=1e-4)

    import matplotlib.image as mpimg

    picture = mpimg.imread(png)
    assert picture.ndim == 3 and picture.shape[0] > 200 and picture.shape[1] > 400
    assert picture[..., :3].std() > 0.05  # not a blank canvas
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["dice"] == done["dice"] and summary["synthetic"] is True
