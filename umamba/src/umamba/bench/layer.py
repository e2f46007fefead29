"""`umamba bench layer`: one Mamba layer (float32) forward+backward at U-Mamba's shapes, each kernel arm side by
side in one process on one device: umamba.mamba.Mamba, or for the "mamba-ssm" arm mamba-ssm's own Mamba module
with the same weights when that package imports (roofline.use_arm_blocks).

Shapes: the U-Mamba Enc 3D layers (b=2, patch 128³: d_model 32..320, l 2,097,152..320) and Bot's bottleneck.
Prints one JSON object per line (device named in each), then a table.
"""

from __future__ import annotations

import argparse
import sys

import torch

from umamba.bench import roofline


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
    block = roofline.use_arm_blocks(holder, backend)
    layer = holder[0]
    x = torch.randn(b, l, d_model, device="cuda", requires_grad=True)
    gy = torch.randn(b, l, d_model, device="cuda")

    def step():
        y = layer(x)
        y.backward(gy)

    with roofline.kernels(backend):
        fwd = roofline.cuda_time_ms(lambda: layer(x).detach(), reps=reps)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        both = roofline.cuda_time_ms(step, reps=reps)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return {"kind": "layer", "shape": name, "backend": backend, "conv": roofline.arm_conv(backend),
            "block": block, "b": b, "d_model": d_model, "l": l, "fwd_ms": fwd, "fwd_bwd_ms": both,
            "peak_extra_mib": peak, "device": roofline.device_name()}


def run(args, reporter=None) -> int:
    backends = roofline.start_gpu_bench("layer", args.backends)
    wanted = set(filter(None, args.shapes.split(",")))
    shapes = [s for s in roofline.ENC3D_SHAPES if not wanted or s[0] in wanted]
    rows = []
    for name, d_model, l in shapes:
        group = []
        for backend in backends:
            try:
                group.append(bench_layer(name, d_model, l, args.batch, backend, args.reps))
            except Exception as exc:
                group.append({"kind": "layer", "shape": name, "backend": backend, "error": repr(exc)[:300]})
            torch.cuda.empty_cache()
        ref = next((r for r in group if r["backend"] == "mamba-ssm" and "fwd_ms" in r), None)
        for r in group:
            if ref and "fwd_ms" in r:
                r["speedup_fwd_bwd_vs_mamba_ssm"] = ref["fwd_bwd_ms"] / r["fwd_bwd_ms"]
            roofline.emit(r)
        rows += group
    print(f"\n# Mamba layer fwd+bwd, float32, device: {roofline.device_name()}")
    roofline.table(rows, ["shape", "backend", "block", "conv", "fwd_ms", "fwd_bwd_ms", "speedup_fwd_bwd_vs_mamba_ssm",
                          "peak_extra_mib"])
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="umamba bench layer", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
