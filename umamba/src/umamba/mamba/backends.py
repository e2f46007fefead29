"""Which kernel runs each part of a Mamba layer on a device, and why: one rule for the scan, the conv and the norm.

    op     where                  auto takes the first that applies
    scan   CUDA                   triton (n <= 16) where d·l >= 2^23 or mamba-ssm's kernel does not import; mamba-ssm's
                                  kernel (`cuda`); triton; portable
           CPU, inference         numba (float32/16/bf16) when it imports; portable
           elsewhere / training   portable
    conv   CUDA                   triton; causal-conv1d; torch          CPU: cpu (shifted multiply-adds)
    norm   CUDA                   triton (C <= its MAX_CHANNELS); torch
"Triton" needs a CUDA device of compute capability >= 7.0: Triton 3 compiles for Volta (sm_70) and newer only,
and Linux CUDA wheels of torch always bring triton, so an importable triton says nothing about the GPU (on a
GTX 1080 Ti, sm_61, its kernels fail to compile). Under Triton's interpreter (TRITON_INTERPRET=1, the tests) the
norm runs in Triton on any device.

Each optional import is probed once per process (`probe`), and its error is kept: `umamba doctor` shows it, and a
forced backend (UMAMBA_SCAN_BACKEND, UMAMBA_CONV_BACKEND, backend=) that cannot run says why.
`resolve_backend` returns the choice and the reason; the dispatchers (scan.py, conv.py, nets/mamba_layer.py) and
`umamba doctor` all ask it, so what doctor prints is what runs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from dataclasses import asdict, dataclass

import torch

TRITON_MIN_CAPABILITY = (7, 0)
# Triton ("lane" kernels) vs mamba-ssm's scan (H200, float32, b = 2, BENCHMARKS.md GPU section), forward+backward:
# faster wherever a channel's sequence times the width is large (d·l = 2^27 at Enc stage 0: 3.2x; 2^25 at stage 1:
# 1.6x; 2^23 at stage 2, d 256, l 32,768: 1.7x, the whole layer 1.16-1.28x), slower below (d 128, l 32,768: 0.96x;
# stage 3, d 512, l 4,096: 0.55x; the chunked passes' launches dominate short sequences). Hence:
TRITON_SCAN_MIN_SIZE = 1 << 23
TRITON_MAX_STATES = 16  # the Triton scan keeps a channel's states in registers; more would spill (scan_triton.py)
SCAN_ENV, CONV_ENV = "UMAMBA_SCAN_BACKEND", "UMAMBA_CONV_BACKEND"
OPS = ("scan", "conv", "norm")

# optional kernel -> the module whose import decides it
_MODULES = {"triton-scan": "umamba.mamba.scan_triton", "triton-conv": "umamba.mamba.conv_triton",
            "triton-norm": "umamba.nets.channel_norm_triton", "mamba-ssm": "selective_scan_cuda",
            "triton-instnorm": "umamba.nets.instance_norm_act_triton",
            "causal-conv1d": "causal_conv1d", "numba": "numba"}


@dataclass(frozen=True)
class Probe:
    ok: bool
    error: str | None = None   # why not: not installed, or the import's exception


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@functools.cache
def probe(name: str) -> Probe:
    """Whether the optional kernel `name` (a key of _MODULES) imports here; tried once per process."""
    module = _MODULES[name]
    try:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return Probe(False, f"{module.split('.')[0]} is not installed")
        importlib.import_module(module)
    except Exception as exc:  # a wheel built for another torch/CUDA/Python fails here, in any way
        return Probe(False, f"{module} does not import ({type(exc).__name__}: {exc})")
    if name == "numba":
        from umamba.mamba import scan_numba
        if not scan_numba.is_available():
            return Probe(False, "numba imports but its scan loop failed to compile here")
    return Probe(True)


@functools.cache
def _cuda_capability(index: int) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(index))


def device_capability(device: torch.device | str) -> tuple[int, int] | None:
    """The compute capability of a CUDA device; None for any other device (and the test hook for simulated GPUs)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return _cuda_capability(device.index if device.index is not None else torch.cuda.current_device())


def triton_usable(device: torch.device | str, kernel: str) -> tuple[bool, str]:
    """(whether the Triton kernel `kernel` can run on `device`, the reason)."""
    capability = device_capability(device)
    if capability is None:
        return False, f"Triton runs on CUDA devices, not on {torch.device(device).type}"
    sm = f"sm_{capability[0]}{capability[1]}"
    if tuple(capability) < TRITON_MIN_CAPABILITY:
        return False, f"{sm} is below the compute capability 7.0 Triton needs"
    found = probe(kernel)
    return (True, f"Triton on {sm}") if found.ok else (False, f"Triton: {found.error}")


