"""`selective_scan`: one function, several backends (mamba-ssm `selective_scan_fn` semantics).

Shapes (b batch, d channels, l length, n state size):
    u, delta, z: (b, d, l)   A: (d, n) real   B, C: (b, n, l)   D, delta_bias: (d,)   -> y: (b, d, l), u's dtype
    Δ = softplus(delta + delta_bias) (softplus only with delta_softplus)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t ,  h_{-1} = 0        (per b, d; h_t has n entries)
    y_t = C_t·h_t + D u_t ;  y = y ⊙ SiLU(z)

Backends:
    portable  pure PyTorch, autograd, any device, streams over l (scan_portable.py)
    cuda      mamba-ssm's compiled selective_scan_cuda, only if it imports (scan_cuda.py)
    numba     CPU inference fast path (no autograd), only if numba imports (scan_numba.py)
    triton    umamba.mamba.scan_triton (GPU, optional)
    auto      umamba.mamba.backends (Triton only on compute capability >= 7.0; the reason is kept)
The environment variable UMAMBA_SCAN_BACKEND overrides `auto`; an explicit `backend=` argument overrides both.
"""

from __future__ import annotations

import importlib
import os

import torch

from umamba.errors import UserError
from umamba.mamba import backends

BACKENDS = ("portable", "cuda", "numba", "triton")
ENV_VAR = backends.SCAN_ENV
TRITON_MAX_STATES = backends.TRITON_MAX_STATES


# ----------------------------------------------------------------------------------------------- availability
# Probed once per process (umamba.mamba.backends.probe), the import errors kept for the messages below.
def _cuda_available() -> bool:
    return backends.probe("mamba-ssm").ok


def _numba_available() -> bool:
    from umamba.mamba import scan_numba
    return backends.probe("numba").ok and scan_numba.is_available()


def _triton_module():
    """umamba.mamba.scan_triton when it imports, else None."""
    return importlib.import_module("umamba.mamba.scan_triton") if backends.probe("triton-scan").ok else None


def available_backends() -> dict[str, bool]:
    """{backend: importable on this machine} (a backend may still need tensors on a particular device)."""
    return {"portable": True, "cuda": _cuda_available(), "numba": _numba_available(),
            "triton": _triton_module() is not None}


# ------------------------------------------------------------------------------------------------- selection
def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def scan_backend(backend: str, u: torch.Tensor, needs_grad: bool, n: int = 16) -> str:
    """Explicit `backend` > UMAMBA_SCAN_BACKEND > the auto rule (umamba.mamba.backends.resolve_backend, which
    also says why) for a scan of `n` states; checks that a forced choice can run here."""
    choice = (backend or "auto").strip().lower()
    if choice == "auto":
        choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        source = f"environment variable {ENV_VAR}"
    else:
        source = "backend argument"
    if choice == "auto":
        b, d, l = u.shape
        return backends.resolve_backend("scan", u.device, training=needs_grad, dtype=u.dtype, size=d * l,
                                        states=n).backend
    if choice not in BACKENDS:
        raise UserError(f"unknown selective-scan backend {choice!r} (from the {source})",
                        f"use one of: auto, {', '.join(BACKENDS)}")
    if choice == "cuda":
        if not _cuda_available():
            raise UserError("the 'cuda' selective-scan backend was requested but mamba-ssm's selective_scan_cuda "
                            f"extension does not import on this machine ({backends.probe('mamba-ssm').error})",
                            f"install mamba-ssm built for this torch (umamba build-kernels), or unset {ENV_VAR} "
                            "/ use backend='auto' to run the portable scan")
        if not u.is_cuda:
            raise UserError(f"the 'cuda' selective-scan backend needs CUDA tensors, got tensors on {u.device}",
                            "move the module/tensors to a CUDA device or use backend='auto'")
    elif choice == "numba":
        if not _numba_available():
            raise UserError("the 'numba' selective-scan backend was requested but numba is not usable here "
                            f"({backends.probe('numba').error or 'its loop failed to compile'})",
                            "pip install numba, or use backend='auto'")
        if u.device.type != "cpu":
            raise UserError(f"the 'numba' selective-scan backend runs on CPU tensors only, got {u.device}",
                            "use backend='auto'")
        if needs_grad:
            raise UserError("the 'numba' selective-scan backend is inference-only (no autograd)",
                            "run under torch.no_grad() or use backend='portable'")
        if u.dtype == torch.float64:
            raise UserError("the 'numba' selective-scan backend computes in float32; got float64 inputs",
                            "use backend='portable' for a float64 scan")
    elif choice == "triton":
        if _triton_module() is None:
            raise UserError("the 'triton' selective-scan backend was requested but umamba.mamba.scan_triton "
                            f"does not import: {backends.probe('triton-scan').error}",
                            "pip install triton, or use backend='auto'")
        if n > TRITON_MAX_STATES:
            raise UserError(f"the 'triton' selective-scan backend takes up to {TRITON_MAX_STATES} states, got {n}",
                            "use backend='auto' (mamba-ssm's kernel or the portable scan)")
        usable, why = backends.triton_usable(u.device, "triton-scan")
        if not usable and not _triton_module().interpreting():
            raise UserError(f"the 'triton' selective-scan backend cannot run on {u.device}: {why}",
                            "use backend='auto' (mamba-ssm's kernel or the portable scan)")
    return choice


