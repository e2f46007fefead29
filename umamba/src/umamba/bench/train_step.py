"""`umamba bench train-step`: one training iteration of U-Mamba Bot and Enc 3D (patch 128³, batch 2), as
nnU-Net runs it: fp16 autocast (the Mamba layers stay float32), GradScaler, SGD with Nesterov momentum,
gradient clipping at 12, deep-supervision outputs, each kernel arm side by side (bench/roofline.py: the
"mamba-ssm" arm runs mamba-ssm's own Mamba module when that package imports); time per step (mean of
--steps after --warmup) and peak GPU memory. The loss is cross-entropy over every deep-supervision output
with nnU-Net's weights (1/2^k, normalised, the lowest resolution dropped) against a nearest-downsampled
random label map: a stand-in for Dice+CE that costs the same for every backend.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from umamba.bench import roofline

PLAN_3D = {  # the plan of gpu-baseline.md: 6 stages, features 32..320, kernels 3³, strides [1,2,2,2,2,2]
    "configurations": {
        "3d_fullres": {
            "patch_size": [128, 128, 128],
            "UNet_class_name": "PlainConvUNet",
            "UNet_base_num_features": 32,
            "unet_max_num_features": 320,
            "conv_kernel_sizes": [[3, 3, 3]] * 6,
            "pool_op_kernel_sizes": [[1, 1, 1]] + [[2, 2, 2]] * 5,
            "num_pool_per_axis": [5, 5, 5],
            "n_conv_per_stage_encoder": [2] * 6,
            "n_conv_per_stage_decoder": [2] * 5,
        }
    }
}
NUM_CLASSES = 14


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", default="bot,enc")
    parser.add_argument("--backends", default="", help="comma-separated kernel arms: triton, mamba-ssm, "
                        "auto, portable (default: the GPU arms that are available)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)


def build(variant, patch):
    from umamba.nets import build_network
    plans = {"configurations": {"3d_fullres": dict(PLAN_3D["configurations"]["3d_fullres"],
                                                   patch_size=[patch] * 3)}}
    return build_network(variant, plans, "3d_fullres", 1, NUM_CLASSES, deep_supervision=True).cuda()


def ds_weights(k):
    w = torch.tensor([1 / 2**i for i in range(k)])
    w[-1] = 0  # nnU-Net drops the lowest-resolution output
    return (w / w.sum()).tolist()


def bench_train_step(variant, backend, batch, patch, warmup, steps):
    torch.manual_seed(0)
    net = build(variant, patch)
    block = roofline.use_arm_blocks(net, backend)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(batch, 1, patch, patch, patch, device="cuda")
    target = torch.randint(0, NUM_CLASSES, (batch, 1, patch, patch, patch), device="cuda").float()
    targets, weights = None, None

    def step():
        nonlocal targets, weights
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            outs = net(x)
            if targets is None:
                targets = [F.interpolate(target, size=o.shape[2:], mode="nearest")[:, 0].long() for o in outs]
                weights = ds_weights(len(outs))
            loss = sum(w * F.cross_entropy(o, t) for w, o, t in zip(weights, outs, targets) if w > 0)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(opt)
        scaler.update()

    with roofline.kernels(backend):
        for _ in range(warmup):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / steps * 1e3
    peak = torch.cuda.max_memory_allocated() / 2**30
    del net, opt
    return {"kind": "train_step", "variant": variant, "backend": backend, "block": block,
            "conv": roofline.arm_conv(backend),
            "batch": batch, "patch": patch,
            "step_ms": ms, "peak_gib": peak, "device": roofline.device_name()}


def run(args, reporter=None) -> int:
    backends = roofline.start_gpu_bench("train-step", args.backends)
    rows = []
    for variant in [v for v in args.variants.split(",") if v]:
        group = []
        for backend in backends:
            try:
                group.append(bench_train_step(variant, backend, args.batch, args.patch, args.warmup, args.steps))
            except Exception as exc:
                group.append({"kind": "train_step", "variant": variant, "backend": backend,
                              "error": repr(exc)[:300]})
            torch.cuda.empty_cache()
        ref = next((r for r in group if r["backend"] == "mamba-ssm" and "step_ms" in r), None)
        for r in group:
            if ref and "step_ms" in r:
                r["speedup_vs_mamba_ssm"] = ref["step_ms"] / r["step_ms"]
                r["peak_vs_mamba_ssm"] = r["peak_gib"] / ref["peak_gib"]
            roofline.emit(r)
        rows += group
    print(f"\n# training step, patch {args.patch}³, batch {args.batch}, device: {roofline.device_name()}")
    roofline.table(rows, ["variant", "backend", "block", "conv", "step_ms", "speedup_vs_mamba_ssm", "peak_gib",
                          "peak_vs_mamba_ssm"])
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="umamba bench train-step", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
