"""Shared Triton pieces of the chunked selective scan (see scan_triton.py for the algorithm and the launches).

Notation (per batch b, channel d, state n; all sums and states in ACC = float32, or float64 for float64 inputs):
    δ_t = softplus(delta_t + bias)            a_t = exp(A δ_t)            x_t = δ_t u_t B_t
    h_t = a_t h_{t-1} + x_t                   y_t = Σ_n C_t h_t + D u_t   out_t = y_t · SiLU(z_t)
Backward, with dy_t = dout_t · SiLU(z_t) and g_t = dy_t C_t, the adjoint state
    λ_t = g_t + a_{t+1} λ_{t+1}
gives  dB_t = Σ_d λ_t δ_t u_t,  dC_t = Σ_d dy_t h_t,  du_t = δ_t Σ_n λ_t B_t + D dy_t,
       dδ_t = u_t Σ_n λ_t B_t + Σ_n λ_t A a_t h_{t-1},  dA = Σ_{b,t} λ_t δ_t a_t h_{t-1},
where a_t h_{t-1} = h_t − x_t (no shift along t needed).

This file holds what the per-chunk kernels (scan_triton_lane_kernels.py) build on: the accumulation dtype,
softplus, and the short scan across chunks.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2):  h -> a2 (a1 h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _acc(x, F64: tl.constexpr):
    if F64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


@triton.jit
def _softplus(v):
    # log(1 + e^v), identity above 20 like mamba-ssm. log1p(e) = log(w) · e / (w - 1) with w = 1 + e rounded
    # keeps full precision for tiny e (the rounding of w cancels), in float32 and float64 alike.
    e = tl.exp(v)
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
    return tl.where(v > 20.0, v, log1p)


@triton.jit
def chunk_scan_kernel(S_ptr, dsum_ptr, A_ptr, E_ptr, d, n, nc,
                      REVERSE: tl.constexpr, F64: tl.constexpr, LB: tl.constexpr, CB: tl.constexpr):
    """Across chunks, per lane (d, n):  E_c = exp(A Δ_c) E_{c∓1} + S_c  (c ascending, or descending if REVERSE).

    Forward: E_c is the state after chunk c.  Backward: E_c = a_{t0} λ_{t0} at the first token t0 of chunk c.
    Tiles of CB chunks are scanned in registers; the carry links the tiles.
    """
    bi = tl.program_id(0)
    lanes = tl.program_id(1) * LB + tl.arange(0, LB)                       # lane = d_index * n + n_index
    mask_l = lanes < d * n
    A = _acc(tl.load(A_ptr + lanes, mask=mask_l, other=0.0), F64)         # A contiguous (d, n)
    carry = A * 0.0
    jj = tl.arange(0, CB)
    for j0 in range(0, nc, CB):
        j = j0 + jj
        mask_c = j < nc
        if REVERSE:
            c = nc - 1 - j
        else:
            c = j
        m2 = mask_l[:, None] & mask_c[None, :]
        S = _acc(tl.load(S_ptr + (bi * nc + c[None, :]) * (d * n) + lanes[:, None], mask=m2, other=0.0), F64)
        dsum = _acc(tl.load(dsum_ptr + (bi * nc + c[None, :]) * d + lanes[:, None] // n, mask=m2, other=0.0),
                    F64)
        a = tl.exp(A[:, None] * dsum)                                      # 1 where masked
        P, X = tl.associative_scan((a, S), 1, _combine)
        E = X + P * carry[:, None]
        tl.store(E_ptr + (bi * nc + c[None, :]) * (d * n) + lanes[:, None], E, mask=m2)
        carry = tl.sum(tl.where(jj[None, :] == CB - 1, E, 0.0), axis=1)   # masked tail keeps the carry
