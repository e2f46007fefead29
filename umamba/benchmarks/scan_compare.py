"""GPU check and benchmark of the Triton selective scan next to mamba-ssm's kernel, at U-Mamba's shapes.

    python umamba/benchmarks/scan_compare.py [--shapes enc3d-s0,enc3d-s1] [--check] [--sweep] [--reps 10]

For each shape (b=2, n=16, d = 2·d_model; inputs drawn like a trained Mamba block's: δ = softplus(raw + bias)
with dt in [1e-3, 1e-1], A = -(1..16) perturbed, z and D present):
  --check  outputs and all gradients of the float32 Triton scan against a float64 reference: the same Triton
           kernels on float64 inputs (gradients), and the float64 reference scan `selective_scan_ref` in
           chunks (outputs, a different algorithm); mamba-ssm's float32 kernel is compared the same way for
           context.
  timing   forward and forward+backward of each backend (median of CUDA-event timings), effective bandwidth
           for the bytes the scan must move (`scan_bytes`) against the measured device-to-device copy
           bandwidth (the HBM roofline).
  --sweep  also times several Triton launch configurations (ScanConfig) per shape.
Prints one JSON object per line, then a table.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from umamba.bench import arms, harness
from umamba.bench.scan import SHAPES
from umamba.mamba.scan_ref import selective_scan_ref

# the scan shapes of mamba-ssm's own baseline timings: (name, d_inner, l)
BASELINE_SHAPES = [("base-d640-l216", 640, 216), ("base-d128-l32k", 128, 32_768), ("base-d64-l262k", 64, 262_144)]


def copy_bandwidth_gbs(nbytes: int = 2 << 30) -> float:
    """Measured device-to-device copy bandwidth (bytes read + written per second), the memory ceiling."""
    src = torch.empty(nbytes // 4, device="cuda", dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    ms = harness.time_ms(lambda: dst.copy_(src), warmup=3, reps=20)
    del src, dst
    return 2 * nbytes / (ms * 1e-3) / 1e9


def scan_bytes(b: int, d: int, l: int, n: int, elem: int = 4) -> dict:
    """Bytes a selective scan must move (each input read once, each output written once).

    fwd:      u, delta, z, B, C in, out out                                   (4d + 2n) per token
    fwd_bwd:  fwd + (u, delta, z, B, C, dout in; du, ddelta, dz, dB, dC out)  (11d + 6n) per token
    target:   (5d + 2n) per token, the count of the roofline target in BENCHMARKS.md, over the fwd+bwd time
    """
    tokens = b * l
    return {"fwd": tokens * (4 * d + 2 * n) * elem, "fwd_bwd": tokens * (11 * d + 6 * n) * elem,
            "target": tokens * (5 * d + 2 * n) * elem}


def make_inputs(b, d, l, n, dtype, device="cuda", seed=0):
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=torch.float64)

    dt = torch.exp(torch.rand(d, generator=g, device=device, dtype=torch.float64)
                   * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = dt + torch.log(-torch.expm1(-dt))                        # softplus^-1(dt), as the block initialises
    A = -torch.arange(1, n + 1, device=device, dtype=torch.float64).repeat(d, 1) * torch.exp(0.1 * r(d, n))
    x = dict(u=r(b, d, l), delta=0.5 * r(b, d, l), A=A, B=r(b, n, l), C=r(b, n, l), D=1.0 + 0.1 * r(d),
             z=r(b, d, l), delta_bias=bias)
    seq = ("u", "delta", "B", "C", "z")
    return {k: v.to(dtype if k in seq else (torch.float64 if dtype == torch.float64 else torch.float32))
            for k, v in x.items()}


def rel(x, ref) -> float:
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def run_scan(fn, x, dout=None):
    """(out, grads dict or None)."""
    if dout is None:
        with torch.no_grad():
            return fn(*(x[k] for k in NAMES[:7]), x["delta_bias"]), None
    leaves = {k: v.detach().requires_grad_() for k, v in x.items()}
    out = fn(*(leaves[k] for k in NAMES[:7]), leaves["delta_bias"])
    grads = torch.autograd.grad(out, [leaves[k] for k in NAMES], dout)
    return out.detach(), dict(zip(NAMES, grads))


def backends():
    from umamba.mamba.scan_triton import selective_scan_triton
    fns = {"triton": lambda u, dl, A, B, C, D, z, db: selective_scan_triton(u, dl, A, B, C, D, z, db, True)}
    ssm = arms.mamba_ssm_scan_fn()
    if ssm is not None:
        fns["mamba-ssm"] = lambda u, dl, A, B, C, D, z, db: ssm(u, dl, A, B, C, D, z, db, True)
    return fns


def check_shape(name, b, d, l, n, fns):
    x64 = make_inputs(b, d, l, n, torch.float64)
    g = torch.Generator(device="cuda").manual_seed(1)
    dout64 = torch.randn(b, d, l, generator=g, device="cuda", dtype=torch.float64)
    rec = {"kind": "check", "shape": name, "b": b, "d": d, "l": l, "n": n, "device": harness.device_name()}
    out64, g64 = run_scan(fns["triton"], x64, dout64)
    ref = selective_scan_ref(**x64, delta_softplus=True, chunk_len=512)
    rec["triton_f64_out_vs_independent_f64"] = rel(out64, ref)
    del ref
    x32 = {k: v.float() for k, v in x64.items()}
    for bname, fn in fns.items():
        out, grads = run_scan(fn, x32, dout64.float())
        errs = {"out": rel(out, out64)}
        errs.update({"d" + k: rel(grads[k], g64[k]) for k in NAMES})
        rec[f"{bname}_f32_vs_f64"] = errs
        rec[f"{bname}_max_rel"] = max(errs.values())
        del out, grads
    torch.cuda.empty_cache()
    return rec


def time_shape(name, b, d, l, n, fns, reps, bandwidth_gbs, configs=()):
    """fwd and fwd+bwd times of each backend and Triton launch configuration, side by side."""
    from umamba.mamba.scan_triton import selective_scan_triton

    x = make_inputs(b, d, l, n, torch.float32)
    dout = torch.randn(b, d, l, device="cuda")
    nbytes = scan_bytes(b, d, l, n)
    variants = {k: (fn, None) for k, fn in fns.items()}
    for cfg in configs:
        variants[f"triton[{cfg.to_text()}]"] = ((lambda c: lambda u, dl, A, B, C, D, z, db:
                                                 selective_scan_triton(u, dl, A, B, C, D, z, db, True, config=c))(cfg),
                                                cfg)

    def measure(_, vname):
        fn, cfg = variants[vname]
        fwd = harness.time_ms(lambda: run_scan(fn, x), reps=reps)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        both = harness.time_ms(lambda: run_scan(fn, x, dout), reps=reps)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        rec = {"kind": "time", "shape": name, "backend": vname, "b": b, "d": d, "l": l, "n": n, "fwd_ms": fwd,
               "fwd_bwd_ms": both, "extra_peak_mib": peak, "fwd_TBps": nbytes["fwd"] / fwd / 1e9,
               "fwd_bwd_TBps": nbytes["fwd_bwd"] / both / 1e9, "device": harness.device_name()}
        rec["fwd_bwd_roofline_frac"] = rec["fwd_bwd_TBps"] * 1e3 / bandwidth_gbs
        rec["target_bytes_roofline_frac"] = nbytes["target"] / both / 1e6 / bandwidth_gbs
        return rec | ({"config": cfg.to_text()} if cfg is not None else {})

    return harness.side_by_side([name], list(variants), measure, label=lambda _: {"kind": "time", "shape": name},
                                speedups={"speedup_fwd_vs_mamba_ssm": "fwd_ms",
                                          "speedup_fwd_bwd_vs_mamba_ssm": "fwd_bwd_ms"})


DEFAULT_SWEEP = ("DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=64,stages=3;"
                 "DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=64,stages=1;"
                 "DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=32,stages=3;"
                 "DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=128,stages=2;"
                 "DB=64,DB_grad=8,warps=2,warps_grad=1,per_sm=64,stages=2")


def parse_configs(text):
    """"key=value,...;..." -> [ScanConfig]"""
    from umamba.mamba.scan_triton import ScanConfig
    return [ScanConfig.parse(item) for item in text.split(";") if item.strip()]


def all_shapes(b=2, n=16):
    shapes = [(name, b, 2 * dm, l, n) for name, dm, l in SHAPES]
    shapes += [(name, b, d, l, n) for name, d, l in BASELINE_SHAPES]
    return shapes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    parser.add_argument("--check", action="store_true", help="compare with float64 references")
    parser.add_argument("--sweep", action="store_true", help="also time several Triton launch configurations")
    parser.add_argument("--configs", default=DEFAULT_SWEEP, help="the configurations of --sweep: "
                        "'key=value,...;...' with ScanConfig fields")
    parser.add_argument("--only-sweep", action="store_true", help="time only the --sweep configurations")
    parser.add_argument("--reps", type=int, default=10)


def run(args, reporter=None) -> int:
    harness.start_gpu("scan_compare.py")
    wanted = set(filter(None, args.shapes.split(",")))
    shapes = [s for s in all_shapes() if not wanted or s[0] in wanted]
    fns = backends()
    bw = copy_bandwidth_gbs()
    harness.emit({"kind": "copy_bandwidth", "device": harness.device_name(), "copy_GBps": bw})
    configs = parse_configs(args.configs) if args.sweep or args.only_sweep else []
    rows, checks = [], []
    for name, b, d, l, n in shapes:
        if args.check:
            checks.append(check_shape(name, b, d, l, n, fns))
            harness.emit(checks[-1])
        rows += time_shape(name, b, d, l, n, {} if args.only_sweep else fns, args.reps, bw, configs)
        torch.cuda.empty_cache()
    sweep_rows = [r for r in rows if "config" in r and "fwd_bwd_ms" in r]
    if sweep_rows:  # the configuration with the smallest summed fwd+bwd time over the swept shapes
        totals = {}
        for r in sweep_rows:
            totals[r["config"]] = totals.get(r["config"], 0.0) + r["fwd_bwd_ms"]
        best = min(totals, key=totals.get)
        harness.emit({"kind": "best_config", "config": best, "sum_fwd_bwd_ms": totals[best]})
    harness.table(rows, ["shape", "backend", "fwd_ms", "fwd_bwd_ms", "speedup_fwd_bwd_vs_mamba_ssm", "fwd_bwd_TBps",
                         "fwd_bwd_roofline_frac", "target_bytes_roofline_frac", "extra_peak_mib"],
                  title=f"device: {harness.device_name()}, copy bandwidth {bw:.0f} GB/s")
    if checks:
        harness.table(checks, ["shape", "triton_max_rel", "mamba-ssm_max_rel", "triton_f64_out_vs_independent_f64"])
    return 0


if __name__ == "__main__":
    sys.exit(harness.run_script(__doc__, add_arguments, run))
