"""How much memory one training step (or one sliding-window prediction) needs, before any work starts.

A U-Net's working memory is dominated by the feature maps kept for the backward pass. For a plan's network
those are counted exactly: stage s holds f_s channels on V_s voxels (the patch divided by the strides so far),
once per convolution block in the encoder and decoder (and once more for the decoder's upsampled copy); a stage
with a Mamba layer on spatial tokens adds the layer's own tensors (its inner width is 2 f_s, its scan state 16
per channel). So
    step bytes = batch * 4 * (k_conv * Σ_s f_s V_s (n_enc_s + n_dec_s + 1) + k_mamba * Σ_mamba f_s V_s)
                 + 4 * 4 * parameters (weights, gradients, momentum, a copy in the optimizer step) + constant
plus a constant per step (autograd's buffers). k_conv and k_mamba (saved floats per counted float) were fitted on CPU with one forward+backward of
U-Mamba Bot and Enc (`umamba/tests/test_memory_estimate.py` measures them again against this estimate); on a GPU
they are estimates until measured there (fp16 autocast halves the conv activations; the Mamba layers stay fp32).
Prediction keeps no feature maps for a backward pass: about one stage's working set, plus the whole image's
class scores.

`check_memory` compares the estimate with the free memory of the device (and with UMAMBA_MEMORY_LIMIT_GB when
set): it refuses with the numbers and what to change when the estimate does not fit, and warns when it is close.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from umamba.errors import UserError

LIMIT_VARIABLE = "UMAMBA_MEMORY_LIMIT_GB"
GB = 1024 ** 3
WARN_FRACTION = 0.8            # warn when the estimate needs more than this share of what is free
# bytes per counted float (4 bytes) kept for backward, measured on CPU (float32): see the module docstring
FACTORS = {
    # "step" excludes one-time lazy initialisation (the compiled CPU kernels load on the first step), which
    # FIXED_OVERHEAD covers: the probe warms the network up before it measures
    "cpu": {"conv": 5.3, "mamba": 23.0, "step": 0.04 * GB, "measured": True},
    # fp16 autocast halves the conv activations; the step constant holds cuDNN's workspace: not yet measured
    "cuda": {"conv": 2.7, "mamba": 23.0, "step": 0.5 * GB, "measured": False},
}
FIXED_OVERHEAD = 1.0 * GB      # allowance: interpreter, torch, nnU-Net's data loader workers and their queues


@dataclass
class MemoryEstimate:
    what: str                  # "training" or "prediction"
    device: str
    bytes: int
    free_bytes: int | None
    limit_bytes: int | None
    measured: bool             # the device's factors were measured (False: an estimate for that device)
    details: dict

    @property
    def available(self) -> int | None:
        known = [b for b in (self.free_bytes, self.limit_bytes) if b is not None]
        return min(known) if known else None

    def fields(self) -> dict:
        """For the `error` / `log` event: the numbers, in GB."""
        gb = lambda b: None if b is None else round(b / GB, 2)  # noqa: E731
        return {"memory": {"what": self.what, "device": self.device, "estimate_gb": gb(self.bytes),
                           "free_gb": gb(self.free_bytes), "limit_gb": gb(self.limit_bytes),
                           "factors_measured": self.measured, **self.details}}


def counts(spec, variant: str, patch_size) -> tuple[float, float]:
    """(conv floats, Mamba floats) per batch element of one forward pass, for a NetworkSpec at `patch_size`."""
    from dataclasses import replace

    spec = replace(spec, patch_size=tuple(int(p) for p in patch_size))
    sizes = spec.feature_map_sizes()
    n = spec.n_stages
    conv = mamba = 0.0
    for s in range(n):
        fv = spec.features_per_stage[s] * math.prod(sizes[s])
        dec = spec.n_blocks_dec[n - 2 - s] + 1 if s < n - 1 else 0   # decoder index 0 = lowest resolution
        conv += fv * (spec.n_blocks_enc[s] + dec)
        spatial = math.prod(sizes[s]) > spec.features_per_stage[s]
        has_mamba = (s == n - 1) if variant == "bot" else (spec.dim == 3 or bool(s % 2) ^ bool(n % 2))
        if has_mamba and spatial:
            mamba += fv
    return conv, mamba


def parameter_count(spec, variant: str, num_input_channels: int, num_classes: int) -> int:
    """Roughly the conv weights (k^d * f_in * f_out per conv) plus the Mamba layers (about 12 f^2 each)."""
    total = 0
    f_prev = num_input_channels
    for s, f in enumerate(spec.features_per_stage):
        k = math.prod(spec.kernel_sizes[s])
        total += k * f * (f_prev + f * (2 * spec.n_blocks_enc[s] + 2 * (spec.n_blocks_dec[0] if s else 0)))
        f_prev = f
    mamba_stages = [spec.n_stages - 1] if variant == "bot" else range(spec.n_stages)
    total += sum(12 * spec.features_per_stage[s] ** 2 for s in mamba_stages)
    return total + num_classes * sum(spec.features_per_stage)


def estimate_training(spec, variant: str, patch_size, batch_size: int, num_input_channels: int, num_classes: int,
                      device: str) -> MemoryEstimate:
    kind = "cuda" if device == "cuda" else "cpu"
    k = FACTORS[kind]
    conv, mamba = counts(spec, variant, patch_size)
    voxels = math.prod(patch_size)
    activations = batch_size * 4 * (k["conv"] * conv + k["mamba"] * mamba)
    # input, target and the one-hot / softmax copies of the loss at full resolution
    data = batch_size * 4 * voxels * (num_input_channels + 1 + 3 * num_classes)
    params = 16 * parameter_count(spec, variant, num_input_channels, num_classes)
    step = int(activations + data + params + k["step"])
    details = {"patch_size": list(patch_size), "batch_size": batch_size, "channels": num_input_channels,
               "network": variant, "step_gb": round(step / GB, 2)}
    return MemoryEstimate("training", device, step + int(FIXED_OVERHEAD), None, None, k["measured"], details)


def estimate_prediction(spec, variant: str, patch_size, num_input_channels: int, num_classes: int,
                        image_voxels: int, device: str) -> MemoryEstimate:
    kind = "cuda" if device == "cuda" else "cpu"
    k = FACTORS[kind]
    conv, mamba = counts(spec, variant, patch_size)
    # no backward: the skip connections plus one block's working set, about a third of the training activations
    activations = 4 * (k["conv"] * conv + k["mamba"] * mamba) / 3
    scores = 4 * image_voxels * (num_classes + num_input_channels + 1)   # class scores, image, its Gaussian weights
    params = 4 * parameter_count(spec, variant, num_input_channels, num_classes)
    total = int(activations + scores + params + FIXED_OVERHEAD)
    details = {"patch_size": list(patch_size), "image_voxels": int(image_voxels), "channels": num_input_channels,
               "network": variant}
    return MemoryEstimate("prediction", device, total, None, None, k["measured"], details)


def free_memory(device: str) -> int | None:
    """Free memory of the device in bytes (CPU: MemAvailable, or the cgroup's limit if lower); None if unknown."""
    if device == "cuda":
        try:
            import torch

            return int(torch.cuda.mem_get_info()[0])
        except Exception:  # no CUDA, or a driver that does not answer: nothing to compare with
            return None
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            used_path = path.replace("memory.max", "memory.current").replace("limit_in_bytes", "usage_in_bytes")
            try:
                left = int(text) - int(open(used_path).read().strip())
            except (OSError, ValueError):
                left = int(text)
            free = left if free is None else min(free, left)
        break
    return free


def limit_from_environment() -> int | None:
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    try:
        value = float(text)
        if value <= 0:
            raise ValueError
    except ValueError:
        raise UserError(f"{LIMIT_VARIABLE}={text!r} is not a positive number of GB", f"e.g. {LIMIT_VARIABLE}=16") \
            from None
    return int(value * GB)


def check_memory(estimate: MemoryEstimate, reporter=None, limit_gb: float | None = None) -> MemoryEstimate:
    """Refuse (UserError with the numbers) when the estimate exceeds what is free or the limit; warn when close."""
    estimate.free_bytes = free_memory(estimate.device)
    estimate.limit_bytes = int(limit_gb * GB) if limit_gb else limit_from_environment()
    available = estimate.available
    if available is None:
        return estimate
    need, have = estimate.bytes / GB, available / GB
    source = "the limit" if estimate.limit_bytes is not None and available == estimate.limit_bytes else "free memory"
    d = estimate.details
    where = (f"{estimate.what} of U-Mamba {d['network'].capitalize()} with patch "
             f"{'x'.join(map(str, d['patch_size']))}" + (f", batch {d['batch_size']}" if "batch_size" in d else "")
             + f", {d['channels']} channel(s) on {estimate.device}")
    guess = "" if estimate.measured else " (factors for this device are an estimate, not yet measured)"
    if estimate.bytes > available:
        raise MemoryTooSmall(
            f"{where} needs about {need:.1f} GB{guess}, but {source} is {have:.1f} GB; nothing was started",
            "use a smaller patch (the configuration's patch_size in the plans file), a 2d configuration, a GPU, "
            f"or a GPU server (umamba serve); {LIMIT_VARIABLE} sets the limit", estimate)
    if reporter is not None:
        close = estimate.bytes > WARN_FRACTION * available
        reporter.emit("log", level="warning" if close else "info",
                      message=f"{where} needs about {need:.1f} GB{guess}; {source} is {have:.1f} GB"
                              + (": close to the limit" if close else ""), **estimate.fields())
    return estimate


class MemoryTooSmall(UserError):
    """Refused before the work starts; `fields` carries the estimate for the `error` event."""

    def __init__(self, message: str, hint: str, estimate: MemoryEstimate):
        super().__init__(message, hint)
        self.fields = estimate.fields()


def check_prediction_memory(model_dir, model, cases, device: str, reporter=None, limit_gb: float | None = None):
    """Estimate for the largest case (its voxels at the plans' spacing) on `device`, checked as for training."""
    import json
    from pathlib import Path

    import SimpleITK as sitk

    from umamba.model_store import trainer_variant
    from umamba.nets.plan_spec import resolve_configuration, spec_from_plans

    plans = json.loads((Path(model_dir) / "plans.json").read_text(encoding="utf-8"))
    config = resolve_configuration(plans, model.configuration)
    target = list(reversed(config.get("spacing") or [])) or None   # plans: numpy order; ITK: x, y, z
    voxels = 0
    for case in cases:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(case.files[0]))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue  # nnU-Net's natural-image readers (png, tif): no cheap header
        size, spacing = reader.GetSize(), reader.GetSpacing()
        scale = math.prod(s / t for s, t in zip(spacing, target)) if target and len(target) == len(size) else 1
        voxels = max(voxels, int(math.prod(size) * max(scale, 1e-3)))
    if not voxels:
        return None
    estimate = estimate_prediction(spec_from_plans(plans, model.configuration), trainer_variant(model.trainer) or "bot",
                                   config["patch_size"], len(cases[0].files),
                                   max(len(model.dataset_json.get("labels", {})), 2), voxels, device)
    return check_memory(estimate, reporter, limit_gb)
