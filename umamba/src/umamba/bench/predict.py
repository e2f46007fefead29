"""`umamba bench predict`: sliding-window inference of a 256×256×256 volume with U-Mamba Bot and Enc 3D
(patch 128³, step 0.5 -> 27 windows, Gaussian weighting, fp16 autocast, one window per forward as nnU-Net
does, no mirroring), each scan backend side by side: total time and peak GPU memory.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from umamba.bench import arms, harness
from umamba.bench.train_step import NUM_CLASSES, build


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", default="bot,enc")
    parser.add_argument("--backends", default="", help="comma-separated kernel arms: triton, mamba-ssm, "
                        "auto, portable (default: the GPU arms that are available)")
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic volume")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes after one warm-up pass")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: plain nnU-Net / Bot / Enc arms per window and per volume (bench/predict_cpu.py)")
    from umamba.bench import predict_cpu
    predict_cpu.add_arguments(parser)


def gaussian(patch, sigma_scale=1 / 8):
    ax = torch.arange(patch, dtype=torch.float32, device="cuda") - (patch - 1) / 2
    g1 = torch.exp(-0.5 * (ax / (patch * sigma_scale)) ** 2)
    g = g1[:, None, None] * g1[None, :, None] * g1[None, None, :]
    g = g / g.max()
    return g.clamp_min(g[g > 0].min())


def sliding_window(net, volume, patch, step=0.5):
    size = volume.shape[-1]
    n = max(1, -(-(size - patch) // int(patch * step)) + 1)
    starts = [round(i * (size - patch) / max(1, n - 1)) for i in range(n)]
    weight = gaussian(patch)
    logits = torch.zeros((NUM_CLASSES, size, size, size), device="cuda", dtype=torch.float16)
    norm = torch.zeros((size, size, size), device="cuda", dtype=torch.float16)
    for z, y, x in itertools.product(starts, starts, starts):
        window = volume[:, :, z:z + patch, y:y + patch, x:x + patch]
        with torch.autocast("cuda", dtype=torch.float16):
            out = net(window)
        out = out[0] if isinstance(out, (list, tuple)) else out
        logits[:, z:z + patch, y:y + patch, x:x + patch] += (out[0] * weight).half()
        norm[z:z + patch, y:y + patch, x:x + patch] += weight.half()
    return (logits / norm).argmax(0)


def bench_predict(variant, backend, size, patch, repeats):
    torch.manual_seed(0)
    net = build(variant, patch).eval()
    block = arms.use_arm_blocks(net, backend)
    net.decoder.deep_supervision = False
    volume = torch.randn(1, 1, size, size, size, device="cuda")
    with arms.kernels(backend), torch.no_grad():
        s = harness.time_ms(lambda: sliding_window(net, volume, patch), reps=repeats, warmup=1, stat="mean",
                            reset_peak=True) / 1e3
    return {"kind": "predict", "variant": variant, "backend": backend, "block": block,
            "conv": arms.arm_conv(backend),
            "size": size, "patch": patch,
            "seconds": s, "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "device": harness.device_name()}


def run(args, reporter=None) -> int:
    if args.device == "cpu":
        from umamba.bench.predict_cpu import run_cpu
        return run_cpu(args, reporter)
    harness.start_gpu("umamba bench predict")
    rows = harness.side_by_side(
        [v for v in args.variants.split(",") if v], arms.chosen(args.backends),
        lambda variant, backend: bench_predict(variant, backend, args.size, args.patch, args.repeats),
        label=lambda variant: {"kind": "predict", "variant": variant}, speedups={"speedup_vs_mamba_ssm": "seconds"})
    harness.table(rows, ["variant", "backend", "block", "conv", "seconds", "speedup_vs_mamba_ssm", "peak_gib"],
                  title=f"sliding-window prediction {args.size}³, patch {args.patch}³, device: "
                        f"{harness.device_name()}")
    return 0
