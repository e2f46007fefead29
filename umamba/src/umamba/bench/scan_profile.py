"""Where the Triton scan's time goes: GPU time per kernel of one forward+backward (torch.profiler).

    python -m umamba.bench.scan_profile [--shapes enc3d-s0,enc3d-s1] [--config lane:...]

float32, b = 2, n = 16, with z, D, delta_bias and softplus, at the shapes of bench/scan.py (d = 2·d_model);
mean over 5 profiled calls after 3 warm-ups. Prints one JSON line per kernel and a short table.
"""

from __future__ import annotations

import argparse
import sys

import torch

from umamba.bench import roofline
from umamba.bench.scan import SHAPES


def profile_shape(d: int, l: int, config, b: int = 2, n: int = 16, reps: int = 5) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

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

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / reps / 1000 for e in prof.key_averages()
            if e.device_type.name == "CUDA"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m umamba.bench.scan_profile", description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="enc3d-s0,enc3d-s1", help="comma-separated shape names of bench/scan.py")
    p.add_argument("--config", default="", help="a Triton launch configuration (default: the built-in one)")
    args = p.parse_args(argv)
    roofline.start_gpu_bench("scan-profile", "triton")
    from umamba.mamba.scan_triton import ScanConfig
    config = ScanConfig.parse(args.config) if args.config else None
    wanted = [s for s in args.shapes.split(",") if s]
    rows = []
    for name, d_model, l in SHAPES:
        if name not in wanted:
            continue
        times = profile_shape(2 * d_model, l, config)
        for kernel, ms in sorted(times.items(), key=lambda kv: -kv[1]):
            row = {"kind": "scan_profile", "shape": name, "kernel": kernel[:80], "ms": round(ms, 4)}
            roofline.emit(row)
            rows.append(row)
    roofline.table(rows, ["shape", "kernel", "ms"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