# ------------------------------------------------------------------------------------------------ validation
def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def check_scan_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise UserError (a ValueError) naming the expected shapes, before torch fails deep inside."""
    expected = ("expected u, delta, z: (batch, d, length); A: (d, n) real; B, C: (batch, n, length); "
                "D, delta_bias: (d,)")
    got = (f"got u {_shape(u)}, delta {_shape(delta)}, A {_shape(A)}, B {_shape(B)}, C {_shape(C)}"
           + (f", D {_shape(D)}" if D is not None else "") + (f", z {_shape(z)}" if z is not None else "")
           + (f", delta_bias {_shape(delta_bias)}" if delta_bias is not None else ""))
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("delta_bias", delta_bias)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise UserError(f"selective_scan: {name} must be a torch.Tensor, got {type(t).__name__}")
    ok = u.dim() == 3 and delta.dim() == 3 and A.dim() == 2 and B.dim() == 3 and C.dim() == 3
    if ok:
        b, d, l = u.shape
        n = A.shape[1]
        ok = (tuple(delta.shape) == (b, d, l) and A.shape[0] == d and tuple(B.shape) == (b, n, l)
              and tuple(C.shape) == (b, n, l)
              and (D is None or tuple(D.shape) == (d,)) and (z is None or tuple(z.shape) == (b, d, l))
              and (delta_bias is None or tuple(delta_bias.shape) == (d,)))
    if not ok:
        raise UserError(f"selective_scan: wrong input shapes; {expected}; {got}")
    if A.is_complex() or not A.is_floating_point():
        raise UserError(f"selective_scan: A must be a real floating-point tensor, got {A.dtype}")
    if not u.is_floating_point():
        raise UserError(f"selective_scan: u must be floating point, got {u.dtype}")
    if l == 0 or n == 0:
        raise UserError(f"selective_scan: length and state size must be ≥ 1; {got}")
    devices = {t.device for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if len(devices) > 1:
        raise UserError(f"selective_scan: all tensors must be on one device, got {sorted(map(str, devices))}")


# -------------------------------------------------------------------------------------------------- dispatch
def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto"):
    """mamba-ssm `selective_scan_fn` semantics (see the module docstring); returns y (b, d, l) in u's dtype."""
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    needs_grad = _needs_grad(u, delta, A, B, C, D, z, delta_bias)
    name = scan_backend(backend, u, needs_grad, A.shape[1])
    if name == "cuda":
        from umamba.mamba.scan_cuda import selective_scan_cuda
        return selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if name == "numba":
        from umamba.mamba.scan_numba import NumbaUnavailable, selective_scan_numba
        try:
            return selective_scan_numba(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        except NumbaUnavailable as exc:   # auto falls back to the portable scan; a forced choice says why
            if (backend or "auto").strip().lower() == "numba" or os.environ.get(ENV_VAR, "").strip().lower() == "numba":
                raise UserError(f"the 'numba' selective-scan backend does not work here: {exc}",
                                "use backend='auto' or 'portable'") from exc
            name = "portable"
    if name == "triton":
        return _triton_module().selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    from umamba.mamba.scan_portable import selective_scan_portable
    return selective_scan_portable(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
