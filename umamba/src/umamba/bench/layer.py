"""`umamba bench layer`: one Mamba layer (float32) forward+backward at U-Mamba's shapes, each kernel arm side by
side in one process on one device: umamba.mamba.Mamba, or for the "mamba-ssm" arm mamba-ssm's own Mamba module
with the same weights when that package imports (bench/arms.py).

Shapes: the U-Mamba Enc 3D layers (b=2, patch 128³: d_model 32..320, l 2,097,152..320) and Bot's bottleneck.
Prints one JSON object per line (device named in each), then a table.
"""

from __future__ import annotations

import argparse

import torch

from umamba.bench import arms, harness
from umamba.bench.scan import SHAPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default="", help="comma-separated shape names (default: all), e.g. enc3d-s0")
    parser.add_argument("--backends", default="", help="comma-separated kernel arms: triton, mamba-ssm, "
                        "auto, portable (default: the GPU arms that are available)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)


def bench_layer(name, d_model, l, b, backend, reps):
    from umamba.mamba import Mamba
    torch.manual_seed(0)
    holder = torch.nn.Sequential(Mamba(d_model=d_model).cuda())
    block = arms.use_arm_blocks(holder, backend)
    layer = holder[0]
    x = torch.randn(b, l, d_model, device="cuda", requires_grad=True)
    gy = torch.randn(b, l, d_model, device="cuda")

    def step():
        y = layer(x)
        y.backward(gy)

    with arms.kernels(backend):
        fwd = harness.time_ms(lambda: layer(x).detach(), reps=reps)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        both = harness.time_ms(step, reps=reps)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return {"kind": "layer", "shape": name, "backend": backend, "conv": arms.arm_conv(backend),
            "block": block, "b": b, "d_model": d_model, "l": l, "fwd_ms": fwd, "fwd_bwd_ms": both,
            "peak_extra_mib": peak, "device": harness.device_name()}


def run(args, reporter=None) -> int:
    harness.start_gpu("umamba bench layer")
    wanted = set(filter(None, args.shapes.split(",")))
    rows = harness.side_by_side(
        [s for s in SHAPES if not wanted or s[0] in wanted], arms.chosen(args.backends),
        lambda s, backend: bench_layer(*s, args.batch, backend, args.reps),
        label=lambda s: {"kind": "layer", "shape": s[0]}, speedups={"speedup_fwd_bwd_vs_mamba_ssm": "fwd_bwd_ms"})
    harness.table(rows, ["shape", "backend", "block", "conv", "fwd_ms", "fwd_bwd_ms", "speedup_fwd_bwd_vs_mamba_ssm",
                         "peak_extra_mib"], title=f"Mamba layer fwd+bwd, float32, device: {harness.device_name()}")
    return 0
