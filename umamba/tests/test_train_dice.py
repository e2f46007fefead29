"""The longer run: U-Mamba Bot learns the easy phantom and segments held-out cases with Dice >= 0.8."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import TINY_DATASET, run_umamba


def dice(a: np.ndarray, b: np.ndarray) -> float:
    # Dice = 2 |A n B| / (|A| + |B|)
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.slow
def test_bot_reaches_heldout_dice(tiny_workspace, tmp_path):
    # Bot in float32 (bot-noamp; on CPU both variants train in float32) so the fixture's Bot model stays as is.
    train = run_umamba(["train", "990", "3d_fullres", "all", "-tr", "bot-noamp", "--epochs", "2",
                        "--iterations-per-epoch", "10", "--val-iterations", "1", "--no-final-validation",
                        "--device", "cpu"], tiny_workspace)
    assert train.returncode == 0, train.stderr[-4000:]
    model = tiny_workspace / "nnUNet_results" / TINY_DATASET / "nnUNetTrainerUMambaBotNoAMP__nnUNetPlans__3d_fullres"
    raw = tiny_workspace / "nnUNet_raw" / TINY_DATASET
    out = tmp_path / "pred"
    predict = run_umamba(["predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(model),
                          "--disable-tta", "--device", "cpu"], tiny_workspace)
    assert predict.returncode == 0, predict.stderr[-4000:]
    scores = {}
    for reference in sorted((raw / "labelsTs").glob("*.nii.gz")):
        predicted = sitk.ReadImage(str(out / reference.name))
        truth = sitk.ReadImage(str(reference))
        assert predicted.GetSize() == truth.GetSize() and predicted.GetSpacing() == truth.GetSpacing()
        scores[reference.name] = dice(sitk.GetArrayFromImage(predicted) == 1, sitk.GetArrayFromImage(truth) == 1)
    assert len(scores) == 2 and min(scores.values()) >= 0.8, scores
