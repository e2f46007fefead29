"""Peak memory of one training forward+backward on CPU, in a fresh process: `python memory_probe.py VARIANT PATCH`.

Prints JSON: the peak resident memory added by the step (Linux VmHWM, reset through /proc/self/clear_refs after
the network, the batch and the target exist) and the estimate of umamba.memory for the same network.
"""

from __future__ import annotations

import json
import sys

PLAN = {"configurations": {"3d_fullres": {
    "UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 8, "unet_max_num_features": 64,
    "conv_kernel_sizes": [[3, 3, 3]] * 4, "pool_op_kernel_sizes": [[1, 1, 1]] + [[2, 2, 2]] * 3,
    "n_conv_per_stage_encoder": [2] * 4, "n_conv_per_stage_decoder": [2] * 3, "batch_size": 2}}}
CLASSES = 3


def _kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def measure(variant: str, patch: list[int]) -> dict:
    import gc

    import torch
    import torch.nn.functional as F

    from umamba.memory import FIXED_OVERHEAD, estimate_training
    from umamba.nets import build_network
    from umamba.nets.plan_spec import spec_from_plans

    torch.set_num_threads(1)
    plans = {"configurations": {"3d_fullres": dict(PLAN["configurations"]["3d_fullres"], patch_size=patch)}}
    batch = plans["configurations"]["3d_fullres"]["batch_size"]
    net = build_network(variant, plans, "3d_fullres", 1, CLASSES, deep_supervision=True)
    x = torch.randn(batch, 1, *patch)
    target = torch.randint(0, CLASSES, (batch, *patch))
    net.train()
    # Warm-up step at a small patch: lazy initialisations (compiled CPU kernels, allocator
    # and thread-pool caches) happen once per process and are not the step's memory.
    small = [2 ** len(PLAN["configurations"]["3d_fullres"]["pool_op_kernel_sizes"])] * 3  # 2 voxels at the bottom
    warm = net(torch.randn(batch, 1, *small))
    sum(o.float().mean() for o in warm).backward()
    net.zero_grad(set_to_none=True)
    del warm
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _kb("VmRSS")
    outs = net(x)
    loss = sum(F.cross_entropy(o, F.interpolate(target[:, None].float(), size=o.shape[2:])[:, 0].long())
               for o in outs)
    loss.backward()
    peak = _kb("VmHWM") - base
    spec = spec_from_plans(plans, "3d_fullres")
    est = estimate_training(spec, variant, patch, batch, 1, CLASSES, "cpu")
    return {"variant": variant, "patch": patch, "peak": peak, "estimate_step": est.bytes - FIXED_OVERHEAD}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], [int(p) for p in sys.argv[2].split("x")])))
