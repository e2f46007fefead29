"""Per-chunk kernels of the Triton scan that keep each channel's states inside one thread ("lane" kernels).

Same chunk algorithm and notation as scan_triton_kernels.py. A program owns DB channels of one batch element and
one chunk of the sequence; its state is a (DB, G, K) block with n = g·K + k (NP = G·K states, K = 4). Triton has
no layout control outside its experimental Gluon dialect (which its interpreter, used by CI, cannot run), so the
shapes are chosen such that its layout inference puts what a step needs into one thread:

- per-channel inputs (δ, u, z, dout) are loaded as (DB, GL, 16) blocks, 16 steps of one channel in one thread
  (64 contiguous bytes: whole 32-byte sectors; 4-step blocks used half sectors and ran memory-bound), and taken
  apart with reshape + permute + split, which stay inside the thread — no shuffle, no shared memory (taking one
  step out of a (DB, T) block with a one-hot sum across threads instead is issue-bound: about 2x slower);
- forward kernels (GL = 1, DB = 32 · warps): a channel's 16 states in one thread, B_t and C_t held whole by every
  thread (the same addresses across a warp: one transaction); no value crosses threads;
- gradient kernel (GL = G = 4, DB = 8 · warps): the states of a channel spread over 4 threads (GL > 1 repeats the
  per-channel blocks with stride 0, which steers the layout), so that a thread holds 4 states: 16 states per thread
  needed more than 255 registers and spilled. The sums over channels (dB_t, dC_t) and over the 4 threads of a
  channel (y, Σ_n λB, Σ_n qA) are warp shuffles; dB, dC are added atomically (channel blocks share them).

The state is advanced one step at a time (h_t = a_t h_{t-1} + x_t, a_t = 2^(A log2(e) δ_t)); parallelism comes
from the many (batch, channel block, chunk) programs. The forward keeps the state every SEG = 16 steps, (b, l/16,
d, n); the backward walks each 16-step segment backwards: it re-runs the segment forward once for the states at
its 4-step tile boundaries (registers), then for each tile re-runs its 4 steps keeping h_t and a_t, walks them
back, and writes the segment's per-channel gradients (du, dδ, dz) as 16-step rows.
Measured on an H200 (BENCHMARKS.md): Enc 3D stage 0 fwd+bwd 24.5 ms vs mamba-ssm's 79.1 ms; two thirds of it in
the gradient kernel, which runs at 8 warps per multiprocessor (255 registers) — the next thing to improve.
"""

from __future__ import annotations

import triton
import triton.language as tl

from umamba.mamba.scan_triton_kernels import _acc, _softplus

SEG = 16          # steps between kept states; chunks are a multiple of it
LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = 2^(x log2 e): the hardware has ex2


@triton.jit
def _cols4(x):
    """The 4 slices of x (..., 4) along its last axis, which the layouts keep inside a thread."""
    a, b = tl.split(tl.reshape(x, x.shape[:-1] + [2, 2]))    # a: steps 0, 2   b: steps 1, 3
    a0, a2 = tl.split(a)
    b1, b3 = tl.split(b)
    return a0, b1, a2, b3


@triton.jit
def _join4(c0, c1, c2, c3):
    """(..., 4) from its 4 slices: the inverse of _cols4."""
    return tl.reshape(tl.join(tl.join(c0, c2), tl.join(c1, c3)), c0.shape + [4])


@triton.jit
def _quarters(x):
    """(DB, GL, 16) -> its 4 blocks of 4 steps, (DB, GL, 4) each."""
    y = tl.permute(tl.reshape(x, x.shape[:-1] + [4, 4]), (0, 1, 3, 2))           # (DB, GL, step, block)
    return _cols4(y)


@triton.jit
def _unquarters(q0, q1, q2, q3):
    """The inverse of _quarters."""
    y = tl.permute(_join4(q0, q1, q2, q3), (0, 1, 3, 2))                           # (DB, GL, block, step)
    return tl.reshape(y, q0.shape[:-1] + [16])