def _forced(env: str) -> str | None:
    value = os.environ.get(env, "").strip().lower()
    return value if value and value != "auto" else None


def resolve_backend(op: str, device: torch.device | str, training: bool = False, dtype: torch.dtype = torch.float32,
                    size: int | None = None, channels: int | None = None, states: int = 16) -> Choice:
    """The backend `auto` (or the UMAMBA_*_BACKEND variable) gives `op` on `device`, with the reason.

    scan: `training` (a gradient is needed), `dtype`, `size` = d·l (None: the rule for long sequences) and
    `states` (n, U-Mamba's 16; the Triton scan takes up to TRITON_MAX_STATES);
    norm: `channels` (None: assume it fits). The choice of a variable is returned as is; scan.py / conv.py check
    that it can run when it is used."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if op == "scan":
        return _scan(device, training, dtype, size, states)
    if op == "conv":
        return _conv(device)
    return _norm(device, channels)


def _scan(device, training: bool, dtype: torch.dtype, size: int | None, states: int) -> Choice:
    forced = _forced(SCAN_ENV)
    if forced:
        return Choice(forced, f"{SCAN_ENV}={forced}")
    why = []
    if device_capability(device) is not None:
        triton_ok, triton_why = triton_usable(device, "triton-scan")
        if triton_ok and states > TRITON_MAX_STATES:
            triton_ok, triton_why = False, f"the Triton scan takes up to {TRITON_MAX_STATES} states, not {states}"
        cuda = probe("mamba-ssm")
        if triton_ok and not cuda.ok:
            return Choice("triton", f"{triton_why}; mamba-ssm's kernel: {cuda.error}")
        if triton_ok and (size is None or size >= TRITON_SCAN_MIN_SIZE):
            where = "for d·l >= 2^23 (mamba-ssm's kernel below)" if size is None else f"d·l = {size} >= 2^23"
            return Choice("triton", f"{triton_why}, {where}")
        if cuda.ok:
            return Choice("cuda", "mamba-ssm's kernel" + (f" (d·l = {size} < 2^23)" if triton_ok else
                                                          f"; {triton_why}"))
        why += [triton_why, f"mamba-ssm's kernel: {cuda.error}"]
    elif torch.device(device).type == "cpu":
        numba = probe("numba")
        if training:
            why.append("training needs autograd (numba is inference-only)")
        elif dtype == torch.float64:
            why.append("float64 (numba computes in float32)")
        elif numba.ok:
            return Choice("numba", "CPU inference, numba imports")
        else:
            why.append(f"numba: {numba.error} (pip install numba for a faster CPU inference)")
    return Choice("portable", "; ".join(why) or f"no compiled kernel for {torch.device(device).type}")


def _conv(device) -> Choice:
    forced = _forced(CONV_ENV)
    if forced:
        return Choice(forced, f"{CONV_ENV}={forced}")
    if device_capability(device) is None:
        kind = torch.device(device).type
        return Choice("cpu", "shifted multiply-adds on the CPU") if kind == "cpu" else Choice("torch", kind)
    triton_ok, triton_why = triton_usable(device, "triton-conv")
    if triton_ok:
        return Choice("triton", triton_why)
    causal = probe("causal-conv1d")
    if causal.ok:
        return Choice("causal-conv1d", f"causal-conv1d's kernel; {triton_why}")
    return Choice("torch", f"{triton_why}; causal-conv1d: {causal.error}")


def _norm(device, channels: int | None) -> Choice:
    if os.environ.get("TRITON_INTERPRET") == "1" and probe("triton-norm").ok:
        usable, why = True, "Triton's interpreter (TRITON_INTERPRET=1)"
    else:
        usable, why = triton_usable(device, "triton-norm")
    if usable:
        limit = importlib.import_module(_MODULES["triton-norm"]).MAX_CHANNELS
        if channels is None or channels <= limit:
            return Choice("triton", why)
        why = f"{channels} channels > the Triton norm's {limit}"
    return Choice("torch", why)


def report(device: torch.device | str) -> dict:
    """{"training": {op: Choice}, "inference": {op: Choice}} for `device` (what `umamba doctor` prints)."""
    return {mode: {op: resolve_backend(op, device, training=mode == "training").to_dict() for op in OPS}
            for mode in ("training", "inference")}
