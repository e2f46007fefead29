"""CPU inference settings: thread count, and bfloat16 convolutions on CPUs that compute bf16 natively.

bf16 on the CPU is only fast where the instruction set has it (AVX512-BF16 or AMX-BF16: oneDNN's bf16
convolutions then run about 2x faster than float32, BENCHMARKS.md); elsewhere oneDNN emulates it, slower than
float32, so it is refused there. Under bf16 autocast the Mamba layers still run in float32 (MambaLayer turns
autocast off), only the convolutions (and the linear maps outside the Mamba layers) change precision.

`auto` is float32: bf16 changed the labels of the networks it was measured on by more than the 0.1 % allowed
(BENCHMARKS.md, "CPU inference"), so it is only used when asked for (`--precision bf16`).
"""

from __future__ import annotations

import os
import sys
import warnings

from umamba.errors import UserError

PRECISIONS = ("auto", "float32", "bf16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (Linux); empty elsewhere or when unreadable."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 on x86)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def resolve_precision(choice: str = "auto", flags: set[str] | None = None) -> str:
    """'float32' or 'bf16' for CPU inference: auto = float32 (see the module docstring); bf16 asked for on a CPU
    without native bf16 is refused (it would be slower than float32 and change the labels for nothing)."""
    choice = (choice or "auto").lower()
    if choice not in PRECISIONS:
        raise UserError(f"unknown precision {choice!r}", f"use one of: {', '.join(PRECISIONS)}")
    native = native_bf16(flags)
    if choice == "bf16" and not native:
        raise UserError("--precision bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); this one has "
                        "neither, so bf16 would run emulated, slower than float32",
                        "use --precision auto or float32")
    return "float32" if choice == "auto" else choice


def core_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def set_threads(threads: int | None = None) -> int:
    """Set torch's (and numba's) thread count: `threads`, clamped to the cores available (with a warning), or
    all of them by default. More threads than cores only makes the threads wait for each other."""
    cores = core_count()
    if threads is None:
        threads = cores
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    if threads > cores:
        warnings.warn(f"--threads {threads} is more than the {cores} CPU cores available here; using {cores}",
                      stacklevel=2)
        threads = cores
    import torch

    torch.set_num_threads(threads)
    if "numba" in sys.modules or _numba_importable():
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except Exception:   # numba is optional: the scan falls back to the portable path without it
            pass
    return threads


def _numba_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None