@triton.jit
def _setup(A_ptr, bias_ptr, D_ptr, s_Ad, d, n, HAS_BIAS: tl.constexpr, HAS_D: tl.constexpr, F64: tl.constexpr,
           DB: tl.constexpr, G: tl.constexpr, STAGES: tl.constexpr = 1):
    """Program ids, offsets and masks; A (DB, G, 4) scaled by log2(e); bias and D as (1, DB, 1)."""
    pid_c = tl.program_id(0)
    pid_bd = tl.program_id(1)
    ndb = tl.cdiv(d, DB)
    bi = pid_bd // ndb
    offs_d = (pid_bd % ndb) * DB + tl.arange(0, DB)
    nn = tl.arange(0, G)[:, None] * 4 + tl.arange(0, 4)[None, :]                   # (G, 4) state index
    mask_d = offs_d < d
    mask_n = nn < n
    d3 = offs_d[:, None, None]
    mask_dn = (d3 < d) & mask_n[None, :, :]
    A2 = _acc(tl.load(A_ptr + d3 * s_Ad + nn[None, :, :], mask=mask_dn, other=0.0), F64) * LOG2E
    zero = _acc(tl.zeros((DB, 1, 1), tl.float32), F64)
    bias = zero
    if HAS_BIAS:
        bias = _acc(tl.load(bias_ptr + d3, mask=d3 < d, other=0.0), F64)
    Dv = zero
    if HAS_D:
        Dv = _acc(tl.load(D_ptr + d3, mask=d3 < d, other=0.0), F64)
    return pid_c, pid_bd, bi, offs_d, nn, mask_d, mask_n, mask_dn, A2, bias, Dv, zero


@triton.jit
def _rows(ptr, s_d, offs_d, mask_d, t0, l, F64: tl.constexpr, GL: tl.constexpr = 1, TL: tl.constexpr = 4):
    """(DB, GL, TL) block of a per-channel input at steps t0..t0+TL-1 (0 outside), and its mask. GL > 1 repeats
    it (stride 0) so that the layout spreads the state groups over GL threads (see scan_grad_lane_kernel).
    TL = 16 reads 64 contiguous bytes per channel: whole 32-byte sectors (4-step reads of rows l apart used half
    of each sector and ran memory-bound at about a quarter of the bandwidth, measured on an H200)."""
    cols = t0 + tl.arange(0, TL)
    rep = tl.arange(0, GL)[None, :, None] * 0
    m = (mask_d[:, None, None] & (cols < l)[None, None, :]) & (rep == 0)
    return _acc(tl.load(ptr + rep + offs_d[:, None, None] * s_d + cols[None, None, :], mask=m, other=0.0),
                F64), m


@triton.jit
def _states(ptr, s_n, nn, mask_n, t0, l, F64: tl.constexpr, R: tl.constexpr = 1):
    """(R, G, 4, 4) block of B or C at steps t0..t0+3 (0 outside). R = 1: every thread holds the whole block
    (the forward kernels, a channel's 16 states in one thread); R = DB repeats it along the channels (stride 0) so
    that it takes the state's layout and a thread holds only its own states' values (the gradient kernel with
    its states shared by 4 threads: 16 registers per block instead of 64, which kept it at 255 registers and 8
    warps per multiprocessor, measured with Nsight Compute on an H200)."""
    cols = t0 + tl.arange(0, 4)
    rep = tl.arange(0, R)[:, None, None, None] * 0
    m = (mask_n[None, :, :, None] & (cols < l)[None, None, None, :]) & (rep == 0)
    return _acc(tl.load(ptr + rep + nn[None, :, :, None] * s_n + cols[None, None, None, :], mask=m, other=0.0),
                F64)


@triton.jit
def _states4(ptr, s_n, nn, mask_n, t0, l, F64: tl.constexpr, R: tl.constexpr = 1):
    """B or C at steps t0..t0+3 as four (R, G, 4) blocks, taken apart from one (R, G, 4, 4) block (loading step
    by step instead took more registers and address arithmetic: the compiler hoists all loads of an iteration)."""
    return _cols4(_states(ptr, s_n, nn, mask_n, t0, l, F64, R))


