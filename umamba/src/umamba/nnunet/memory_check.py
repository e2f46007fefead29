"""Before a prediction: will this volume fit in memory? An estimate from the image headers and the plan (no
torch, no voxels read), compared with the memory available now.

What `umamba predict` holds for one case (nnU-Net's predictor with umamba's per-class export, lean_export.py):
the preprocessed image (float32 per channel), the summed logits and weights (float16, at the plan's spacing), one
window's network activations (measured: BENCHMARKS.md, peak RSS of one 128³ window) and, while exporting, the
running maximum, one resampled class (float32) and the labels at the image's own size.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from umamba.errors import UserError

GIB = 1 << 30
BASE_BYTES = 0.9 * GIB                  # torch, nnU-Net, SimpleITK loaded; the image as read (fitted: BENCHMARKS.md)
# one 128³ window's activations on the CPU (peak RSS of one forward minus the base, BENCHMARKS.md, float32)
WINDOW_BYTES_128 = {"bot": 2.1 * GIB, "enc": 3.8 * GIB}


def predict_memory_bytes(image_size, image_spacing, plan_spacing, patch_size, n_classes: int, n_channels: int = 1,
                         variant: str = "bot") -> dict:
    """The estimate's parts in bytes, and their `total`. Sizes and spacings in one axis order."""
    scale = [s * sp / ps for s, sp, ps in zip(image_size, image_spacing, plan_spacing)]
    pre = math.prod(max(p, q) for p, q in zip((math.ceil(v) for v in scale), patch_size))   # padded to a patch
    orig = math.prod(image_size)
    window = WINDOW_BYTES_128.get(variant, WINDOW_BYTES_128["enc"]) * math.prod(patch_size) / 128 ** 3
    parts = {
        "base": BASE_BYTES,
        "image": n_channels * pre * 4,
        "logits": (n_classes + 1) * pre * 2,          # float16 sums and the weight map
        "network": window,
        "export": orig * (4 + 4 + 1 + 1),             # maximum, one class, labels, the written map
    }
    # the network and the export do not run at the same time
    parts["total"] = parts["base"] + parts["image"] + parts["logits"] + max(parts["network"], parts["export"])
    return parts


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else total physical memory, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_predict_memory(folder, cases, reporter=None, available: int | None = None) -> None:
    """Raise a UserError before the first case when the largest case's estimate exceeds the memory available;
    the estimate goes to the reporter's log either way."""
    import SimpleITK as sitk

    from umamba.nnunet.predict_inputs import image_ending

    try:
        plans = json.loads((Path(folder.path) / "plans.json").read_text(encoding="utf-8"))
        conf = plans["configurations"][folder.configuration]
        if "inherits_from" in conf:                  # nnU-Net's rule: the child's keys win, shallowly
            conf = {**plans["configurations"][conf["inherits_from"]], **conf}
        plan_spacing, patch = conf["spacing"], conf["patch_size"]
        transpose = plans.get("transpose_forward", list(range(len(plan_spacing))))
    except (OSError, KeyError, TypeError, ValueError):
        return                                      # an unusual plan: the predictor itself will say what is wrong
    variant = "enc" if "enc" in str(folder.trainer).lower() else "bot"
    n_classes = len((folder.dataset_json or {}).get("labels", {})) or 2
    worst = None
    for case in cases:
        f = case.files[0]
        if image_ending(f) in (".png", ".bmp", ".tif", ".tiff"):
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        reader.ReadImageInformation()
        size_zyx, spacing_zyx = reader.GetSize()[::-1], reader.GetSpacing()[::-1]
        if len(size_zyx) != len(plan_spacing):       # a 2d configuration: one slice at a time
            continue
        size = [size_zyx[i] for i in transpose]
        spacing = [spacing_zyx[i] for i in transpose]
        est = predict_memory_bytes(size, spacing, plan_spacing, patch, n_classes, len(case.files), variant)
        if worst is None or est["total"] > worst[1]["total"]:
            worst = (case, est)
    if worst is None:
        return
    case, est = worst
    available = available_bytes() if available is None else available
    text = (f"case {case.case_id}: estimated peak memory {est['total'] / GIB:.1f} GB (logits "
            f"{est['logits'] / GIB:.1f} GB, network {est['network'] / GIB:.1f} GB, export {est['export'] / GIB:.1f} GB)")
    if reporter is not None:
        reporter.log(text + (f"; {available / GIB:.1f} GB available" if available else ""))
    if available is not None and est["total"] > available:
        raise UserError(f"{text}, but only {available / GIB:.1f} GB of memory is available now",
                        "close other programs, predict on a machine with more memory (or a GPU server), or crop "
                        "the image to the region of interest first")
