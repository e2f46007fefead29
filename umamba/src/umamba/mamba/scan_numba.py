"""CPU inference fast path: the scan as one compiled loop (numba), no autograd, float32 state.

Used by `auto` only for CPU tensors that need no gradient, when numba imports (a wheel: nothing is compiled at
install time; the loop is JIT-compiled on first use and cached on disk). Δ, D·u and the SiLU(z) gate are done by
torch (vectorised); the compiled loop (scan_numba_kernel.py) does only what torch cannot do without materialising
(b, d, l, n):  h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t ,  y_t = C_t·h_t.
The sequence is fed in chunks of SEQ_CHUNK steps, the state carried between them, so temporaries stay small.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from umamba.mamba.scan_portable import fast_softplus

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

        from umamba.mamba.scan_numba_kernel import scan_chunk

        one = np.zeros((1, 1, 1), np.float32)
        scan_chunk(one, one, np.zeros((1, 1), np.float32), one, one, one.copy(), one.copy(), 1, 1)  # compiles
        return scan_chunk
    except Exception as exc:   # e.g. an llvmlite/numba mismatch, or no writable cache directory
        _broken = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise NumbaUnavailable(_broken) from exc


@torch.no_grad()
def selective_scan_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Same contract as `umamba.mamba.selective_scan` for CPU tensors, without autograd."""
    import numba

    scan_chunk = _kernel()

    b, d, l = u.shape
    n = A.shape[1]
    f32 = torch.float32
    As = A.to(f32).contiguous()
    h = torch.zeros((b, d, n), dtype=f32)
    out = torch.empty((b, d, l), dtype=u.dtype)
    threads = numba.get_num_threads()
    groups = max(1, min(d, (4 * threads + b - 1) // b))      # ≥ 4 jobs per thread when possible
    bias = delta_bias.to(f32)[:, None] if delta_bias is not None else None
    for t0 in range(0, l, SEQ_CHUNK):
        t1 = min(l, t0 + SEQ_CHUNK)
        uc = u[..., t0:t1].to(f32)
        dt = delta[..., t0:t1].to(f32)
        if bias is not None:
            dt = dt + bias
        if delta_softplus:
            dt = fast_softplus(dt)
        dt = dt.contiguous()
        du = (dt * uc).contiguous()
        Bt = B[..., t0:t1].to(f32).transpose(1, 2).contiguous()          # (b, T, n)
        Ct = C[..., t0:t1].to(f32).transpose(1, 2).contiguous()          # (b, T, n)
        y = torch.empty((b, d, t1 - t0), dtype=f32)
        # jobs handed out one at a time: on a busy machine a descheduled thread does not hold up the others
        previous = numba.set_parallel_chunksize(1)
        try:
            scan_chunk(dt.numpy(), du.numpy(), As.numpy(), Bt.numpy(), Ct.numpy(), h.numpy(), y.numpy(), groups,
                       TIME_BLOCK)
        finally:
            numba.set_parallel_chunksize(previous)
        if D is not None:
            y.addcmul_(uc, D.to(f32)[:, None])                           # + D u
        if z is not None:
            y.mul_(F.silu(z[..., t0:t1].to(f32)))                         # ⊙ SiLU(z)
        out[..., t0:t1] = y
    return out