@triton.jit
def _delta(delta_ptr, s_d, offs_d, mask_d, t0, l, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
           F64: tl.constexpr, GL: tl.constexpr = 1, TL: tl.constexpr = 4):
    """δ = softplus(delta + bias) as (DB, GL, 4), 0 outside (so a = 1, x = 0: the state passes); also the
    pre-softplus value and the mask."""
    v, m = _rows(delta_ptr, s_d, offs_d, mask_d, t0, l, F64, GL, TL)
    if HAS_BIAS:
        v = v + bias
    dl = v
    if SOFTPLUS:
        dl = _softplus(v)
    return tl.where(m, dl, 0.0), v, m


@triton.jit
def _advance(h, A2, dl, du, Bt):
    """One step: h (DB, G, 4) <- 2^(A2 δ) h + δu B;  dl, du (DB, GL); Bt (1 or DB, G, 4)."""
    return tl.exp2(A2 * dl[:, :, None]) * h + du[:, :, None] * Bt


@triton.jit
def _advance4(h, A2, dl, du, Bp, s_Bn, nn, mask_n, t0, l, F64: tl.constexpr, R: tl.constexpr = 1):
    """Four steps from t0: dl, du (DB, GL, 4); B from Bp."""
    dl0, dl1, dl2, dl3 = _cols4(dl)
    du0, du1, du2, du3 = _cols4(du)
    B0, B1, B2, B3 = _states4(Bp, s_Bn, nn, mask_n, t0, l, F64, R)
    h = _advance(h, A2, dl0, du0, B0)
    h = _advance(h, A2, dl1, du1, B1)
    h = _advance(h, A2, dl2, du2, B2)
    return _advance(h, A2, dl3, du3, B3)


@triton.jit
def _sum_n(x):
    """Σ over the states of a (DB, G, 4) block -> (DB, 1)."""
    return tl.sum(tl.sum(x, axis=2), axis=1, keep_dims=True)


# ---------------------------------------------------------------------------------------------------- forward
@triton.jit
def chunk_state_fwd_lane_kernel(
        u_ptr, delta_ptr, B_ptr, A_ptr, bias_ptr, S_ptr, dsum_ptr,
        s_ub, s_ud, s_db, s_dd, s_Bb, s_Bn, s_Ad,
        d, l, n, chunk_len, nc,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, F64: tl.constexpr, DB: tl.constexpr, G: tl.constexpr, STAGES: tl.constexpr = 1):
    """S_c = state at the end of chunk c from a zero state; Δ_c = Σ_t δ_t over the chunk."""
    pid_c, pid_bd, bi, offs_d, nn, mask_d, mask_n, mask_dn, A2, bias, Dv, zero = _setup(
        A_ptr, bias_ptr, bias_ptr, s_Ad, d, n, HAS_BIAS, False, F64, DB, G)
    h = A2 * 0.0
    dsum = zero
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    for t0 in tl.range(start, end, 16, num_stages=STAGES):
        dl, _, _ = _delta(delta_ptr + bi * s_db, s_dd, offs_d, mask_d, t0, l, bias, HAS_BIAS, SOFTPLUS, F64,
                          1, 16)
        u, _ = _rows(u_ptr + bi * s_ub, s_ud, offs_d, mask_d, t0, l, F64, 1, 16)
        dl0, dl1, dl2, dl3 = _quarters(dl)
        du0, du1, du2, du3 = _quarters(dl * u)
        h = _advance4(h, A2, dl0, du0, B_ptr + bi * s_Bb, s_Bn, nn, mask_n, t0, l, F64)
        h = _advance4(h, A2, dl1, du1, B_ptr + bi * s_Bb, s_Bn, nn, mask_n, t0 + 4, l, F64)
        h = _advance4(h, A2, dl2, du2, B_ptr + bi * s_Bb, s_Bn, nn, mask_n, t0 + 8, l, F64)
        h = _advance4(h, A2, dl3, du3, B_ptr + bi * s_Bb, s_Bn, nn, mask_n, t0 + 12, l, F64)
        dsum += tl.sum(dl, axis=2, keep_dims=True)
    c_off = (bi * nc + pid_c) * d
    tl.store(S_ptr + (c_off + offs_d[:, None, None]) * n + nn[None, :, :], h, mask=mask_dn)
    tl.store(dsum_ptr + c_off + offs_d[:, None, None], dsum, mask=offs_d[:, None, None] < d)


