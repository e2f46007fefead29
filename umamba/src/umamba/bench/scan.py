"""`umamba bench scan`: the selective scan per backend on this device, at U-Mamba's shapes.

For every available backend (portable, numba on CPU, cuda / triton on a GPU) and every Mamba layer of U-Mamba
(SHAPES; docs/architecture.md, "Mamba layers") it times the forward (inference, no autograd; optionally
forward+backward) and reports state updates per second, b·d·n·l / t. With --layer it also times the whole Mamba
layer (umamba.mamba.Mamba, inference) at those shapes. The minimum over --reps runs after one warm-up run on the
first steps. Output: one JSON object per line on stdout, then a table.
"""

from __future__ import annotations

import argparse
import os

import torch

from umamba.bench import harness
from umamba.errors import UserError

# (name, d_model, l): U-Mamba Enc 3D spatial-token stages (patch 128³), its channel-token layer, Bot's bottleneck
SHAPES = [
    ("enc3d-s0", 32, 2_097_152),
    ("enc3d-s1", 64, 262_144),
    ("enc3d-s2", 128, 32_768),
    ("enc3d-s3", 256, 4_096),
    ("enc3d-s4", 320, 512),
    ("enc3d-s5-channel", 64, 320),
    ("bot3d", 320, 64),
]
QUICK_MAX_L = 16_384
WARMUP_L = 8_192      # warm-up runs (JIT compilation, allocator) use the first steps only
D_STATE = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help=f"cap l at {QUICK_MAX_L} (a smoke run)")
    parser.add_argument("--shapes", default="", help="comma-separated names (default: all): "
                        + ", ".join(s[0] for s in SHAPES))
    parser.add_argument("--backends", default="", help="comma-separated (default: all that run on the device)")
    parser.add_argument("--device", default="", help="cpu / cuda (default: cuda when available, else cpu)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (the minimum is reported)")
    parser.add_argument("--backward", action="store_true", help="also time forward+backward (autograd backends)")
    parser.add_argument("--layer", action="store_true", help="also time the Mamba layer forward (inference)")


def _seconds(fn, device, reps: int, warmup) -> float:
    """The minimum over `reps` runs of fn(), in seconds, after one run of `warmup` (a shorter problem)."""
    return harness.time_ms(fn, device, reps=reps, warmup=1, warmup_fn=warmup, stat="min") / 1e3


def _inputs(b, d, l, device):
    g = torch.Generator(device="cpu").manual_seed(0)

    def uni(*shape, lo=-1.0, hi=1.0):
        return torch.empty(*shape).uniform_(lo, hi, generator=g).to(device)

    return dict(u=uni(b, d, l), delta=uni(b, d, l, lo=-5.0, hi=-1.0),
                A=-torch.arange(1, D_STATE + 1, dtype=torch.float32).repeat(d, 1).to(device),
                B=uni(b, D_STATE, l), C=uni(b, D_STATE, l), D=torch.ones(d, device=device),
                z=uni(b, d, l), delta_bias=torch.zeros(d, device=device))


def _prefix(x: dict, length: int) -> dict:
    """The scan inputs cut to the first `length` steps (views)."""
    return {k: (v[..., :length] if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}


def bench_scan(name, d_model, l, b, backend, device, reps, backward):
    from umamba.mamba import selective_scan

    d = 2 * d_model
    x = _inputs(b, d, l, device)
    rec = {"kind": "scan", "shape": name, "backend": backend, "device": str(device), "b": b, "d": d,
           "n": D_STATE, "l": l, "dtype": "float32"}
    updates = b * d * D_STATE * l

    def forward(length=l):
        with torch.no_grad():
            selective_scan(**_prefix(x, length), delta_softplus=True, backend=backend)

    rec["forward_s"] = _seconds(forward, device, reps, lambda: forward(min(l, WARMUP_L)))
    rec["forward_updates_per_s"] = updates / rec["forward_s"]
    if backward and backend != "numba":
        for k in ("u", "delta", "B", "C", "z"):
            x[k].requires_grad_()
        gy = torch.ones(b, d, l, device=device)

        def both(length=l):
            xs = _prefix(x, length)
            selective_scan(**xs, delta_softplus=True, backend=backend).backward(gy[..., :length])

        rec["forward_backward_s"] = _seconds(both, device, reps, lambda: both(min(l, WARMUP_L)))
    return rec


def bench_layer_forward(name, d_model, l, b, backend, device, reps):
    from umamba.mamba import Mamba

    torch.manual_seed(0)
    layer = Mamba(d_model).to(device)
    h = torch.randn(b, l, d_model, device=device)
    os.environ["UMAMBA_SCAN_BACKEND"] = backend

    def forward(length=l):
        with torch.no_grad():
            layer(h[:, :length])

    try:
        seconds = _seconds(forward, device, reps, lambda: forward(min(l, WARMUP_L)))
    finally:
        os.environ.pop("UMAMBA_SCAN_BACKEND", None)
    return {"kind": "layer-forward", "shape": name, "backend": backend, "device": str(device), "b": b,
            "d_model": d_model, "l": l, "dtype": "float32", "forward_s": seconds,
            "forward_updates_per_s": b * 2 * d_model * D_STATE * l / seconds}


def backends_for(device) -> list[str]:
    from umamba.mamba import available_backends

    avail = available_backends()
    if device.type == "cuda":
        return [n for n in ("cuda", "triton", "portable") if avail[n]]
    return [n for n in ("numba", "portable") if avail[n]]


def run(args, reporter=None) -> int:
    wanted = {s.strip() for s in args.shapes.split(",") if s.strip()}
    unknown = wanted - {s[0] for s in SHAPES}
    if unknown:
        raise UserError(f"unknown shape(s): {', '.join(sorted(unknown))}",
                        "choose from: " + ", ".join(s[0] for s in SHAPES))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available", "leave --device out to run on the CPU")
    backends = [s.strip() for s in args.backends.split(",") if s.strip()] or backends_for(device)
    shapes = [(n, dm, min(l, QUICK_MAX_L) if args.quick else l) for n, dm, l in SHAPES if not wanted or n in wanted]
    harness.emit(harness.machine(device))
    rows = harness.side_by_side(
        shapes, backends, lambda s, backend: bench_scan(*s, args.batch, backend, device, args.reps, args.backward),
        label=lambda s: {"kind": "scan", "shape": s[0]})
    if args.layer:
        rows += harness.side_by_side(
            shapes, backends, lambda s, backend: bench_layer_forward(*s, args.batch, backend, device, args.reps),
            label=lambda s: {"kind": "layer-forward", "shape": s[0]})
    for r in rows:
        r.setdefault("d", 2 * r.get("d_model", 0) or None)
    harness.table(rows, ["kind", "shape", "backend", "b", "d", "l", "forward_s", "forward_updates_per_s",
                         "forward_backward_s"],
                  title=f"selective scan, float32, n={D_STATE}, device {device} ({harness.device_name()})")
    return 0
