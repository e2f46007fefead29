"""`umamba bench scan`: the selective scan per backend on this device, at U-Mamba's shapes.

For every available backend (portable, numba on CPU, cuda / triton on a GPU) and every shape of
docs/umamba-architecture.md §9 it times the forward (inference, no autograd; optionally forward+backward) and
reports state updates per second, b·d·n·l / t. With --layer it also times the whole Mamba layer (umamba.mamba.Mamba,
inference) at those shapes. Output: one JSON object per line on stdout, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

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


def machine() -> dict:
    import torch

    info = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, reps: int, warmup=None) -> float:
    """Minimum wall time of fn() in seconds over `reps` runs, after one warm-up run (compilation, caches) of
    `warmup` (a shorter problem) or of fn itself."""
    (warmup or fn)()
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def _inputs(b, d, l, device):
    import torch

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
    import torch

    from umamba.mamba import selective_scan

    d = 2 * d_model
    x = _inputs(b, d, l, device)
    rec = {"bench": "scan", "shape": name, "backend": backend, "device": str(device), "b": b, "d": d,
           "n": D_STATE, "l": l, "dtype": "float32"}
    updates = b * d * D_STATE * l

    def forward(length=l):
        with torch.no_grad():
            selective_scan(**_prefix(x, length), delta_softplus=True, backend=backend)

    rec["forward_s"] = _time(forward, device, reps, warmup=lambda: forward(min(l, WARMUP_L)))
    rec["forward_updates_per_s"] = updates / rec["forward_s"]
    if backward and backend != "numba":
        for k in ("u", "delta", "B", "C", "z"):
            x[k].requires_grad_()
        gy = torch.ones(b, d, l, device=device)

        def both(length=l):
            xs = _prefix(x, length)
            selective_scan(**xs, delta_softplus=True, backend=backend).backward(gy[..., :length])

        rec["forward_backward_s"] = _time(both, device, reps, warmup=lambda: both(min(l, WARMUP_L)))
    return rec


def bench_layer(name, d_model, l, b, backend, device, reps):
    import torch

    from umamba.mamba import Mamba

    torch.manual_seed(0)
    layer = Mamba(d_model).to(device)
    h = torch.randn(b, l, d_model, device=device)
    os.environ["UMAMBA_SCAN_BACKEND"] = backend

    def forward(length=l):
        with torch.no_grad():
            layer(h[:, :length])

    try:
        seconds = _time(forward, device, reps, warmup=lambda: forward(min(l, WARMUP_L)))
    finally:
        os.environ.pop("UMAMBA_SCAN_BACKEND", None)
    return {"bench": "layer-forward", "shape": name, "backend": backend, "device": str(device), "b": b,
            "d_model": d_model, "l": l, "dtype": "float32", "forward_s": seconds,
            "forward_updates_per_s": b * 2 * d_model * D_STATE * l / seconds}


def backends_for(device) -> list[str]:
    from umamba.mamba import available_backends

    avail = available_backends()
    if device.type == "cuda":
        return [n for n in ("cuda", "triton", "portable") if avail[n]]
    return [n for n in ("numba", "portable") if avail[n]]


def table(rows: list[dict]) -> str:
    lines = [f"{'bench':<14}{'shape':<18}{'backend':<10}{'b':>3}{'d':>6}{'l':>10}"
             f"{'forward s':>12}{'updates/s':>12}{'fwd+bwd s':>12}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['bench']:<14}{r['shape']:<18}{r['backend']:<10}  error: {r['error']}")
            continue
        fb = r.get("forward_backward_s")
        lines.append(f"{r['bench']:<14}{r['shape']:<18}{r['backend']:<10}{r['b']:>3}"
                     f"{r.get('d', 2 * r.get('d_model', 0)):>6}{r['l']:>10}{r['forward_s']:>12.4f}"
                     f"{r['forward_updates_per_s']:>12.3g}{(f'{fb:.4f}' if fb else '-'):>12}")
    return "\n".join(lines)


def run(args, reporter=None) -> int:
    from umamba.errors import UserError

    wanted = {s.strip() for s in args.shapes.split(",") if s.strip()}
    unknown = wanted - {s[0] for s in SHAPES}
    if unknown:
        raise UserError(f"unknown shape(s): {', '.join(sorted(unknown))}",
                        "choose from: " + ", ".join(s[0] for s in SHAPES))
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available", "leave --device out to run on the CPU")
    backends = [s.strip() for s in args.backends.split(",") if s.strip()] or backends_for(device)
    shapes = [(n, dm, min(l, QUICK_MAX_L) if args.quick else l) for n, dm, l in SHAPES if not wanted or n in wanted]
    print(json.dumps({"bench": "machine", "device": str(device), **machine()}), flush=True)
    rows = []
    for name, d_model, l in shapes:
        for backend in backends:
            jobs = [("scan", lambda: bench_scan(name, d_model, l, args.batch, backend, device, args.reps,
                                                args.backward))]
            if args.layer:
                jobs.append(("layer-forward", lambda: bench_layer(name, d_model, l, args.batch, backend, device,
                                                                  args.reps)))
            for kind, job in jobs:
                try:
                    rec = job()
                except Exception as exc:   # one backend failing must not stop the others
                    rec = {"bench": kind, "shape": name, "backend": backend, "error": f"{type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]}"}
                print(json.dumps(rec), flush=True)
                rows.append(rec)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print(f"\n# selective scan, float32, n={D_STATE}, device {device} ({machine().get('gpu') or machine().get('cpu')})")
    print(table(rows))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="umamba bench scan", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