@triton.jit
def _out_steps(h, A2, dl, du, Bp, s_Bn, Cp, s_Cn, nn, mask_n, t0, l, F64: tl.constexpr):
    """Four steps from t0: advance h and return it with y = Σ_n C h (DB, 1, 4)."""
    dl0, dl1, dl2, dl3 = _cols4(dl)
    du0, du1, du2, du3 = _cols4(du)
    B0, B1, B2, B3 = _states4(Bp, s_Bn, nn, mask_n, t0, l, F64)
    C0, C1, C2, C3 = _states4(Cp, s_Cn, nn, mask_n, t0, l, F64)
    h = _advance(h, A2, dl0, du0, B0)
    y0 = _sum_n(h * C0)
    h = _advance(h, A2, dl1, du1, B1)
    y1 = _sum_n(h * C1)
    h = _advance(h, A2, dl2, du2, B2)
    y2 = _sum_n(h * C2)
    h = _advance(h, A2, dl3, du3, B3)
    y3 = _sum_n(h * C3)
    return h, _join4(y0, y1, y2, y3)


@triton.jit
def scan_out_fwd_lane_kernel(
        u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, E_ptr, out_ptr, H_ptr,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_Bb, s_Bn, s_Cb, s_Cn, s_Ad, s_ob, s_od,
        d, l, n, chunk_len, nc, nseg,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        STORE_STATES: tl.constexpr, F64: tl.constexpr, DB: tl.constexpr, G: tl.constexpr, STAGES: tl.constexpr = 1):
    """Outputs of chunk c from the state before it (E_{c-1}); the state before every SEG steps goes to H."""
    pid_c, pid_bd, bi, offs_d, nn, mask_d, mask_n, mask_dn, A2, bias, Dv, zero = _setup(
        A_ptr, bias_ptr, D_ptr, s_Ad, d, n, HAS_BIAS, HAS_D, F64, DB, G)
    prev = tl.maximum(pid_c - 1, 0)
    o_dn = offs_d[:, None, None] * n + nn[None, :, :]
    h = _acc(tl.load(E_ptr + (bi * nc + prev) * d * n + o_dn, mask=mask_dn, other=0.0), F64)
    h = tl.where(pid_c > 0, h, 0.0)
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    for s0 in tl.range(start, end, 16, num_stages=STAGES):
        if STORE_STATES:
            tl.store(H_ptr + (bi * nseg + s0 // 16) * d * n + o_dn, h, mask=mask_dn)
        dl, _, m = _delta(delta_ptr + bi * s_db, s_dd, offs_d, mask_d, s0, l, bias, HAS_BIAS, SOFTPLUS, F64,
                          1, 16)
        u, _ = _rows(u_ptr + bi * s_ub, s_ud, offs_d, mask_d, s0, l, F64, 1, 16)
        dl0, dl1, dl2, dl3 = _quarters(dl)
        du0, du1, du2, du3 = _quarters(dl * u)
        Bp = B_ptr + bi * s_Bb
        Cp = C_ptr + bi * s_Cb
        h, y0 = _out_steps(h, A2, dl0, du0, Bp, s_Bn, Cp, s_Cn, nn, mask_n, s0, l, F64)
        h, y1 = _out_steps(h, A2, dl1, du1, Bp, s_Bn, Cp, s_Cn, nn, mask_n, s0 + 4, l, F64)
        h, y2 = _out_steps(h, A2, dl2, du2, Bp, s_Bn, Cp, s_Cn, nn, mask_n, s0 + 8, l, F64)
        h, y3 = _out_steps(h, A2, dl3, du3, Bp, s_Bn, Cp, s_Cn, nn, mask_n, s0 + 12, l, F64)
        y = _unquarters(y0, y1, y2, y3)                                           # (DB, 1, 16)
        if HAS_D:
            y += Dv * u
        if HAS_Z:
            z, _ = _rows(z_ptr + bi * s_zb, s_zd, offs_d, mask_d, s0, l, F64, 1, 16)
            y = y * z / (1.0 + tl.exp(-z))
        cols = s0 + tl.arange(0, 16)
        tl.store(out_ptr + bi * s_ob + offs_d[:, None, None] * s_od + cols[None, None, :], y, mask=m)


# --------------------------------------------------------------------------------------------------- backward
@triton.jit
def _dy(dout_ptr, z_ptr, bi, s_gb, s_gd, s_zb, s_zd, offs_d, mask_d, t0, l, HAS_Z: tl.constexpr,
        F64: tl.constexpr, GL: tl.constexpr = 1, TL: tl.constexpr = 4):
    """dy = dout · SiLU(z) as (DB, GL, 4); also dout, z and σ(z)."""
    go, _ = _rows(dout_ptr + bi * s_gb, s_gd, offs_d, mask_d, t0, l, F64, GL, TL)
    dy = go
    z = go
    sz = go
    if HAS_Z:
        z, _ = _rows(z_ptr + bi * s_zb, s_zd, offs_d, mask_d, t0, l, F64, GL, TL)
        sz = 1.0 / (1.0 + tl.exp(-z))
        dy = go * z * sz
    return dy, go, z, sz


@triton.jit
def _carry_back4(kappa, A2, dl, dy, Cp, s_Cn, nn, mask_n, t0, l, F64: tl.constexpr):
    """Four steps backwards from t0 + 3: κ <- a_t (dy_t C_t + κ).  dl, dy (DB, 1, 4)."""
    dl0, dl1, dl2, dl3 = _cols4(dl)
    dy0, dy1, dy2, dy3 = _cols4(dy)
    C0, C1, C2, C3 = _states4(Cp, s_Cn, nn, mask_n, t0, l, F64)
    kappa = tl.exp2(A2 * dl3[:, :, None]) * (dy3[:, :, None] * C3 + kappa)
    kappa = tl.exp2(A2 * dl2[:, :, None]) * (dy2[:, :, None] * C2 + kappa)
    kappa = tl.exp2(A2 * dl1[:, :, None]) * (dy1[:, :, None] * C1 + kappa)
    return tl.exp2(A2 * dl0[:, :, None]) * (dy0[:, :, None] * C0 + kappa)


@triton.jit
def chunk_state_bwd_lane_kernel(
        dout_ptr, z_ptr, delta_ptr, C_ptr, A_ptr, bias_ptr, R_ptr,
        s_gb, s_gd, s_zb, s_zd, s_db, s_dd, s_Cb, s_Cn, s_Ad,
        d, l, n, chunk_len, nc,
        HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, F64: tl.constexpr,
        DB: tl.constexpr, G: tl.constexpr, STAGES: tl.constexpr = 1):
    """R_c = a_{t0} λ_{t0} of chunk c from a zero carry, walking backwards: κ <- a_t (dy_t C_t + κ)."""
    pid_c, pid_bd, bi, offs_d, nn, mask_d, mask_n, mask_dn, A2, bias, Dv, zero = _setup(
        A_ptr, bias_ptr, bias_ptr, s_Ad, d, n, HAS_BIAS, False, F64, DB, G)
    kappa = A2 * 0.0
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    nblk = tl.cdiv(end - start, 16)
    Cp = C_ptr + bi * s_Cb
    for kk in tl.range(0, nblk, num_stages=STAGES):
        t0 = start + (nblk - 1 - kk) * 16
        dl, _, _ = _delta(delta_ptr + bi * s_db, s_dd, offs_d, mask_d, t0, l, bias, HAS_BIAS, SOFTPLUS, F64,
                          1, 16)
        dy, _, _, _ = _dy(dout_ptr, z_ptr, bi, s_gb, s_gd, s_zb, s_zd, offs_d, mask_d, t0, l, HAS_Z, F64, 1, 16)
        dl0, dl1, dl2, dl3 = _quarters(dl)
        dy0, dy1, dy2, dy3 = _quarters(dy)
        kappa = _carry_back4(kappa, A2, dl3, dy3, Cp, s_Cn, nn, mask_n, t0 + 12, l, F64)
        kappa = _carry_back4(kappa, A2, dl2, dy2, Cp, s_Cn, nn, mask_n, t0 + 8, l, F64)
        kappa = _carry_back4(kappa, A2, dl1, dy1, Cp, s_Cn, nn, mask_n, t0 + 4, l, F64)
        kappa = _carry_back4(kappa, A2, dl0, dy0, Cp, s_Cn, nn, mask_n, t0, l, F64)
    c_off = (bi * nc + pid_c) * d
    tl.store(R_ptr + (c_off + offs_d[:, None, None]) * n + nn[None, :, :], kappa, mask=mask_dn)


@triton.jit
def _back(kappa, dA, h, a, A2, dl, du, dy, Bt, Ct):
    """One step backwards. h = h_t, a = a_t (DB, G, 4); dl, du, dy (DB, GL); Bt, Ct (1 or DB, G, 4). Returns the new
    carry κ = a_t λ_t, dA, the sums Σ_n λB, Σ_n λ A2 a h_{t-1}, Σ_n C h (DB, 1) and dB_t, dC_t (G, 4)."""
    lam = dy[:, :, None] * Ct + kappa                                 # λ_t
    q = lam * (h - du[:, :, None] * Bt)                               # λ_t a_t h_{t-1}
    kappa = a * lam
    dA += q * dl[:, :, None]
    return (kappa, dA, _sum_n(lam * Bt), _sum_n(q * A2), _sum_n(h * Ct),
            tl.sum(lam * du[:, :, None], axis=0), tl.sum(h * dy[:, :, None], axis=0))


@triton.jit
def _grad_tile(h, kappa, dA, dl, du, dy, A2, t0, bi, nn, mask_n, l, n, B_ptr, C_ptr, dB_ptr, dC_ptr,
               s_Bb, s_Bn, s_Cb, s_Cn, F64: tl.constexpr, R: tl.constexpr):
    """The recurrence's part of the gradients of steps t0..t0+3, from h = the state before t0 and κ = a λ just
    after the tile; dl, du, dy: the tile's (DB, GL, 4) blocks of δ, δu, dy. Adds dB_t, dC_t; returns κ, dA and
    the per-channel sums Σ_n λB, Σ_n λ A2 a h_{t-1}, Σ_n C h as (DB, 1, 4) blocks."""
    dl0, dl1, dl2, dl3 = _cols4(dl)
    du0, du1, du2, du3 = _cols4(du)
    dy0, dy1, dy2, dy3 = _cols4(dy)
    B0, B1, B2, B3 = _states4(B_ptr + bi * s_Bb, s_Bn, nn, mask_n, t0, l, F64, R)
    C0, C1, C2, C3 = _states4(C_ptr + bi * s_Cb, s_Cn, nn, mask_n, t0, l, F64, R)
    # h_t and a_t of the 4 steps, kept in registers (a_t is reused by the backward step: one exp2 fewer)
    a0 = tl.exp2(A2 * dl0[:, :, None])
    h0 = a0 * h + du0[:, :, None] * B0
    a1 = tl.exp2(A2 * dl1[:, :, None])
    h1 = a1 * h0 + du1[:, :, None] * B1
    a2 = tl.exp2(A2 * dl2[:, :, None])
    h2 = a2 * h1 + du2[:, :, None] * B2
    a3 = tl.exp2(A2 * dl3[:, :, None])
    h3 = a3 * h2 + du3[:, :, None] * B3
    kappa, dA, lb3, qa3, y3, dB3, dC3 = _back(kappa, dA, h3, a3, A2, dl3, du3, dy3, B3, C3)
    kappa, dA, lb2, qa2, y2, dB2, dC2 = _back(kappa, dA, h2, a2, A2, dl2, du2, dy2, B2, C2)
    kappa, dA, lb1, qa1, y1, dB1, dC1 = _back(kappa, dA, h1, a1, A2, dl1, du1, dy1, B1, C1)
    kappa, dA, lb0, qa0, y0, dB0, dC0 = _back(kappa, dA, h0, a0, A2, dl0, du0, dy0, B0, C0)
    cols = t0 + tl.arange(0, 4)
    o_nt = bi * n * l + nn[:, :, None] * l + cols[None, None, :]
    m_nt = mask_n[:, :, None] & (cols < l)[None, None, :]
    tl.atomic_add(dB_ptr + o_nt, _join4(dB0, dB1, dB2, dB3), mask=m_nt, sem="relaxed")
    tl.atomic_add(dC_ptr + o_nt, _join4(dC0, dC1, dC2, dC3), mask=m_nt, sem="relaxed")
    return kappa, dA, _join4(lb0, lb1, lb2, lb3), _join4(qa0, qa1, qa2, qa3), _join4(y0, y1, y2, y3)


@triton.jit
def _grad_rows(lamB, qA, y, dD, dbias, Dv, bias, s0, bi, offs_d, mask_d, l,
               u_ptr, delta_ptr, z_ptr, dout_ptr, du_ptr, ddelta_ptr, dz_ptr,
               s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_gb, s_gd, s_ob, s_od,
               HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
               F64: tl.constexpr):
    """Per-channel gradients of the 16 steps from s0 (du, dδ, dz written as 64-byte rows), from the sums
    Σ_n λB, Σ_n λ A2 a h_{t-1}, Σ_n C h (DB, 1, 16); returns dD, dbias plus this segment's part."""
    dl, v, m = _delta(delta_ptr + bi * s_db, s_dd, offs_d, mask_d, s0, l, bias, HAS_BIAS, SOFTPLUS, F64, 1, 16)
    u, _ = _rows(u_ptr + bi * s_ub, s_ud, offs_d, mask_d, s0, l, F64, 1, 16)
    dy, go, z, sz = _dy(dout_ptr, z_ptr, bi, s_gb, s_gd, s_zb, s_zd, offs_d, mask_d, s0, l, HAS_Z, F64, 1, 16)
    ddl = u * lamB + qA * (1.0 / LOG2E)                                           # + Σ_n λ A a h_{t-1}
    duo = dl * lamB
    if HAS_D:
        duo += Dv * dy
        dD += tl.sum(dy * u, axis=2, keep_dims=True)
    cols = s0 + tl.arange(0, 16)
    o = offs_d[:, None, None] * s_od + cols[None, None, :]
    if HAS_Z:
        if HAS_D:
            y += Dv * u
        tl.store(dz_ptr + bi * s_ob + o, go * y * sz * (1.0 + z * (1.0 - sz)), mask=m)
    if SOFTPLUS:
        ddl = ddl * tl.where(v > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-v)))
    ddl = tl.where(m, ddl, 0.0)
    dbias += tl.sum(ddl, axis=2, keep_dims=True)
    tl.store(du_ptr + bi * s_ob + o, duo, mask=m)
    tl.store(ddelta_ptr + bi * s_ob + o, ddl, mask=m)
    return dD, dbias


