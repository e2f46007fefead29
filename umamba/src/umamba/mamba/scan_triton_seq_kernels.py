"""Per-chunk kernels of the Triton scan that walk their chunk one step at a time (the "seq" variant).

Same chunk algorithm and notation as scan_triton_kernels.py, but inside a chunk a program keeps its (DB, NP)
state in registers and advances it step by step: no scan across threads, so the only cross-thread work per step
is the reduction over n (y, Σ_n λB, Σ_n qA) and over d (dB, dC). Parallelism comes from the many chunks.
Inputs are loaded a tile of T steps at a time, as coalesced (DB, T) / (NP, T) blocks, and the inner loop over
the T steps is unrolled (static_range) with each step's column taken out of the block by a one-hot sum;
outputs are gathered the same way and stored once per tile. (A first version loaded one strided column per
step: every step then waited for memory, about 3000 cycles a step on an H200.)

The gradient kernel needs h_{t-1} while walking backwards: for each tile of T steps it first re-runs the
forward steps from the tile's kept state, writing h_t to a small per-program scratch area (T, DB, NP) that stays
in cache, then walks the tile backwards.
"""

from __future__ import annotations

import triton
import triton.language as tl

from umamba.mamba.scan_triton_kernels import _acc, _softplus


@triton.jit
def _col(tile, cols, j):
    """Column j of a (R, T) register block -> (R,)."""
    return tl.sum(tl.where(cols[None, :] == j, tile, 0.0), axis=1)


@triton.jit
def _put(tile, cols, j, v):
    """The (R, T) block with column j replaced by v (R,)."""
    return tl.where(cols[None, :] == j, v[:, None], tile)


@triton.jit
def _tile_delta(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, F64: tl.constexpr):
    """(DB, T) block of δ = softplus(delta + bias), 0 where masked; also the pre-softplus value."""
    v = _acc(tl.load(delta_ptr + offs, mask=mask, other=0.0), F64)
    if HAS_BIAS:
        v = v + bias[:, None]
    dl = v
    if SOFTPLUS:
        dl = _softplus(v)
    return tl.where(mask, dl, 0.0), v


@triton.jit
def _setup(A_ptr, bias_ptr, D_ptr, s_Ad, d, n, HAS_BIAS: tl.constexpr, HAS_D: tl.constexpr, F64: tl.constexpr,
           DB: tl.constexpr, NP: tl.constexpr):
    pid_c = tl.program_id(0)
    pid_bd = tl.program_id(1)
    ndb = tl.cdiv(d, DB)
    bi = pid_bd // ndb
    offs_d = (pid_bd % ndb) * DB + tl.arange(0, DB)
    offs_n = tl.arange(0, NP)
    mask_d = offs_d < d
    mask_n = offs_n < n
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = _acc(tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :], mask=mask_dn, other=0.0), F64)
    zero_d = _acc(tl.zeros((DB,), tl.float32), F64)
    bias = zero_d
    if HAS_BIAS:
        bias = _acc(tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0), F64)
    Dv = zero_d
    if HAS_D:
        Dv = _acc(tl.load(D_ptr + offs_d, mask=mask_d, other=0.0), F64)
    return pid_c, pid_bd, bi, offs_d, offs_n, mask_d, mask_n, mask_dn, A, bias, Dv, zero_d


@triton.jit
def chunk_state_fwd_seq_kernel(
        u_ptr, delta_ptr, B_ptr, A_ptr, bias_ptr, S_ptr, dsum_ptr,
        s_ub, s_ud, s_db, s_dd, s_Bb, s_Bn, s_Ad,
        d, l, n, chunk_len, nc,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, F64: tl.constexpr, DB: tl.constexpr, NP: tl.constexpr,
        T: tl.constexpr):
    """S_c = state at the end of chunk c from a zero state; Δ_c = Σ_t δ_t over the chunk."""
    pid_c, pid_bd, bi, offs_d, offs_n, mask_d, mask_n, mask_dn, A, bias, Dv, zero_d = _setup(
        A_ptr, bias_ptr, bias_ptr, s_Ad, d, n, HAS_BIAS, False, F64, DB, NP)
    h = A * 0.0
    dsum = zero_d
    cols = tl.arange(0, T)
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    for t0 in range(start, end, T):
        offs_t = t0 + cols
        m2 = mask_d[:, None] & (offs_t < l)[None, :]
        dlT, _ = _tile_delta(delta_ptr + bi * s_db, offs_d[:, None] * s_dd + offs_t[None, :], m2, bias,
                             HAS_BIAS, SOFTPLUS, F64)
        duT = dlT * _acc(tl.load(u_ptr + bi * s_ub + offs_d[:, None] * s_ud + offs_t[None, :], mask=m2, other=0.0),
                         F64)
        BT = _acc(tl.load(B_ptr + bi * s_Bb + offs_n[:, None] * s_Bn + offs_t[None, :],
                          mask=mask_n[:, None] & (offs_t < l)[None, :], other=0.0), F64)
        for j in tl.static_range(T):
            h = tl.exp(A * _col(dlT, cols, j)[:, None]) * h + _col(duT, cols, j)[:, None] * _col(BT, cols, j)[None, :]
        dsum += tl.sum(dlT, axis=1)
    c_off = (bi * nc + pid_c) * d
    tl.store(S_ptr + (c_off + offs_d[:, None]) * n + offs_n[None, :], h, mask=mask_dn)
    tl.store(dsum_ptr + c_off + offs_d, dsum, mask=mask_d)


