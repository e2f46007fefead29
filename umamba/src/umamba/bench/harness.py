"""What every benchmark shares: the machine it runs on, one timing function, one loop that runs the arms of a
comparison side by side, and one output format (a JSON object per line on stdout, then a table).

A benchmark is a module with `add_arguments(parser)` and `run(args, reporter)`: the shipped ones run as
`umamba bench NAME` (umamba.cli.bench), the developer tools of the repository's `umamba/benchmarks/` folder as
scripts (`run_script`). Every record names the device; comparisons are made within one process on one device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Iterable

import torch

from umamba.errors import UserError

REFERENCE_ARM = "mamba-ssm"   # speed-ups are against the original's kernels when that arm ran


# ------------------------------------------------------------------------------------------------ the machine
def device_name() -> str:
    """The GPU's name, or the CPU's model name."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def machine(device: torch.device | str) -> dict:
    """The record that opens every benchmark's output: device, cores, threads and software versions."""
    info = {"kind": "machine", "device": str(device), "name": device_name(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        pass
    try:
        from importlib.metadata import version
        info["mamba_ssm"] = version("mamba_ssm")
    except Exception:
        pass
    return info


def start_gpu(command: str) -> None:
    """The opening of a GPU-only benchmark: refuse without CUDA, then name the machine."""
    if not torch.cuda.is_available():
        raise UserError(f"{command}: needs a CUDA GPU, and torch sees none",
                        "run it on a machine with an NVIDIA GPU and a CUDA build of torch")
    emit(machine("cuda"))


# ----------------------------------------------------------------------------------------------------- timing
def time_ms(fn: Callable[[], object], device: torch.device | str = "cuda", reps: int = 10, warmup: int = 3,
            warmup_fn: Callable[[], object] | None = None, stat: str = "median", reset_peak: bool = False) -> float:
    """The median (or "min", "mean") of `reps` timed calls of fn(), in milliseconds, after `warmup` calls of
    `warmup_fn` (default fn: compilation, caches, the allocator). On CUDA each call is timed by CUDA events around
    it, elsewhere by the monotonic clock. reset_peak: CUDA's peak-memory statistics are reset after the warm-up,
    so that torch.cuda.max_memory_allocated() afterwards is the timed calls' peak."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        (warmup_fn or fn)()
    if cuda:
        torch.cuda.synchronize()
        if reset_peak:
            torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return {"median": statistics.median, "min": min, "mean": statistics.fmean}[stat](times)


# ----------------------------------------------------------------------------------------------- side by side
def error_text(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def side_by_side(items: Iterable, arms: list[str], measure: Callable[[object, str], dict],
                 label: Callable[[object], dict], speedups: dict[str, str] | None = None,
                 ratios: dict[str, str] | None = None) -> list[dict]:
    """measure(item, arm) -> a record, for every item and every arm in turn, in this process. An arm that fails
    (not installed, out of memory) is recorded as label(item) with its error, and the others still run. Against
    the REFERENCE_ARM's record of the same item: speedups {name: field} = its field / this one's (> 1: faster),
    ratios {name: field} = this one's / its. Each item's records are emitted once complete; returns all."""
    rows = []
    for item in items:
        group = []
        for arm in arms:
            try:
                group.append(measure(item, arm))
            except Exception as exc:   # one arm failing must not stop the others
                group.append({**label(item), "backend": arm, "error": error_text(exc)})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        ref = next((r for r in group if r["backend"] == REFERENCE_ARM and "error" not in r), None)
        for r in group:
            if ref is not None and "error" not in r:
                r.update({name: ref[field] / r[field] for name, field in (speedups or {}).items()})
                r.update({name: r[field] / ref[field] for name, field in (ratios or {}).items()})
            emit(r)
        rows += group
    return rows


# ----------------------------------------------------------------------------------------------------- output
def emit(record: dict, stream=None) -> None:
    print(json.dumps(record, default=str), file=stream or sys.stdout, flush=True)


def table(rows: Iterable[dict], columns: list[str], title: str = "", stream=None) -> None:
    """A plain-text table of `columns` (missing values '-'; errors in a last column), after a '# title' line."""
    rows = list(rows)
    columns = columns + (["error"] if any("error" in r for r in rows) else [])
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    out = stream or sys.stdout
    if title:
        print(f"\n# {title}", file=out)
    for row in [columns, *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
    out.flush()


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


# ------------------------------------------------------------------------------------------------- as scripts
def run_script(doc: str, add_arguments: Callable, run: Callable, argv: list[str] | None = None) -> int:
    """`python path/to/benchmark.py ...`: parse the benchmark's options and run it; a UserError is printed as the
    `umamba` command line prints it (exit status 2)."""
    parser = argparse.ArgumentParser(prog=os.path.basename(sys.argv[0]), description=doc.strip().splitlines()[0])
    add_arguments(parser)
    try:
        return int(run(parser.parse_args(argv)) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