@triton.jit
def scan_grad_lane_kernel(
        u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, dout_ptr, A_ptr, D_ptr, bias_ptr, H_ptr, E_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_Bb, s_Bn, s_Cb, s_Cn, s_gb, s_gd, s_Ad, s_ob, s_od,
        d, l, n, chunk_len, nc, nseg,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        F64: tl.constexpr, DB: tl.constexpr, G: tl.constexpr, GL: tl.constexpr, STAGES: tl.constexpr = 1):
    """All gradients of chunk c, its 16-step segments walked from last to first (see the module docstring).

    GL: threads that share a channel's states (G/GL state groups each). dB_t and dC_t are sums over channels,
    across threads; with GL = G = 4 and DB = 32 per warp a thread holds 4 channels × 4 states, so that sum is
    4 values × 3 shuffle levels per step instead of 16 × 5 with one thread per channel.
    dB, dC (b, n, l) are added atomically (channel blocks share them); dA, dD, dbias partial sums go to
    (b, nc, d[, n]).
    """
    pid_c, pid_bd, bi, offs_d, nn, mask_d, mask_n, mask_dn, A2, bias, Dv, zero = _setup(
        A_ptr, bias_ptr, D_ptr, s_Ad, d, n, HAS_BIAS, HAS_D, F64, DB, G)
    o_dn = offs_d[:, None, None] * n + nn[None, :, :]
    nxt = tl.minimum(pid_c + 1, nc - 1)
    kappa = _acc(tl.load(E_ptr + (bi * nc + nxt) * d * n + o_dn, mask=mask_dn, other=0.0), F64)
    kappa = tl.where(pid_c + 1 < nc, kappa, 0.0)                  # a_{t+1} λ_{t+1} just after the chunk
    dA = A2 * 0.0
    dD = zero
    dbias = zero
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    nsc = tl.cdiv(end - start, 16)
    R: tl.constexpr = DB if GL > 1 else 1
    for kk in tl.range(0, nsc, num_stages=STAGES):
        s0 = start + (nsc - 1 - kk) * 16
        # the segment's δ, δu, dy (16 steps, 64-byte rows), and the states at its 4-step tile boundaries
        dl, _, _ = _delta(delta_ptr + bi * s_db, s_dd, offs_d, mask_d, s0, l, bias, HAS_BIAS, SOFTPLUS, F64,
                          GL, 16)
        u, _ = _rows(u_ptr + bi * s_ub, s_ud, offs_d, mask_d, s0, l, F64, GL, 16)
        dy, _, _, _ = _dy(dout_ptr, z_ptr, bi, s_gb, s_gd, s_zb, s_zd, offs_d, mask_d, s0, l, HAS_Z, F64, GL, 16)
        dl0, dl1, dl2, dl3 = _quarters(dl)
        du0, du1, du2, du3 = _quarters(dl * u)
        dy0, dy1, dy2, dy3 = _quarters(dy)
        Bp = B_ptr + bi * s_Bb
        h0 = _acc(tl.load(H_ptr + (bi * nseg + s0 // 16) * d * n + o_dn, mask=mask_dn, other=0.0), F64)
        h1 = _advance4(h0, A2, dl0, du0, Bp, s_Bn, nn, mask_n, s0, l, F64, R)
        h2 = _advance4(h1, A2, dl1, du1, Bp, s_Bn, nn, mask_n, s0 + 4, l, F64, R)
        h3 = _advance4(h2, A2, dl2, du2, Bp, s_Bn, nn, mask_n, s0 + 8, l, F64, R)
        kappa, dA, lb3, qa3, y3 = _grad_tile(h3, kappa, dA, dl3, du3, dy3, A2, s0 + 12, bi, nn, mask_n, l, n,
                                               B_ptr, C_ptr, dB_ptr, dC_ptr, s_Bb, s_Bn, s_Cb, s_Cn, F64, R)
        kappa, dA, lb2, qa2, y2 = _grad_tile(h2, kappa, dA, dl2, du2, dy2, A2, s0 + 8, bi, nn, mask_n, l, n,
                                               B_ptr, C_ptr, dB_ptr, dC_ptr, s_Bb, s_Bn, s_Cb, s_Cn, F64, R)
        kappa, dA, lb1, qa1, y1 = _grad_tile(h1, kappa, dA, dl1, du1, dy1, A2, s0 + 4, bi, nn, mask_n, l, n,
                                               B_ptr, C_ptr, dB_ptr, dC_ptr, s_Bb, s_Bn, s_Cb, s_Cn, F64, R)
        kappa, dA, lb0, qa0, y0 = _grad_tile(h0, kappa, dA, dl0, du0, dy0, A2, s0, bi, nn, mask_n, l, n,
                                               B_ptr, C_ptr, dB_ptr, dC_ptr, s_Bb, s_Bn, s_Cb, s_Cn, F64, R)
        dD, dbias = _grad_rows(_unquarters(lb0, lb1, lb2, lb3), _unquarters(qa0, qa1, qa2, qa3),
                               _unquarters(y0, y1, y2, y3), dD, dbias, Dv, bias, s0, bi, offs_d, mask_d, l,
                               u_ptr, delta_ptr, z_ptr, dout_ptr, du_ptr, ddelta_ptr, dz_ptr,
                               s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_gb, s_gd, s_ob, s_od,
                               HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, F64)
    c_off = (bi * nc + pid_c) * d
    tl.store(dA_ptr + (c_off + offs_d[:, None, None]) * n + nn[None, :, :], dA, mask=mask_dn)
    tl.store(dD_ptr + c_off + offs_d[:, None, None], dD, mask=offs_d[:, None, None] < d)
    tl.store(dbias_ptr + c_off + offs_d[:, None, None], dbias, mask=offs_d[:, None, None] < d)
