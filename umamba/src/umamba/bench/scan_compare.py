"""GPU check and benchmark of the Triton selective scan next to mamba-ssm's kernel, at U-Mamba's shapes.

    python -m umamba.bench.scan_compare [--shapes enc3d-s0,enc3d-s1] [--check] [--sweep] [--reps 10]

For each shape (b=2, n=16, d = 2·d_model; inputs drawn like a trained Mamba block's: δ = softplus(raw + bias)
with dt in [1e-3, 1e-1], A = -(1..16) perturbed, z and D present):
  --check  outputs and all gradients of the float32 Triton scan against a float64 reference: the same Triton
           kernels on float64 inputs (gradients), and an independent chunked float64 PyTorch forward
           (outputs, a different algorithm); mamba-ssm's float32 kernel is compared the same way for context.
  timing   forward and forward+backward of each backend (median of CUDA-event timings), effective bandwidth
           for the bytes the scan must move (roofline.scan_bytes) against the measured copy bandwidth.
  --sweep  also times several Triton launch configurations (ScanConfig) per shape.
Prints one JSON object per line, then a table.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
import torch.nn.functional as F

from umamba.bench import roofline


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


def reference_forward_f64(u, delta, A, B, C, D, z, delta_bias, K=512):
    """Independent float64 forward: sequential inside chunks of K steps (all chunks at once), then the chunk
    states chained one after another, then the outputs. Never holds more than (b, d, n, l/K)."""
    b, d, l = u.shape
    n = A.shape[1]
    K = min(K, l)
    m = -(-l // K)
    pad = m * K - l
    dt = F.softplus(delta + delta_bias[:, None])
    dt4 = F.pad(dt, (0, pad)).view(b, d, m, K)
    du4 = F.pad(dt * u, (0, pad)).view(b, d, m, K)
    B4 = F.pad(B, (0, pad)).view(b, n, m, K)
    C4 = F.pad(C, (0, pad)).view(b, n, m, K)
    A4 = A[None, :, :, None]

    def step(h, t):
        return torch.exp(A4 * dt4[:, :, None, :, t]) * h + du4[:, :, None, :, t] * B4[:, None, :, :, t]

    h = u.new_zeros(b, d, n, m)
    for t in range(K):
        h = step(h, t)
    decay = torch.exp(A4 * dt4.sum(-1)[:, :, None, :])
    h_in = torch.empty_like(h)
    carry = u.new_zeros(b, d, n)
    for j in range(m):
        h_in[..., j] = carry
        carry = decay[..., j] * carry + h[..., j]
    del h, decay
    y = u.new_empty(b, d, m, K)
    h = h_in
    for t in range(K):
        h = step(h, t)
        y[..., t] = (h * C4[:, None, :, :, t]).sum(2)
    y = y.view(b, d, m * K)[..., :l] + D[:, None] * u
    return y * F.silu(z)


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
    ssm = roofline.mamba_ssm_scan_fn()
    if ssm is not None:
        fns["mamba-ssm"] = lambda u, dl, A, B, C, D, z, db: ssm(u, dl, A, B, C, D, z, db, True)
    return fns


def check_shape(name, b, d, l, n, fns):
    x64 = make_inputs(b, d, l, n, torch.float64)
    g = torch.Generator(device="cuda").manual_seed(1)
    dout64 = torch.randn(b, d, l, generator=g, device="cuda", dtype=torch.float64)
    rec = {"kind": "check", "shape": name, "b": b, "d": d, "l": l, "n": n, "device": roofline.device_name()}
    out64, g64 = run_scan(fns["triton"], x64, dout64)
    ref = reference_forward_f64(**x64)
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


def time_shape(name, b, d, l, n, fns, reps, configs=None):
    x = make_inputs(b, d, l, n, torch.float32)
    dout = torch.randn(b, d, l, device="cuda")
    nbytes = roofline.scan_bytes(b, d, l, n)
    rows = []
    variants = [(k, fn, None) for k, fn in fns.items()]
    if configs:
        from umamba.mamba.scan_triton import selective_scan_triton
        for cfg in configs:
            variants.append((f"triton[{cfg.mode},T{cfg.T},DB{cfg.DB}/{cfg.DB_grad},w{cfg.warps}/{cfg.warps_grad},"
                             f"ps{cfg.per_sm}]",
                             (lambda c: lambda u, dl, A, B, C, D, z, db:
                              selective_scan_triton(u, dl, A, B, C, D, z, db, True, config=c))(cfg), cfg))
    for vname, fn, cfg in variants:
        extra = {"config": cfg.to_text()} if cfg is not None else {}
        try:
            fwd = roofline.cuda_time_ms(lambda: run_scan(fn, x), reps=reps)
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            both = roofline.cuda_time_ms(lambda: run_scan(fn, x, dout), reps=reps)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        except Exception as exc:  # a config that does not compile (e.g. out of registers) is reported, not fatal
            rows.append({"kind": "time", "shape": name, "backend": vname, "error": repr(exc)[:200]})
            continue
        rows.append({"kind": "time", "shape": name, "backend": vname, "b": b, "d": d, "l": l, "n": n,
                     "fwd_ms": fwd, "fwd_bwd_ms": both, "extra_peak_mib": peak,
                     "fwd_TBps": nbytes["fwd"] / fwd / 1e9, "fwd_bwd_TBps": nbytes["fwd_bwd"] / both / 1e9,
                     "issue_bytes_TBps": nbytes["issue"] / both / 1e9, "device": roofline.device_name(), **extra})
    ref = {r["backend"]: r for r in rows if "fwd_ms" in r}
    if "mamba-ssm" in ref:
        for r in rows:
            if "fwd_ms" in r:
                r["speedup_fwd_vs_mamba_ssm"] = ref["mamba-ssm"]["fwd_ms"] / r["fwd_ms"]
                r["speedup_fwd_bwd_vs_mamba_ssm"] = ref["mamba-ssm"]["fwd_bwd_ms"] / r["fwd_bwd_ms"]
    return rows


DEFAULT_SWEEP = ("lane:DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=64,stages=3;"
                 "lane:DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=64,stages=1;"
                 "lane:DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=32,stages=3;"
                 "lane:DB=32,DB_grad=8,warps=1,warps_grad=1,per_sm=128,stages=2;"
                 "lane:DB=64,DB_grad=8,warps=2,warps_grad=1,per_sm=64,stages=2;"
                 "seq:T=16,DB=32,DB_grad=16,warps=2,warps_grad=2,per_sm=16")


def parse_configs(text):
    """"mode:key=value,...;..." -> [ScanConfig]"""
    from umamba.mamba.scan_triton import ScanConfig
    return [ScanConfig.parse(item) for item in text.split(";") if item.strip()]


def all_shapes(b=2, n=16):
    shapes = [(name, b, 2 * dm, l, n) for name, dm, l in roofline.ENC3D_SHAPES]
    shapes += [(name, b, d, l, n) for name, d, l in roofline.BASELINE_SCAN_SHAPES]
    return shapes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m umamba.bench.scan_compare", description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    p.add_argument("--check", action="store_true", help="compare with float64 references")
    p.add_argument("--sweep", action="store_true", help="also time several Triton launch configurations")
    p.add_argument("--configs", default=DEFAULT_SWEEP, help="the configurations of --sweep: "
                   "'mode:key=value,...;...' with ScanConfig fields")
    p.add_argument("--only-sweep", action="store_true", help="time only the --sweep configurations")
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("scan_compare needs a CUDA GPU", file=sys.stderr)
        return 2
    wanted = set(filter(None, args.shapes.split(",")))
    shapes = [s for s in all_shapes() if not wanted or s[0] in wanted]
    fns = backends()
    bw = roofline.copy_bandwidth_gbs()
    roofline.emit({"kind": "device", "device": roofline.device_name(), "copy_GBps": bw, **roofline.versions()})
    rows, checks = [], []
    for name, b, d, l, n in shapes:
        if args.check:
            rec = check_shape(name, b, d, l, n, fns)
            roofline.emit(rec)
            checks.append(rec)
        configs = parse_configs(args.configs) if args.sweep or args.only_sweep else None
        for r in time_shape(name, b, d, l, n, {} if args.only_sweep else fns, args.reps, configs):
            if "fwd_bwd_TBps" in r:
                r["fwd_bwd_roofline_frac"] = r["fwd_bwd_TBps"] * 1e3 / bw
                r["issue_roofline_frac"] = r["issue_bytes_TBps"] * 1e3 / bw
            roofline.emit(r)
            rows.append(r)
        torch.cuda.empty_cache()
    sweep_rows = [r for r in rows if "config" in r and "fwd_bwd_ms" in r]
    if sweep_rows:  # the configuration with the smallest summed fwd+bwd time over the swept shapes
        totals = {}
        for r in sweep_rows:
            totals[r["config"]] = totals.get(r["config"], 0.0) + r["fwd_bwd_ms"]
        best = min(totals, key=totals.get)
        roofline.emit({"kind": "best_config", "config": best, "sum_fwd_bwd_ms": totals[best]})
    print(f"\n# device: {roofline.device_name()}, copy bandwidth {bw:.0f} GB/s", flush=True)
    roofline.table(rows, ["shape", "backend", "fwd_ms", "fwd_bwd_ms", "speedup_fwd_bwd_vs_mamba_ssm",
                          "fwd_bwd_TBps", "fwd_bwd_roofline_frac", "issue_roofline_frac", "extra_peak_mib"])
    if checks:
        roofline.table(checks, ["shape", "triton_max_rel", "mamba-ssm_max_rel", "triton_f64_out_vs_independent_f64"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