@triton.jit
def scan_out_fwd_seq_kernel(
        u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, E_ptr, out_ptr, H_ptr,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_Bb, s_Bn, s_Cb, s_Cn, s_Ad, s_ob, s_od,
        d, l, n, chunk_len, nc, ntiles,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        STORE_STATES: tl.constexpr, F64: tl.constexpr, DB: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
    """Outputs of chunk c from the state before it (E_{c-1}); the state before every T-th step goes to H."""
    pid_c, pid_bd, bi, offs_d, offs_n, mask_d, mask_n, mask_dn, A, bias, Dv, zero_d = _setup(
        A_ptr, bias_ptr, D_ptr, s_Ad, d, n, HAS_BIAS, HAS_D, F64, DB, NP)
    prev = tl.maximum(pid_c - 1, 0)
    h = _acc(tl.load(E_ptr + ((bi * nc + prev) * d + offs_d[:, None]) * n + offs_n[None, :],
                     mask=mask_dn, other=0.0), F64)
    h = tl.where(pid_c > 0, h, 0.0)
    cols = tl.arange(0, T)
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    for t0 in range(start, end, T):
        if STORE_STATES:
            tl.store(H_ptr + ((bi * ntiles + t0 // T) * d + offs_d[:, None]) * n + offs_n[None, :], h, mask=mask_dn)
        offs_t = t0 + cols
        mask_t = offs_t < l
        m2 = mask_d[:, None] & mask_t[None, :]
        mnt = mask_n[:, None] & mask_t[None, :]
        dlT, _ = _tile_delta(delta_ptr + bi * s_db, offs_d[:, None] * s_dd + offs_t[None, :], m2, bias,
                             HAS_BIAS, SOFTPLUS, F64)
        uT = _acc(tl.load(u_ptr + bi * s_ub + offs_d[:, None] * s_ud + offs_t[None, :], mask=m2, other=0.0), F64)
        duT = dlT * uT
        BT = _acc(tl.load(B_ptr + bi * s_Bb + offs_n[:, None] * s_Bn + offs_t[None, :], mask=mnt, other=0.0), F64)
        CT = _acc(tl.load(C_ptr + bi * s_Cb + offs_n[:, None] * s_Cn + offs_t[None, :], mask=mnt, other=0.0), F64)
        yT = duT * 0.0
        for j in tl.static_range(T):
            h = tl.exp(A * _col(dlT, cols, j)[:, None]) * h + _col(duT, cols, j)[:, None] * _col(BT, cols, j)[None, :]
            yT = _put(yT, cols, j, tl.sum(h * _col(CT, cols, j)[None, :], axis=1))
        if HAS_D:
            yT += Dv[:, None] * uT
        if HAS_Z:
            zT = _acc(tl.load(z_ptr + bi * s_zb + offs_d[:, None] * s_zd + offs_t[None, :], mask=m2, other=0.0), F64)
            yT = yT * zT / (1.0 + tl.exp(-zT))
        tl.store(out_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :], yT, mask=m2)


@triton.jit
def chunk_state_bwd_seq_kernel(
        dout_ptr, z_ptr, delta_ptr, C_ptr, A_ptr, bias_ptr, R_ptr,
        s_gb, s_gd, s_zb, s_zd, s_db, s_dd, s_Cb, s_Cn, s_Ad,
        d, l, n, chunk_len, nc,
        HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, F64: tl.constexpr,
        DB: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
    """R_c = a_{t0} λ_{t0} of chunk c from a zero carry, walking backwards: κ <- a_t (g_t + κ)."""
    pid_c, pid_bd, bi, offs_d, offs_n, mask_d, mask_n, mask_dn, A, bias, Dv, zero_d = _setup(
        A_ptr, bias_ptr, bias_ptr, s_Ad, d, n, HAS_BIAS, False, F64, DB, NP)
    kappa = A * 0.0
    cols = tl.arange(0, T)
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    ntile = tl.cdiv(end - start, T)
    for kk in range(0, ntile):
        offs_t = start + (ntile - 1 - kk) * T + cols
        mask_t = offs_t < l
        m2 = mask_d[:, None] & mask_t[None, :]
        dlT, _ = _tile_delta(delta_ptr + bi * s_db, offs_d[:, None] * s_dd + offs_t[None, :], m2, bias,
                             HAS_BIAS, SOFTPLUS, F64)
        dyT = _acc(tl.load(dout_ptr + bi * s_gb + offs_d[:, None] * s_gd + offs_t[None, :], mask=m2, other=0.0), F64)
        if HAS_Z:
            zT = _acc(tl.load(z_ptr + bi * s_zb + offs_d[:, None] * s_zd + offs_t[None, :], mask=m2, other=0.0), F64)
            dyT = dyT * zT / (1.0 + tl.exp(-zT))
        CT = _acc(tl.load(C_ptr + bi * s_Cb + offs_n[:, None] * s_Cn + offs_t[None, :],
                          mask=mask_n[:, None] & mask_t[None, :], other=0.0), F64)
        for jj in tl.static_range(T):
            j = T - 1 - jj
            kappa = tl.exp(A * _col(dlT, cols, j)[:, None]) * (
                _col(dyT, cols, j)[:, None] * _col(CT, cols, j)[None, :] + kappa)
    c_off = (bi * nc + pid_c) * d
    tl.store(R_ptr + (c_off + offs_d[:, None]) * n + offs_n[None, :], kappa, mask=mask_dn)


@triton.jit
def scan_grad_seq_kernel(
        u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, dout_ptr, A_ptr, D_ptr, bias_ptr, H_ptr, E_ptr, W_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_Bb, s_Bn, s_Cb, s_Cn, s_gb, s_gd, s_Ad, s_ob, s_od,
        d, l, n, chunk_len, nc, ntiles,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        F64: tl.constexpr, DB: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
    """All gradients of chunk c, its tiles of T steps walked from last to first (see the module docstring).

    W is the scratch area: (programs, T, DB, NP). dB, dC (b, n, l) are added atomically (channel blocks share
    them); dA, dD, dbias partial sums go to (b, nc, d[, n]).
    """
    pid_c, pid_bd, bi, offs_d, offs_n, mask_d, mask_n, mask_dn, A, bias, Dv, zero_d = _setup(
        A_ptr, bias_ptr, D_ptr, s_Ad, d, n, HAS_BIAS, HAS_D, F64, DB, NP)
    nxt = tl.minimum(pid_c + 1, nc - 1)
    kappa = _acc(tl.load(E_ptr + ((bi * nc + nxt) * d + offs_d[:, None]) * n + offs_n[None, :],
                         mask=mask_dn, other=0.0), F64)
    kappa = tl.where(pid_c + 1 < nc, kappa, 0.0)                 # a_{t+1} λ_{t+1} just after the chunk
    w_base = W_ptr + (pid_c * tl.num_programs(1) + pid_bd) * (T * DB * NP)
    w_offs = tl.arange(0, DB)[:, None] * NP + offs_n[None, :]
    dA = A * 0.0
    dD = zero_d
    dbias = zero_d
    cols = tl.arange(0, T)
    start = pid_c * chunk_len
    end = tl.minimum(start + chunk_len, l)
    ntile = tl.cdiv(end - start, T)
    for kk in range(0, ntile):
        t0 = start + (ntile - 1 - kk) * T
        offs_t = t0 + cols
        mask_t = offs_t < l
        m2 = mask_d[:, None] & mask_t[None, :]
        mnt = mask_n[:, None] & mask_t[None, :]
        o_dt = offs_d[:, None] * s_dd + offs_t[None, :]
        dlT, vT = _tile_delta(delta_ptr + bi * s_db, o_dt, m2, bias, HAS_BIAS, SOFTPLUS, F64)
        uT = _acc(tl.load(u_ptr + bi * s_ub + offs_d[:, None] * s_ud + offs_t[None, :], mask=m2, other=0.0), F64)
        duT = dlT * uT
        BT = _acc(tl.load(B_ptr + bi * s_Bb + offs_n[:, None] * s_Bn + offs_t[None, :], mask=mnt, other=0.0), F64)
        CT = _acc(tl.load(C_ptr + bi * s_Cb + offs_n[:, None] * s_Cn + offs_t[None, :], mask=mnt, other=0.0), F64)
        goT = _acc(tl.load(dout_ptr + bi * s_gb + offs_d[:, None] * s_gd + offs_t[None, :], mask=m2, other=0.0), F64)
        dyT = goT
        if HAS_Z:
            zT = _acc(tl.load(z_ptr + bi * s_zb + offs_d[:, None] * s_zd + offs_t[None, :], mask=m2, other=0.0), F64)
            szT = 1.0 / (1.0 + tl.exp(-zT))
            dyT = goT * zT * szT
        # forward over the tile from its kept state: h_t into the scratch area
        h = _acc(tl.load(H_ptr + ((bi * ntiles + t0 // T) * d + offs_d[:, None]) * n + offs_n[None, :],
                         mask=mask_dn, other=0.0), F64)
        for j in tl.static_range(T):
            h = tl.exp(A * _col(dlT, cols, j)[:, None]) * h + _col(duT, cols, j)[:, None] * _col(BT, cols, j)[None, :]
            tl.store(w_base + j * (DB * NP) + w_offs, h)
        tl.debug_barrier()
        # backward over the tile; per-step results gathered into (DB, T) / (NP, T) blocks
        lambT = duT * 0.0           # Σ_n λ_t B_t
        qaT = duT * 0.0             # Σ_n λ_t A a_t h_{t-1}
        yT = duT * 0.0              # Σ_n C_t h_t
        dBT = BT * 0.0
        dCT = BT * 0.0
        for jj in tl.static_range(T):
            j = T - 1 - jj
            hj = tl.load(w_base + j * (DB * NP) + w_offs)
            dl = _col(dlT, cols, j)
            du_ = _col(duT, cols, j)
            dy = _col(dyT, cols, j)
            Bt = _col(BT, cols, j)
            Ct = _col(CT, cols, j)
            a = tl.exp(A * dl[:, None])
            lam = dy[:, None] * Ct[None, :] + kappa                    # λ_t
            kappa = a * lam
            q = lam * (hj - du_[:, None] * Bt[None, :])                # λ_t a_t h_{t-1}
            dA += q * dl[:, None]
            lambT = _put(lambT, cols, j, tl.sum(lam * Bt[None, :], axis=1))
            qaT = _put(qaT, cols, j, tl.sum(q * A, axis=1))
            yT = _put(yT, cols, j, tl.sum(hj * Ct[None, :], axis=1))
            dBT = _put(dBT, cols, j, tl.sum(lam * du_[:, None], axis=0))
            dCT = _put(dCT, cols, j, tl.sum(hj * dy[:, None], axis=0))
        tl.debug_barrier()
        ddlT = uT * lambT + qaT
        duoT = dlT * lambT
        if HAS_D:
            duoT += Dv[:, None] * dyT
            dD += tl.sum(dyT * uT, axis=1)
        if HAS_Z:
            if HAS_D:
                yT += Dv[:, None] * uT
            tl.store(dz_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :],
                     goT * yT * szT * (1.0 + zT * (1.0 - szT)), mask=m2)
        if SOFTPLUS:
            ddlT = ddlT * tl.where(vT > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-vT)))
        ddlT = tl.where(m2, ddlT, 0.0)
        dbias += tl.sum(ddlT, axis=1)
        tl.store(du_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :], duoT, mask=m2)
        tl.store(ddelta_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :], ddlT, mask=m2)
        o_nt = bi * n * l + offs_n[:, None] * l + offs_t[None, :]
        tl.atomic_add(dB_ptr + o_nt, dBT, mask=mnt)
        tl.atomic_add(dC_ptr + o_nt, dCT, mask=mnt)
    c_off = (bi * nc + pid_c) * d
    tl.store(dA_ptr + (c_off + offs_d[:, None]) * n + offs_n[None, :], dA, mask=mask_dn)
    tl.store(dD_ptr + c_off + offs_d, dD, mask=mask_d)
    tl.store(dbias_ptr + c_off + offs_d, dbias, mask=mask_d)
