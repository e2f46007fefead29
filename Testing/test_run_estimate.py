"""The CPU time estimate the panel shows before a run (UMambaSegmentationLib/RunEstimate.py), and the
"Faster (CPU)" option on the command line."""

import json

import pytest

from test_slicer_helpers import writeModelFolder

from UMambaSegmentationLib import RunEstimate
from UMambaSegmentationLib.ModelInfo import ModelInfo
from UMambaSegmentationLib.SegmentationLogic import SegmentationJob, SegmentationOptions

LABELS = {"background": 0, "liver": 1}


@pytest.mark.parametrize("size,patch,step", [(128, 128, 0.5), (300, 128, 0.5), (256, 128, 0.5), (256, 128, 0.75),
                                             (257, 128, 1.0), (90, 128, 0.5), (1000, 96, 0.3)])
def test_windows_per_axis_are_nnunets(size, patch, step):
    helpers = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    steps = helpers.compute_steps_for_sliding_window((max(size, patch),), (patch,), step)
    assert RunEstimate.windowsPerAxis(size, patch, step) == len(steps[0])


def test_estimate_scales_with_windows_mirrors_and_cores():
    args = ([300, 512, 512], [1.5, 0.8, 0.8], [1.5, 1.5, 1.5], [128, 128, 128])
    assert RunEstimate.countWindows(*args, 0.5) == 4 * 4 * 4            # 300 and 273 voxels at 1.5 mm
    default = RunEstimate.estimateSeconds(*args, cores=2)
    no_tta = RunEstimate.estimateSeconds(*args, mirroring=False, cores=2)
    assert default == pytest.approx(8 * no_tta)
    assert RunEstimate.estimateSeconds(*args, mirroring=False, cores=8) == pytest.approx(no_tta / 4)
    per_window = RunEstimate.SECONDS_PER_WINDOW_2_CORES["bot"]
    assert no_tta == pytest.approx(64 * per_window)
    assert RunEstimate.estimateSeconds(*args, variant="enc", cores=2) > default
    assert RunEstimate.formatDuration(42) == "42 s" and RunEstimate.formatDuration(600) == "10 min"


def _model(tmp_path, patch=(128, 128, 128), spacing=(1.5, 1.5, 1.5), configuration="3d_fullres"):
    folder = writeModelFolder(tmp_path, LABELS, patchSize=patch, configuration=configuration)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"][configuration]["spacing"] = list(spacing)
    (folder / "plans.json").write_text(json.dumps(plans))
    return ModelInfo.fromFolder(folder)


def test_estimate_text_offers_the_faster_preset_for_long_runs(tmp_path):
    model = _model(tmp_path)
    text = RunEstimate.estimateText(model, (300, 512, 512), (1.5, 0.8, 0.8), cores=2)
    assert text.startswith("On this CPU: about") and "with 'Faster (CPU)'" in text
    fast = RunEstimate.estimateText(model, (300, 512, 512), (1.5, 0.8, 0.8), fast=True, cores=2)
    assert "Faster" not in fast
    assert RunEstimate.estimateText(None, (30, 40, 50), (1, 1, 1)) == ""
    small = RunEstimate.estimateText(model, (100, 100, 100), (1.5, 1.5, 1.5), mirroring=False, cores=2)
    assert "Faster" not in small and f"{RunEstimate.SECONDS_PER_WINDOW_2_CORES['bot']:.0f} s" in small


def test_no_estimate_for_a_plan_without_spacing_or_a_2d_model(tmp_path):
    folder = writeModelFolder(tmp_path, LABELS)                    # the helper's plans.json has no spacing
    assert RunEstimate.estimateText(ModelInfo.fromFolder(folder), (30, 40, 50), (1, 1, 1)) == ""
    flat = _model(tmp_path / "2d", patch=(256, 256), spacing=(0.8, 0.8), configuration="2d")
    assert RunEstimate.estimateText(flat, (30, 40, 50), (1, 1, 1)) == ""


def test_faster_option_passes_fast_and_keeps_a_chosen_step(tmp_path):
    model = ModelInfo.fromFolder(writeModelFolder(tmp_path, LABELS))
    fast = SegmentationJob(None, model, [], SegmentationOptions(fast=True), "/py", None).command(["a"], "o")
    assert "--fast" in fast and "--step-size" not in fast          # --fast's own step size
    chosen = SegmentationJob(None, model, [], SegmentationOptions(fast=True, stepSize=0.6), "/py", None)
    command = chosen.command(["a"], "o")
    assert "--fast" in command and command[command.index("--step-size") + 1] == "0.6"
    plain = SegmentationJob(None, model, [], SegmentationOptions(), "/py", None).command(["a"], "o")
    assert "--fast" not in plain and plain[plain.index("--step-size") + 1] == "0.5"
