"""`umamba bench train-step`: one training iteration of U-Mamba Bot and Enc 3D (patch 128³, batch 2), as
nnU-Net runs it: fp16 autocast (the Mamba layers stay float32), GradScaler, SGD with Nesterov momentum,
gradient clipping at 12, deep-supervision outputs, each kernel arm side by side (bench/arms.py: the
"mamba-ssm" arm runs mamba-ssm's own Mamba module when that package imports); time per step (mean of
--steps after --warmup) and peak GPU memory. The loss is cross-entropy over every deep-supervision output
with nnU-Net's weights (1/2^k, normalised, the lowest resolution dropped) against a nearest-downsampled
random label map: a stand-in for Dice+CE that costs the same for every backend.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from umamba.bench import arms, harness

PLAN_3D = {  # a 3D plan at patch 128³ (14 classes): 6 stages, features 32..320, kernels 3³, strides [1,2,2,2,2,2]
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
    block = arms.use_arm_blocks(net, backend)
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

    with arms.kernels(backend):
        ms = harness.time_ms(step, reps=steps, warmup=warmup, stat="mean", reset_peak=True)
    peak = torch.cuda.max_memory_allocated() / 2**30
    del net, opt
    return {"kind": "train_step", "variant": variant, "backend": backend, "block": block,
            "conv": arms.arm_conv(backend),
            "batch": batch, "patch": patch,
            "step_ms": ms, "peak_gib": peak, "device": harness.device_name()}


def run(args, reporter=None) -> int:
    harness.start_gpu("umamba bench train-step")
    rows = harness.side_by_side(
        [v for v in args.variants.split(",") if v], arms.chosen(args.backends),
        lambda variant, backend: bench_train_step(variant, backend, args.batch, args.patch, args.warmup, args.steps),
        label=lambda variant: {"kind": "train_step", "variant": variant},
        speedups={"speedup_vs_mamba_ssm": "step_ms"}, ratios={"peak_vs_mamba_ssm": "peak_gib"})
    harness.table(rows, ["variant", "backend", "block", "conv", "step_ms", "speedup_vs_mamba_ssm", "peak_gib",
                         "peak_vs_mamba_ssm"],
                  title=f"training step, patch {args.patch}³, batch {args.batch}, device: {harness.device_name()}")
    return 0
