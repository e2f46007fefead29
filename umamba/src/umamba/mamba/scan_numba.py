"""CPU inference fast path: the scan as one compiled loop (numba), no autograd, float32 state.

Used by `auto` only for CPU tensors that need no gradient, when numba imports (a wheel: nothing is compiled at
install time; the loop is JIT-compiled on first use and cached on disk). The compiled loop (scan_numba_kernel.py)
does the whole scan per (t, channel): Δ = softplus(δ + bias), the state update, C·h + D u and the SiLU(z) gate,
reading u, δ and z where they lie; torch only transposes B and C to (b, T, n) so that each step reads its n
values contiguously. The sequence is fed in chunks of SEQ_CHUNK steps, the state carried between them, so those
transposed copies stay small.
"""

from __future__ import annotations

import importlib.util

import torch

SEQ_CHUNK = 1 << 16   # steps per call of the compiled loop (bounds the Δ / transposed B, C temporaries)
TIME_BLOCK = 256      # steps per cache block inside the loop


_broken: str | None = None   # why the compiled loop could not be built here (then the path is unavailable)


class NumbaUnavailable(RuntimeError):
    """numba is installed but the loop does not import or compile on this machine."""


def is_available() -> bool:
    return _broken is None and importlib.util.find_spec("numba") is not None


def _kernel():
    """The compiled loop, built (or loaded from numba's cache) on first use; NumbaUnavailable if that fails."""
    global _broken
    if _broken is not None:
        raise NumbaUnavailable(_broken)
    try:
        import numpy as np

        from umamba.mamba.scan_numba_kernel import scan_fused

        one, v, a = np.zeros((1, 1, 1), np.float32), np.zeros(1, np.float32), np.zeros((1, 1), np.float32)
        scan_fused(one, one, one, v, v, a, one, one, one.copy(), one.copy(), True, True, 1, 1)  # compiles
        return scan_fused
    except Exception as exc:   # e.g. an llvmlite/numba mismatch, or no writable cache directory
        _broken = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise NumbaUnavailable(_broken) from exc


@torch.no_grad()
def selective_scan_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Same contract as `umamba.mamba.selective_scan` for CPU tensors, without autograd."""
    import numba

    scan = _kernel()

    b, d, l = u.shape
    n = A.shape[1]
    f32 = torch.float32
    As = A.to(f32).contiguous()
    bias = (delta_bias.to(f32) if delta_bias is not None else torch.zeros(d)).contiguous()
    Dv = (D.to(f32) if D is not None else torch.zeros(d)).contiguous()
    h = torch.zeros((b, d, n), dtype=f32)
    out = torch.empty((b, d, l), dtype=u.dtype)
    direct = out.dtype == f32                                 # the loop writes into `out` itself
    threads = numba.get_num_threads()
    groups = max(1, min(d, (4 * threads + b - 1) // b))      # ≥ 4 jobs per thread when possible
    for t0 in range(0, l, SEQ_CHUNK):
        t1 = min(l, t0 + SEQ_CHUNK)
        uc, dc = _f32_view(u[..., t0:t1]), _f32_view(delta[..., t0:t1])   # (b, d, T), any strides
        zc = _f32_view(z[..., t0:t1]) if z is not None else uc
        Bt = B[..., t0:t1].to(f32).transpose(1, 2).contiguous()          # (b, T, n)
        Ct = C[..., t0:t1].to(f32).transpose(1, 2).contiguous()          # (b, T, n)
        y = out[..., t0:t1] if direct else torch.empty((b, d, t1 - t0), dtype=f32)   # written in place
        # jobs handed out one at a time: on a busy machine a descheduled thread does not hold up the others
        previous = numba.set_parallel_chunksize(1)
        try:
            scan(dc.numpy(), uc.numpy(), zc.numpy(), bias.numpy(), Dv.numpy(), As.numpy(), Bt.numpy(), Ct.numpy(),
                 h.numpy(), y.numpy(), bool(delta_softplus), z is not None, groups, TIME_BLOCK)
        finally:
            numba.set_parallel_chunksize(previous)
        if not direct:
            out[..., t0:t1] = y
    return out


def _f32_view(t: torch.Tensor) -> torch.Tensor:
    """t itself when it is float32 with strides numpy can take (no copy), else a float32 copy."""
    if t.dtype == torch.float32 and all(s >= 0 for s in t.stride()):
        return t
    return t.to(torch.float32).contiguous()
