"""Triton kernels of the chunked selective scan (see scan_triton.py for the algorithm and the launch code).

Notation (per batch b, channel d, state n; all sums and states in ACC = float32, or float64 for float64 inputs):
    δ_t = softplus(delta_t + bias)            a_t = exp(A δ_t)            x_t = δ_t u_t B_t
    h_t = a_t h_{t-1} + x_t                   y_t = Σ_n C_t h_t + D u_t   out_t = y_t · SiLU(z_t)
Backward, with dy_t = dout_t · SiLU(z_t) and g_t = dy_t C_t, the adjoint state
    λ_t = g_t + a_{t+1} λ_{t+1}
gives  dB_t = Σ_d λ_t δ_t u_t,  dC_t = Σ_d dy_t h_t,  du_t = δ_t Σ_n λ_t B_t + D dy_t,
       dδ_t = u_t Σ_n λ_t B_t + Σ_n λ_t A a_t h_{t-1},  dA = Σ_{b,t} λ_t δ_t a_t h_{t-1},
where a_t h_{t-1} = h_t − x_t (no shift along t needed).

Tiles are 3-D blocks (DB channels, NP states, T steps) scanned along t with `tl.associative_scan`; each program
walks the tiles of one chunk of the sequence, carrying a (DB, NP) state between tiles.
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
def _load_delta(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                F64: tl.constexpr):
    """δ = softplus(delta + bias) as (DB, T); 0 outside the mask, so a = 1 and x = 0 there (state passes)."""
    v = _acc(tl.load(delta_ptr + offs, mask=mask, other=0.0), F64)
    if HAS_BIAS:
        v = v + bias[:, None]
    if SOFTPLUS:
        dl = _softplus(v)
    else:
        dl = v
    return tl.where(mask, dl, 0.0), v


@triton.jit
def _tile_range(pid_c, l, NT, T: tl.constexpr):
    """first token of chunk pid_c and the number of its tiles that hold tokens."""
    start = pid_c * NT * T
    nt = tl.minimum(NT, tl.cdiv(l - start, T))
    return start, nt


# ---------------------------------------------------------------------------------------------------- forward
@triton.jit
def chunk_state_fwd_kernel(
        u_ptr, delta_ptr, B_ptr, A_ptr, bias_ptr, S_ptr, dsum_ptr,
        s_ub, s_ud, s_db, s_dd, s_Bb, s_Bn, s_Ad,
        d, l, n, NT, nc,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, F64: tl.constexpr,
        DB: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
    """Chunk summaries from a zero state: S_c = Σ_t exp(A Σ_{s>t} δ_s) x_t (DB, NP) and Δ_c = Σ_t δ_t."""
    pid_c = tl.program_id(0)
    pid_bd = tl.program_id(1)
    ndb = tl.cdiv(d, DB)
    bi = pid_bd // ndb
    offs_d = (pid_bd % ndb) * DB + tl.arange(0, DB)
    offs_n = tl.arange(0, NP)
    mask_d = offs_d < d
    mask_n = offs_n < n
    A = _acc(tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :],
                     mask=mask_d[:, None] & mask_n[None, :], other=0.0), F64)
    bias = _acc(tl.zeros((DB,), tl.float32), F64)
    if HAS_BIAS:
        bias = _acc(tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0), F64)
    S = A * 0.0
    dsum = bias * 0.0
    start, nt = _tile_range(pid_c, l, NT, T)
    for k in range(0, nt):
        offs_t = start + k * T + tl.arange(0, T)
        mask_t = offs_t < l
        m2 = mask_d[:, None] & mask_t[None, :]
        dl, _ = _load_delta(delta_ptr + bi * s_db, offs_d[:, None] * s_dd + offs_t[None, :], m2, bias,
                            HAS_BIAS, SOFTPLUS, F64)
        u = _acc(tl.load(u_ptr + bi * s_ub + offs_d[:, None] * s_ud + offs_t[None, :], mask=m2, other=0.0), F64)
        Bt = _acc(tl.load(B_ptr + bi * s_Bb + offs_n[:, None] * s_Bn + offs_t[None, :],
                          mask=mask_n[:, None] & mask_t[None, :], other=0.0), F64)
        # Σ_{s>t} δ_s inside the tile: reverse inclusive cumsum minus δ_t (no cancellation of large totals)
        rest = tl.cumsum(dl, axis=1, reverse=True) - dl
        tot = tl.sum(dl, axis=1)
        w = tl.exp(A[:, :, None] * rest[:, None, :])                      # (DB, NP, T)
        x = (dl * u)[:, None, :] * Bt[None, :, :]
        S = S * tl.exp(A * tot[:, None]) + tl.sum(w * x, axis=2)
        dsum += tot
    c_off = (bi * nc + pid_c) * d
    tl.store(S_ptr + (c_off + offs_d[:, None]) * n + offs_n[None, :], S, mask=mask_d[:, None] & mask_n[None, :])
    tl.store(dsum_ptr + c_off + offs_d, dsum, mask=mask_d)


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


@triton.jit
def scan_out_fwd_kernel(
        u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, E_ptr, out_ptr, H_ptr,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_Bb, s_Bn, s_Cb, s_Cn, s_Ad, s_ob, s_od,
        d, l, n, NT, nc, ntiles,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        STORE_STATES: tl.constexpr, F64: tl.constexpr,
        DB: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
    """Outputs: from the state before the chunk (E_{c-1}), scan each tile and write y·SiLU(z).

    With STORE_STATES the state before every tile is written to H (b, ntiles, d, n) for the backward pass.
    """
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
    bias = _acc(tl.zeros((DB,), tl.float32), F64)
    if HAS_BIAS:
        bias = _acc(tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0), F64)
    Dv = bias * 0.0
    if HAS_D:
        Dv = _acc(tl.load(D_ptr + offs_d, mask=mask_d, other=0.0), F64)
    prev = tl.maximum(pid_c - 1, 0)
    h = _acc(tl.load(E_ptr + ((bi * nc + prev) * d + offs_d[:, None]) * n + offs_n[None, :],
                     mask=mask_dn, other=0.0), F64)
    h = tl.where(pid_c > 0, h, 0.0)                                      # zero state before the first chunk
    last = tl.arange(0, T) == T - 1
    start, nt = _tile_range(pid_c, l, NT, T)
    for k in range(0, nt):
        if STORE_STATES:
            tile = pid_c * NT + k
            tl.store(H_ptr + ((bi * ntiles + tile) * d + offs_d[:, None]) * n + offs_n[None, :], h, mask=mask_dn)
        offs_t = start + k * T + tl.arange(0, T)
        mask_t = offs_t < l
        m2 = mask_d[:, None] & mask_t[None, :]
        mnt = mask_n[:, None] & mask_t[None, :]
        dl, _ = _load_delta(delta_ptr + bi * s_db, offs_d[:, None] * s_dd + offs_t[None, :], m2, bias,
                            HAS_BIAS, SOFTPLUS, F64)
        u = _acc(tl.load(u_ptr + bi * s_ub + offs_d[:, None] * s_ud + offs_t[None, :], mask=m2, other=0.0), F64)
        Bt = _acc(tl.load(B_ptr + bi * s_Bb + offs_n[:, None] * s_Bn + offs_t[None, :], mask=mnt, other=0.0), F64)
        Ct = _acc(tl.load(C_ptr + bi * s_Cb + offs_n[:, None] * s_Cn + offs_t[None, :], mask=mnt, other=0.0), F64)
        a = tl.exp(A[:, :, None] * dl[:, None, :])                           # (DB, NP, T)
        x = (dl * u)[:, None, :] * Bt[None, :, :]
        P, X = tl.associative_scan((a, x), 2, _combine)
        hs = X + P * h[:, :, None]                                           # h_t for every t of the tile
        y = tl.sum(hs * Ct[None, :, :], axis=1)                              # (DB, T)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zt = _acc(tl.load(z_ptr + bi * s_zb + offs_d[:, None] * s_zd + offs_t[None, :], mask=m2, other=0.0),
                      F64)
            y = y * zt / (1.0 + tl.exp(-zt))
        tl.store(out_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :], y, mask=m2)
        h = tl.sum(tl.where(last[None, None, :], hs, 0.0), axis=2)         # masked tail keeps the state


# --------------------------------------------------------------------------------------------------- backward
@triton.jit
def chunk_state_bwd_kernel(
        dout_ptr, z_ptr, delta_ptr, C_ptr, A_ptr, bias_ptr, R_ptr,
        s_gb, s_gd, s_zb, s_zd, s_db, s_dd, s_Cb, s_Cn, s_Ad,
        d, l, n, NT, nc,
        HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, F64: tl.constexpr,
        DB: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
    """Adjoint chunk summaries from a zero carry: R_c = Σ_t exp(A Σ_{s=t0..t} δ_s) g_t = a_{t0} λ_{t0} (local)."""
    pid_c = tl.program_id(0)
    pid_bd = tl.program_id(1)
    ndb = tl.cdiv(d, DB)
    bi = pid_bd // ndb
    offs_d = (pid_bd % ndb) * DB + tl.arange(0, DB)
    offs_n = tl.arange(0, NP)
    mask_d = offs_d < d
    mask_n = offs_n < n
    A = _acc(tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :],
                     mask=mask_d[:, None] & mask_n[None, :], other=0.0), F64)
    bias = _acc(tl.zeros((DB,), tl.float32), F64)
    if HAS_BIAS:
        bias = _acc(tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0), F64)
    R = A * 0.0
    cum = bias * 0.0
    start, nt = _tile_range(pid_c, l, NT, T)
    for k in range(0, nt):
        offs_t = start + k * T + tl.arange(0, T)
        mask_t = offs_t < l
        m2 = mask_d[:, None] & mask_t[None, :]
        dl, _ = _load_delta(delta_ptr + bi * s_db, offs_d[:, None] * s_dd + offs_t[None, :], m2, bias,
                            HAS_BIAS, SOFTPLUS, F64)
        dy = _acc(tl.load(dout_ptr + bi * s_gb + offs_d[:, None] * s_gd + offs_t[None, :], mask=m2, other=0.0),
                  F64)
        if HAS_Z:
            zt = _acc(tl.load(z_ptr + bi * s_zb + offs_d[:, None] * s_zd + offs_t[None, :], mask=m2, other=0.0),
                      F64)
            dy = dy * zt / (1.0 + tl.exp(-zt))
        Ct = _acc(tl.load(C_ptr + bi * s_Cb + offs_n[:, None] * s_Cn + offs_t[None, :],
                          mask=mask_n[:, None] & mask_t[None, :], other=0.0), F64)
        cs = tl.cumsum(dl, axis=1) + cum[:, None]
        w = tl.exp(A[:, :, None] * cs[:, None, :])
        R += tl.sum(w * dy[:, None, :] * Ct[None, :, :], axis=2)
        cum += tl.sum(dl, axis=1)
    c_off = (bi * nc + pid_c) * d
    tl.store(R_ptr + (c_off + offs_d[:, None]) * n + offs_n[None, :], R, mask=mask_d[:, None] & mask_n[None, :])


@triton.jit
def scan_grad_kernel(
        u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, dout_ptr, A_ptr, D_ptr, bias_ptr, H_ptr, E_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
        s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_Bb, s_Bn, s_Cb, s_Cn, s_gb, s_gd, s_Ad, s_ob, s_od,
        d, l, n, NT, nc, ntiles,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        F64: tl.constexpr, DB: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
    """All gradients of one chunk, its tiles walked from last to first.

    Per tile: h from the stored state before the tile (forward scan), λ from the carry a_{t+1} λ_{t+1} at the
    tile's end (reverse scan over (a_{t+1}, g_t)). du, ddelta, dz (contiguous, strides s_ob, s_od) are
    written; dB, dC are added atomically
    (b, n, l) since several channel blocks share them; dA, dD, dbias partial sums go to (b, nc, d[, n]).
    """
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
    bias = _acc(tl.zeros((DB,), tl.float32), F64)
    if HAS_BIAS:
        bias = _acc(tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0), F64)
    Dv = bias * 0.0
    if HAS_D:
        Dv = _acc(tl.load(D_ptr + offs_d, mask=mask_d, other=0.0), F64)
    # κ = a_{t+1} λ_{t+1} just after this chunk = E of the next chunk (0 after the last one)
    nxt = tl.minimum(pid_c + 1, nc - 1)
    kappa = _acc(tl.load(E_ptr + ((bi * nc + nxt) * d + offs_d[:, None]) * n + offs_n[None, :],
                         mask=mask_dn, other=0.0), F64)
    kappa = tl.where(pid_c + 1 < nc, kappa, 0.0)
    dA = A * 0.0
    dD = bias * 0.0
    dbias = bias * 0.0
    tt = tl.arange(0, T)
    start, nt = _tile_range(pid_c, l, NT, T)
    for kk in range(0, nt):
        k = nt - 1 - kk
        tile = pid_c * NT + k
        offs_t = start + k * T + tt
        mask_t = offs_t < l
        m2 = mask_d[:, None] & mask_t[None, :]
        mnt = mask_n[:, None] & mask_t[None, :]
        o_d = offs_d[:, None] * s_dd + offs_t[None, :]
        dl, v = _load_delta(delta_ptr + bi * s_db, o_d, m2, bias, HAS_BIAS, SOFTPLUS, F64)
        # δ_{t+1} inside the tile; 0 at the tile's last step, whose successor is already in κ
        m_next = m2 & (tt < T - 1)[None, :] & (offs_t + 1 < l)[None, :]
        dl_next, _ = _load_delta(delta_ptr + bi * s_db, o_d + 1, m_next, bias, HAS_BIAS, SOFTPLUS, F64)
        u = _acc(tl.load(u_ptr + bi * s_ub + offs_d[:, None] * s_ud + offs_t[None, :], mask=m2, other=0.0), F64)
        Bt = _acc(tl.load(B_ptr + bi * s_Bb + offs_n[:, None] * s_Bn + offs_t[None, :], mask=mnt, other=0.0), F64)
        Ct = _acc(tl.load(C_ptr + bi * s_Cb + offs_n[:, None] * s_Cn + offs_t[None, :], mask=mnt, other=0.0), F64)
        go = _acc(tl.load(dout_ptr + bi * s_gb + offs_d[:, None] * s_gd + offs_t[None, :], mask=m2, other=0.0),
                  F64)
        h0 = _acc(tl.load(H_ptr + ((bi * ntiles + tile) * d + offs_d[:, None]) * n + offs_n[None, :],
                          mask=mask_dn, other=0.0), F64)
        # forward states of the tile
        a = tl.exp(A[:, :, None] * dl[:, None, :])                          # (DB, NP, T)
        du_ = dl * u
        x = du_[:, None, :] * Bt[None, :, :]
        P, X = tl.associative_scan((a, x), 2, _combine)
        hs = X + P * h0[:, :, None]
        # gate
        dy = go
        if HAS_Z:
            zt = _acc(tl.load(z_ptr + bi * s_zb + offs_d[:, None] * s_zd + offs_t[None, :], mask=m2, other=0.0),
                      F64)
            sz = 1.0 / (1.0 + tl.exp(-zt))
            dy = go * zt * sz
        # adjoint states: λ_t = g_t + a_{t+1} λ_{t+1}, the tile's end fed by κ
        a_next = tl.exp(A[:, :, None] * dl_next[:, None, :])
        Pl, Xl = tl.associative_scan((a_next, dy[:, None, :] * Ct[None, :, :]), 2, _combine, reverse=True)
        lam = Xl + Pl * kappa[:, :, None]
        kappa = tl.sum(tl.where((tt == 0)[None, None, :], a * lam, 0.0), axis=2)
        # gradients
        q = lam * (hs - x)                                                   # λ_t a_t h_{t-1}
        dA += tl.sum(q * dl[:, None, :], axis=2)
        lam_b = tl.sum(lam * Bt[None, :, :], axis=1)                         # Σ_n λ_t B_t   (DB, T)
        ddl = u * lam_b + tl.sum(q * A[:, :, None], axis=1)
        du = dl * lam_b
        if HAS_D:
            du += Dv[:, None] * dy
            dD += tl.sum(dy * u, axis=1)
        if HAS_Z:
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += Dv[:, None] * u
            dz = go * y * sz * (1.0 + zt * (1.0 - sz))
            tl.store(dz_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :], dz, mask=m2)
        if SOFTPLUS:
            ddl = ddl * tl.where(v > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-v)))
        ddl = tl.where(m2, ddl, 0.0)
        dbias += tl.sum(ddl, axis=1)
        tl.store(du_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :], du, mask=m2)
        tl.store(ddelta_ptr + bi * s_ob + offs_d[:, None] * s_od + offs_t[None, :], ddl, mask=m2)
        dBt = tl.sum(lam * du_[:, None, :], axis=0)                          # (NP, T)
        dCt = tl.sum(hs * dy[:, None, :], axis=0)
        o_nt = bi * n * l + offs_n[:, None] * l + offs_t[None, :]
        tl.atomic_add(dB_ptr + o_nt, dBt, mask=mnt)
        tl.atomic_add(dC_ptr + o_nt, dCt, mask=mnt)
    c_off = (bi * nc + pid_c) * d
    tl.store(dA_ptr + (c_off + offs_d[:, None]) * n + offs_n[None, :], dA, mask=mask_dn)
    tl.store(dD_ptr + c_off + offs_d, dD, mask=mask_d)
    tl.store(dbias_ptr + c_off + offs_d, dbias, mask=mask_d)
