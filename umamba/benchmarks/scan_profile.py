"""Where the time goes: GPU time per kernel of one forward+backward (torch.profiler), of the Triton scan or of a
whole Mamba layer.

    python umamba/benchmarks/scan_profile.py [--shapes enc3d-s0,enc3d-s1] [--config DB=32,...]
    python umamba/benchmarks/scan_profile.py --layer triton,mamba-ssm [--shapes ...]

float32, b = 2, n = 16, with z, D, delta_bias and softplus, at the shapes of umamba/bench/scan.py (d = 2·d_model);
`--layer` profiles one `umamba.mamba.Mamba` layer (d_model) with each kernel arm of umamba/bench/arms.py instead.
Mean over 5 profiled calls after 3 warm-ups. Prints one JSON line per kernel and a short table.
"""

from __future__ import annotations

import argparse
import sys

import torch

from umamba.bench import arms, harness
from umamba.bench.scan import SHAPES


def kernel_times(step, reps: int = 5) -> dict[str, float]:
    """GPU milliseconds per kernel name of one call of `step` (mean of `reps` after 3 warm-ups)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / reps / 1000 for e in prof.key_averages()
            if e.device_type.name == "CUDA"}


def scan_step(d: int, l: int, config, b: int = 2, n: int = 16):
    from umamba.mamba.scan_triton import selective_scan_triton

    g = torch.Generator(device="cuda").manual_seed(0)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, device="cuda", generator=g) * scale

    A = -(torch.rand(d, n, device="cuda", generator=g) * 3 + 0.1)
    leaves = [x.requires_grad_() for x in (r(b, d, l), r(b, d, l, scale=0.5), A, r(b, n, l), r(b, n, l), r(d),
                                           r(b, d, l), r(d, scale=0.3))]

    def step():
        y = selective_scan_triton(*leaves, True, config=config)
        torch.autograd.grad(y, leaves, torch.ones_like(y))
    return step


def layer_step(d_model: int, l: int, arm: str, b: int = 2):
    from umamba.mamba import Mamba
    torch.manual_seed(0)
    holder = torch.nn.Sequential(Mamba(d_model=d_model).cuda())
    arms.use_arm_blocks(holder, arm)  # the mamba-ssm arm: mamba-ssm's own Mamba module, as bench/layer.py
    layer = holder[0]
    x = torch.randn(b, l, d_model, device="cuda", requires_grad=True)
    gy = torch.randn(b, l, d_model, device="cuda")

    def step():
        layer(x).backward(gy)
    return step


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default="enc3d-s0,enc3d-s1", help="comma-separated shape names of bench/scan.py")
    parser.add_argument("--config", default="", help="a Triton launch configuration, ScanConfig fields "
                        "'key=value,...' (default: the built-in one)")
    parser.add_argument("--layer", default="", metavar="ARMS",
                        help="profile a whole Mamba layer with these kernel arms (e.g. triton,mamba-ssm) instead")


def run(args, reporter=None) -> int:
    chosen = [a for a in args.layer.split(",") if a]
    harness.start_gpu("scan_profile.py")
    from umamba.mamba.scan_triton import ScanConfig
    config = ScanConfig.parse(args.config) if args.config else None
    wanted = [s for s in args.shapes.split(",") if s]
    rows = []
    for name, d_model, l in SHAPES:
        if name not in wanted:
            continue
        for arm in chosen or ["triton"]:
            if chosen:
                with arms.kernels(arm):
                    times = kernel_times(layer_step(d_model, l, arm))
            else:
                times = kernel_times(scan_step(2 * d_model, l, config))
            rows.append({"kind": "scan_profile", "shape": name, "arm": arm, "kernel": "(all)",
                         "ms": round(sum(times.values()), 4)})
            harness.emit(rows[-1])
            for kernel, ms in sorted(times.items(), key=lambda kv: -kv[1]):
                rows.append({"kind": "scan_profile", "shape": name, "arm": arm, "kernel": kernel[:80],
                             "ms": round(ms, 4)})
                harness.emit(rows[-1])
            torch.cuda.empty_cache()
    harness.table(rows, ["shape", "arm", "kernel", "ms"])
    return 0


if __name__ == "__main__":
    sys.exit(harness.run_script(__doc__, add_arguments, run))
