"""The compiled loop of the numba CPU fast path (imported only by scan_numba, only when it runs: imports numba).

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) B_t ,   y_t = C_t·h_t           per (batch, channel), n states

Vectorised over the n states, parallel over (batch, channel group), in blocks of time so that B_t, C_t stay in
cache while a group's channels pass over them. exp is 2^k · p(r) (Cody–Waite reduction, degree-7 Taylor
polynomial, ≤ 2 ulp in float32), written so LLVM vectorises it (libm's expf would not be). Its argument is clamped
to [-87, 88]: exp(-87) ≈ 1.6e-38 is far below float32 resolution of any state and keeps denormals (10-100x slower
arithmetic) out of the loop.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import prange, types
from numba.core.extending import intrinsic

f32 = numba.float32
i32 = numba.int32
LOG2E = f32(1.4426950408889634)
LN2_HI = f32(0.693145751953125)       # ln 2 = LN2_HI + LN2_LO; LN2_HI has few mantissa bits, so k·LN2_HI is exact
LN2_LO = f32(1.428606765330187e-06)
X_MIN, X_MAX = f32(-87.0), f32(88.0)
C2, C3, C4, C5, C6, C7 = f32(1 / 2), f32(1 / 6), f32(1 / 24), f32(1 / 120), f32(1 / 720), f32(1 / 5040)
ONE = f32(1.0)
ROUND_OFFSET = f32(128.5)            # x·log2e + 128.5 > 0 on [X_MIN, X_MAX]: truncation = round(x·log2e) + 128


@intrinsic
def _bits_to_f32(typingctx, x):
    """Reinterpret an int32 bit pattern as float32 (a bitcast: no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@numba.njit(inline="always", fastmath=True, cache=True)
def fast_exp(x):
    x = min(max(x, X_MIN), X_MAX)
    j = i32(x * LOG2E + ROUND_OFFSET)                                 # k + 128, k = round(x / ln 2)
    k = f32(j - i32(128))
    r = x - k * LN2_HI - k * LN2_LO                                   # x = k ln2 + r, |r| ≤ ln2 / 2
    p = ONE + r * (ONE + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))))))
    return p * _bits_to_f32((j - i32(1)) << i32(23))                  # · 2^k: biased exponent k + 127


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def scan_chunk(dt, du, A, Bt, Ct, h, y, groups, block):
    """dt = Δ, du = Δ u, y: (b, d, T); A: (d, n); Bt, Ct: (b, T, n); h: (b, d, n) state, updated in place."""
    nb, nd, T = dt.shape
    n = A.shape[1]
    per = (nd + groups - 1) // groups
    for job in prange(nb * groups):
        bi = job // groups
        e0 = (job % groups) * per
        e1 = min(nd, e0 + per)
        for t0 in range(0, T, block):
            t1 = min(T, t0 + block)
            for e in range(e0, e1):
                hh = h[bi, e]
                Ae = A[e]
                for t in range(t0, t1):
                    d_t = dt[bi, e, t]
                    x_t = du[bi, e, t]
                    Bv = Bt[bi, t]
                    Cv = Ct[bi, t]
                    acc = f32(0.0)
                    for k in range(n):
                        # h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t ;  y_t = C_t·h_t
                        hk = fast_exp(d_t * Ae[k]) * hh[k] + x_t * Bv[k]
                        hh[k] = hk
                        acc += hk * Cv[k]
                    y[bi, e, t] = acc
