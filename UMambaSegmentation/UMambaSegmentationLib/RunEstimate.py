"""How long a CPU run will take, said before it starts: sliding windows × mirrors × the measured time of one
window on the CPU (BENCHMARKS.md, `umamba bench predict --device cpu`), scaled to this machine's core count.

Pure Python (no Qt, no torch): the panel shows `estimateText(...)` next to the Segment button.
"""

import json
import math
import os

# Seconds per 128³ window of nnU-Net's CT plan (6 stages, 32-320 features), float32 (umamba predict's default on
# the CPU), measured on 2 otherwise idle Xeon cores (BENCHMARKS.md, "CPU inference"); other patch sizes scale
# with their voxel count.
SECONDS_PER_WINDOW_2_CORES = {"bot": 11.0, "enc": 15.0}
REFERENCE_CORES = 2
FAST_STEP_SIZE = 0.75   # `umamba predict --fast` (no mirroring, this step)


def windowsPerAxis(size, patch, stepSize):
    """nnU-Net's compute_steps_for_sliding_window: the windows along one axis."""
    if size <= patch:
        return 1
    return math.ceil((size - patch) / (patch * stepSize)) + 1


def countWindows(shape, spacing, planSpacing, patchSize, stepSize):
    """Windows over the volume resampled to the plan's spacing (shape, spacing and plan in the same axis order)."""
    resampled = [round(s * sp / ps) for s, sp, ps in zip(shape, spacing, planSpacing)]
    return math.prod(windowsPerAxis(s, p, stepSize) for s, p in zip(resampled, patchSize))


def estimateSeconds(shape, spacing, planSpacing, patchSize, stepSize=0.5, mirroring=True, variant="bot",
                    cores=None):
    """Estimated seconds of a CPU prediction (the network only: preprocessing and export add seconds)."""
    cores = max(1, cores or os.cpu_count() or 1)
    perWindow = SECONDS_PER_WINDOW_2_CORES.get(variant, SECONDS_PER_WINDOW_2_CORES["enc"])
    perWindow *= math.prod(patchSize) / 128 ** 3 * REFERENCE_CORES / cores
    mirrors = 2 ** len(patchSize) if mirroring else 1
    return countWindows(shape, spacing, planSpacing, patchSize, stepSize) * mirrors * perWindow


def formatDuration(seconds):
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def planGeometry(modelFolder, configuration):
    """(spacing, patch size) of the model's configuration in plans.json, or None when unreadable."""
    try:
        with open(os.path.join(modelFolder, "plans.json"), encoding="utf-8") as f:
            plans = json.load(f)
        conf = plans["configurations"][configuration]
        if "inherits_from" in conf:
            conf = {**plans["configurations"][conf["inherits_from"]], **conf}
        return list(conf["spacing"]), list(conf["patch_size"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def estimateText(model, shapeZyx, spacingZyx, stepSize=0.5, mirroring=True, fast=False, cores=None):
    """One line for the panel ("" when the model's plan cannot be read or the model is 2D), with the --fast
    figure when the default run would take more than a few minutes."""
    geometry = planGeometry(model.folder, model.configuration) if model is not None else None
    if geometry is None or len(geometry[1]) != len(shapeZyx):
        return ""
    planSpacing, patch = geometry
    variant = "enc" if "enc" in str(model.trainer).lower() else "bot"
    if fast:
        stepSize, mirroring = (FAST_STEP_SIZE if stepSize == 0.5 else stepSize), False
    seconds = estimateSeconds(shapeZyx, spacingZyx, planSpacing, patch, stepSize, mirroring, variant, cores)
    text = f"On this CPU: about {formatDuration(seconds)}"
    if not fast and seconds > 180:
        quick = estimateSeconds(shapeZyx, spacingZyx, planSpacing, patch, FAST_STEP_SIZE, False, variant, cores)
        text += f" (about {formatDuration(quick)} with 'Faster (CPU)')"
    return text + "; a GPU is much faster."
