"""Causal depthwise conv1d + SiLU of the Mamba block, each kernel side by side: torch's depthwise conv1d,
causal-conv1d's CUDA kernel (when installed) and umamba's Triton kernel, forward and forward+backward.

    python umamba/benchmarks/conv.py [--shapes enc3d-s0,enc3d-s1] [--configs "2,1024,4;4,1024,4"]

float32, b = 2, E = 2·d_model channels, at the shapes of umamba/bench/scan.py, in the block's layout (the x half of
in_proj's (B, 2E, L) output); median of 10 CUDA-event timings after 3 warm-ups. `--configs` times the Triton
kernel at several launch shapes (channels per program, steps per program, warps). "err" is the largest
relative difference of output and gradients from torch's. One JSON line per row, then a table.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from umamba.bench import harness
from umamba.bench.scan import SHAPES


def torch_conv(x, w, b):
    return F.silu(F.conv1d(x, w, b, padding=w.shape[-1] - 1, groups=x.shape[1])[..., :x.shape[-1]])


def kernels(configs):
    from umamba.mamba import conv_triton
    from umamba.mamba.conv import causal_conv1d_kernel

    arms = [("torch", None, torch_conv)]
    cc = causal_conv1d_kernel()
    if cc is not None:
        arms.append(("causal-conv1d", None, lambda x, w, b: cc(x, w.squeeze(1), b, activation="silu")))
    for cfg in configs or [(conv_triton.BE, conv_triton.BL, conv_triton.WARPS)]:
        arms.append((f"triton BE={cfg[0]} BL={cfg[1]} warps={cfg[2]}", cfg, conv_triton.causal_conv1d_silu_triton))
    return arms


def bench_shape(name, e, l, configs, b=2, reps=10):
    from umamba.mamba import conv_triton
    xz = torch.randn(b, 2 * e, l, device="cuda")
    x = xz[:, :e].detach().requires_grad_()                              # (B, E, L) view, as in the block
    w = (torch.randn(e, 1, 4, device="cuda") * 0.5).requires_grad_()
    bias = torch.randn(e, device="cuda").requires_grad_()
    gy = torch.randn(b, e, l, device="cuda")
    ref = torch_conv(x, w, bias)
    ref_grads = torch.autograd.grad(ref, (x, w, bias), gy)
    rows = []
    saved = (conv_triton.BE, conv_triton.BL, conv_triton.WARPS)
    for label, cfg, fn in kernels(configs):
        if cfg is not None:
            conv_triton.BE, conv_triton.BL, conv_triton.WARPS = cfg
        try:
            y = fn(x, w, bias)
            grads = torch.autograd.grad(y, (x, w, bias), gy)
            err = max(((a - r).norm() / r.norm()).item() for a, r in zip((y, *grads), (ref, *ref_grads)))
            fwd = harness.time_ms(lambda: fn(x, w, bias), reps=reps)
            both = harness.time_ms(lambda: torch.autograd.grad(fn(x, w, bias), (x, w, bias), gy), reps=reps)
            rows.append({"kind": "conv", "shape": name, "kernel": label, "channels": e, "l": l, "b": b,
                         "fwd_ms": fwd, "fwd_bwd_ms": both, "fwd_TBps": 2 * b * e * l * 4 / fwd / 1e9,
                         "err": err, "device": harness.device_name()})
        except Exception as exc:   # a launch shape that does not compile is reported, the others still run
            rows.append({"kind": "conv", "shape": name, "kernel": label, "error": harness.error_text(exc)})
        finally:
            conv_triton.BE, conv_triton.BL, conv_triton.WARPS = saved
        harness.emit(rows[-1])
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default="enc3d-s0,enc3d-s1", help="comma-separated shape names of bench/scan.py")
    parser.add_argument("--configs", default="", help="Triton launch shapes 'BE,BL,WARPS;...' (default: the built-in)")


def run(args, reporter=None) -> int:
    harness.start_gpu("conv.py")
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs.split(";") if c]
    wanted = [s for s in args.shapes.split(",") if s]
    rows = []
    for name, d_model, l in SHAPES:
        if name in wanted:
            rows += bench_shape(name, 2 * d_model, l, configs)
            torch.cuda.empty_cache()
    harness.table(rows, ["shape", "kernel", "fwd_ms", "fwd_bwd_ms", "fwd_TBps", "err"])
    return 0


if __name__ == "__main__":
    sys.exit(harness.run_script(__doc__, add_arguments, run))
