"""The compiled loop of the numba CPU fast path (imported only by scan_numba, only when it runs: imports numba).

    Δ_t = softplus(δ_t + bias)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) B_t ,   y_t = (C_t·h_t + D u_t) · SiLU(z_t)   per (batch, channel)

Everything per (t, channel) is done inside the loop (Δ, D·u, the gate), reading δ, u, z where they lie (any
strides: x and z are halves of one projection): done by torch instead, each is a pass over (b, d, l) tensors
(BENCHMARKS.md). softplus needs a logarithm: fast_log below, since libm's logf would not vectorise.

Vectorised over the n states, parallel over (batch, channel group), in blocks of time so that B_t, C_t stay in
cache while a group's channels pass over them. exp is 2^k · p(r) (Cody–Waite reduction, degree-7 Taylor
polynomial, ≤ 2 ulp in float32), written so LLVM vectorises it (libm's expf would not be). Its argument is clamped
to [-87, 88]: exp(-87) ≈ 1.6e-38 is far below float32 resolution of any state and keeps denormals (10-100x slower
arithmetic) out of the loop.
"""

from __future__ import annotations

import numba
import numpy as np
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
LN2, SQRT2, HALF, TWO = f32(0.6931471805599453), f32(1.4142135623730951), f32(0.5), f32(2.0)
L3, L5, L7, L9, L11 = f32(2 / 3), f32(2 / 5), f32(2 / 7), f32(2 / 9), f32(2 / 11)


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


@intrinsic
def _f32_to_bits(typingctx, x):
    """The int32 bit pattern of a float32 (a bitcast: no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@numba.njit(inline="always", fastmath=True, cache=True)
def fast_log(m):
    """log(m) for normal m > 0: m = 2^e · f with f in [√½, √2), log f = 2 atanh(s), s = (f-1)/(f+1), |s| ≤ 0.172,
    by its series to s^11 (error < 1e-9 relative: below float32 resolution). Vectorisable, unlike libm's logf."""
    bits = _f32_to_bits(m)
    e = ((bits >> i32(23)) & i32(255)) - i32(127)
    f = _bits_to_f32((bits & i32(0x7FFFFF)) | i32(0x3F800000))        # mantissa, [1, 2)
    big = f > SQRT2
    f = f * HALF if big else f
    e = e + i32(1) if big else e
    s = (f - ONE) / (f + ONE)
    s2 = s * s
    p = s * (TWO + s2 * (L3 + s2 * (L5 + s2 * (L7 + s2 * (L9 + s2 * L11)))))
    return f32(e) * LN2 + p


@numba.njit(inline="always", fastmath=True, cache=True)
def softplus(v):
    """log(1 + e^v), = v above 20 (F.softplus's threshold); log1p(w) ≈ w - w²/2 for tiny w = e^v, where 1 + w
    would round away w's digits."""
    w = fast_exp(min(v, f32(20.0)))
    lg = fast_log(ONE + w)
    lg = w - HALF * w * w if w < f32(1e-4) else lg
    return v if v > f32(20.0) else lg


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def scan_fused(delta, u, z, bias, D, A, Bt, Ct, h, y, use_softplus, use_z, groups, block):
    """delta, u, z (any strides), y: (b, d, T); bias, D: (d,); A: (d, n); Bt, Ct: (b, T, n); h: (b, d, n) state,
    updated in place. z is read only when use_z.

    Per channel and block of time steps: Δ, Δu and the gate first, vectorised along time into small buffers;
    then the recurrence, vectorised over the n states (one step's n values are one or two SIMD registers), with
    nothing scalar in its loop but C·h's sum; then y = (C·h + D u)·gate, vectorised along time again."""
    nb, nd, T = u.shape
    n = A.shape[1]
    per = (nd + groups - 1) // groups
    for job in prange(nb * groups):
        bi = job // groups
        e0 = (job % groups) * per
        e1 = min(nd, e0 + per)
        dl = np.empty(block, np.float32)       # Δ_t
        xl = np.empty(block, np.float32)       # Δ_t u_t
        yl = np.empty(block, np.float32)       # C_t·h_t
        hl = np.empty(n, np.float32)
        al = np.empty(n, np.float32)
        for t0 in range(0, T, block):
            t1 = min(T, t0 + block)
            m = t1 - t0
            for e in range(e0, e1):
                be = bias[e]
                for i in range(m):
                    v = delta[bi, e, t0 + i] + be
                    v = softplus(v) if use_softplus else v
                    dl[i] = v
                    xl[i] = v * u[bi, e, t0 + i]
                for k in range(n):
                    hl[k] = h[bi, e, k]
                    al[k] = A[e, k]
                for i in range(m):
                    d_t = dl[i]
                    x_t = xl[i]
                    acc = f32(0.0)
                    for k in range(n):
                        # h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t ;  y_t = C_t·h_t
                        hk = fast_exp(d_t * al[k]) * hl[k] + x_t * Bt[bi, t0 + i, k]
                        hl[k] = hk
                        acc += hk * Ct[bi, t0 + i, k]
                    yl[i] = acc
                for k in range(n):
                    h[bi, e, k] = hl[k]
                De = D[e]
                if use_z:
                    for i in range(m):
                        zt = z[bi, e, t0 + i]
                        y[bi, e, t0 + i] = (yl[i] + De * u[bi, e, t0 + i]) * (zt / (ONE + fast_exp(-zt)))
                else:
                    for i in range(m):
                        y[bi, e, t0 + i] = yl[i] + De * u[bi, e, t0 + i]


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv1d_silu(x, w, bias, out):
    """out = SiLU(bias + causal depthwise conv1d(x)): x (b, d, T) any strides, w (d, W), bias (d,), out (b, d, T).
    One pass per channel instead of W shifted multiply-adds, a bias fill and a SiLU pass over (b, d, T)."""
    nb, nd, T = x.shape
    width = w.shape[1]
    for job in prange(nb * nd):
        bi = job // nd
        e = job % nd
        be = bias[e]
        for t in range(T):
            acc = be
            for k in range(width):
                s = t - (width - 1) + k                # tap k sees x[t - (W-1-k)]
                if s >= 0:
                    acc += w[e, k] * x[bi, e, s]
            out[bi, e, t] = acc / (ONE + fast_exp(-acc))
