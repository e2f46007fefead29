"""Portable selective scan: pure PyTorch, autograd, any device, streaming over the sequence.

    Δ_t = softplus(delta_t + delta_bias)           (b, d, l)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t      h_t: (b, d, n),  h_{-1} = 0
    y_t = C_t·h_t + D u_t ;  out = y ⊙ SiLU(z)

Memory: the sequence is cut into chunks of T steps; a chunk holds a few (b, d, n, T) buffers, and only the state
entering each chunk is kept for the backward, which recomputes the chunk's states (checkpointing). Memory grows
with b·d·n·T, never with b·d·n·l.

Speed: a chunk is laid out as P segments of Q steps, (Q, b, d, n, P) with t = p·Q + q, so one Python loop step
updates all P segments at once:
    1. from a zero start, each segment's end state  e_p = Σ_q (Π_{j>q} a_j) x_q           (loop over q)
    2. the state entering each segment  c_p = (Π_q a_q) c_{p-1} + e_{p-1},  c_0 = h0       (loop over p)
    3. from c_p, the true states  h_q = a_q h_{q-1} + x_q                                   (loop over q)
with a_t = exp(Δ_t A) ≤ 1, x_t = Δ_t B_t u_t. Only decays ≤ 1 are multiplied (no exp(-cumsum) trick), so nothing
overflows whatever Δ and A are. The state and all sums are float32 (float64 for float64 inputs), like the CUDA
kernel. The backward runs the same three steps backwards in time for the adjoint
    G_t = ∂L/∂h_t = C_t dy_t + a_{t+1} G_{t+1}.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 21    # target b·d·n·T per chunk: 8 MB per float32 buffer, 2 (forward) to 4 alive
SOFTPLUS_THRESHOLD = 20.0   # softplus(v) = v above this, like F.softplus and the CUDA kernel


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 state for float64 inputs, float32 for everything else (never run the state in fp16/bf16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def fast_softplus(v: torch.Tensor) -> torch.Tensor:
    """softplus(v) = log(1 + e^v), = v above 20 (F.softplus's threshold); twice as fast as F.softplus on CPU."""
    return torch.where(v > SOFTPLUS_THRESHOLD, v, v.clamp(max=SOFTPLUS_THRESHOLD).exp_().log1p_())


def chunk_shape(b: int, d: int, n: int, l: int, chunk_len: int | None = None) -> tuple[int, int]:
    """(T, Q): chunk length T = P·Q and segment length Q (Q ≈ sqrt(T/2) balances the loops' step counts)."""
    if chunk_len is None:
        t = 1 << max(0, int(math.log2(max(1, CHUNK_ELEMENTS // max(1, b * d * n)))))
        chunk_len = min(t, 1 << math.ceil(math.log2(l)))
    q = 1 << max(0, int(math.log2(math.sqrt(chunk_len / 2)))) if chunk_len > 1 else 1
    while chunk_len % q:
        q //= 2
    return chunk_len, q


def _segments(t: torch.Tensor, Q: int) -> torch.Tensor:
    """(b, k, T) -> (Q, b, k, P), contiguous, with t = p·Q + q."""
    b, k, T = t.shape
    return t.reshape(b, k, T // Q, Q).permute(3, 0, 1, 2).contiguous()


def _time(t: torch.Tensor) -> torch.Tensor:
    """(Q, b, k, P) -> (b, k, T)."""
    Q, b, k, P = t.shape
    return t.permute(1, 2, 3, 0).reshape(b, k, P * Q)


def _pad(t: torch.Tensor, T: int) -> torch.Tensor:
    """Zero-pad the time axis to T. Padded steps have Δ = 0, u = 0: a = 1, no input, no output."""
    return t if t.shape[-1] == T else F.pad(t, (0, T - t.shape[-1]))


class _Chunk:
    """One chunk in state dtype and segment layout (Q, b, ·, P), padded to T steps."""

    def __init__(self, u, delta, B, C, z, delta_bias, softplus, t0, t1, T, Q, sd):
        self.len = t1 - t0
        dv = delta[..., t0:t1].to(sd)
        if delta_bias is not None:
            dv = dv + delta_bias.to(sd)[:, None]
        self.dv = dv                                                      # (b, d, len) before softplus
        dt = fast_softplus(dv) if softplus else dv
        self.u_t = u[..., t0:t1].to(sd)                                   # (b, d, len)
        self.z_t = z[..., t0:t1].to(sd) if z is not None else None        # (b, d, len)
        self.dt = _segments(_pad(dt, T), Q)                               # Δ    (Q, b, d, P)
        self.u = _segments(_pad(self.u_t, T), Q)                          # u    (Q, b, d, P)
        self.dtu = self.dt * self.u                                       # Δ u  (Q, b, d, P)
        self.B = _segments(_pad(B[..., t0:t1].to(sd), T), Q)              # B    (Q, b, n, P)
        self.C = _segments(_pad(C[..., t0:t1].to(sd), T), Q)              # C    (Q, b, n, P)


def _decays(ch: _Chunk, A: torch.Tensor, a: torch.Tensor, x: torch.Tensor) -> None:
    """Fill a = exp(Δ_t A) and x = Δ_t u_t B_t, both (Q, b, d, n, P)."""
    torch.mul(ch.dt[:, :, :, None, :], A[None, None, :, :, None], out=a)
    a.exp_()
    torch.mul(ch.dtu[:, :, :, None, :], ch.B[:, :, None, :, :], out=x)


def _forward_states(a: torch.Tensor, H: torch.Tensor, dt_sum: torch.Tensor, A: torch.Tensor,
                    h0: torch.Tensor) -> None:
    """In place, H: x_t on entry, h_t on exit (h_t = a_t h_{t-1} + x_t, h before the chunk = h0 (b, d, n)).

    dt_sum: (b, d, P) = Σ_q Δ over each segment, so that Π_q a_q = exp(A Σ_q Δ_q).
    """
    Q = H.shape[0]
    P = H.shape[-1]
    # 1. each segment's end state from a zero start
    e = H[0].clone()                                                      # (b, d, n, P)
    for q in range(1, Q):
        torch.addcmul(H[q], a[q], e, out=e)
    # 2. state entering each segment, (P, b, d, n) so each step is contiguous
    dec = torch.exp(dt_sum[:, :, None, :] * A[None, :, :, None]).permute(3, 0, 1, 2).contiguous()
    e = e.permute(3, 0, 1, 2).contiguous()
    c = torch.empty_like(e)
    c[0] = h0
    for p in range(1, P):
        torch.addcmul(e[p - 1], dec[p - 1], c[p - 1], out=c[p])
    # 3. true states
    H[0].addcmul_(a[0], c.permute(1, 2, 3, 0))
    for q in range(1, Q):
        H[q].addcmul_(a[q], H[q - 1])


def _backward_adjoints(a: torch.Tensor, G: torch.Tensor, dt_sum1: torch.Tensor, A: torch.Tensor,
                       inc_last: torch.Tensor) -> None:
    """In place, G: e_t = C_t dy_t on entry, G_t on exit, G_t = a_{t+1} G_{t+1} + e_t (backwards in time).

    dt_sum1: (b, d, P) = Σ_{q≥1} Δ over each segment; inc_last (b, d, n) = a_T G_T from the next chunk.
    """
    Q = G.shape[0]
    P = G.shape[-1]
    # 1. each segment's value at q = 0 from a zero start at its end
    w = G[Q - 1].clone()                                                  # (b, d, n, P)
    for q in range(Q - 2, -1, -1):
        torch.addcmul(G[q], a[q + 1], w, out=w)
    # 2. what flows into each segment's last step from the right: inc_p = a_{0,p+1} G_{0,p+1}
    dec = torch.exp(dt_sum1[:, :, None, :] * A[None, :, :, None]).permute(3, 0, 1, 2).contiguous()
    w = w.permute(3, 0, 1, 2).contiguous()
    a0 = a[0].permute(3, 0, 1, 2)                                         # (P, b, d, n)
    inc = torch.empty_like(w)
    inc[P - 1] = inc_last
    for p in range(P - 2, -1, -1):
        torch.mul(a0[p + 1], torch.addcmul(w[p + 1], dec[p + 1], inc[p + 1]), out=inc[p])
    # 3. true adjoints
    G[Q - 1].add_(inc.permute(1, 2, 3, 0))
    for q in range(Q - 2, -1, -1):
        G[q].addcmul_(a[q + 1], G[q + 1])


class _PortableScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, chunk_len):
        b, d, l = u.shape
        n = A.shape[1]
        sd = state_dtype(u.dtype)
        T, Q = chunk_shape(b, d, n, l, chunk_len)
        P = T // Q
        As = A.to(sd)
        Ds = D.to(sd) if D is not None else None
        out = torch.empty(u.shape, dtype=u.dtype, device=u.device)
        starts = range(0, l, T)
        h0s = torch.empty((len(starts), b, d, n), dtype=sd, device=u.device)  # state entering each chunk
        a = torch.empty((Q, b, d, n, P), dtype=sd, device=u.device)
        H = torch.empty_like(a)
        h = torch.zeros((b, d, n), dtype=sd, device=u.device)
        for k, t0 in enumerate(starts):
            t1 = min(l, t0 + T)
            h0s[k] = h
            ch = _Chunk(u, delta, B, C, z, delta_bias, softplus, t0, t1, T, Q, sd)
            _decays(ch, As, a, H)
            _forward_states(a, H, ch.dt.sum(0), As, h)
            h = H[-1, ..., -1].clone()               # padding (Δ = 0, x = 0) keeps the last real state
            y = _time(torch.mul(H, ch.C[:, :, None, :, :], out=a).sum(3))[..., :ch.len]   # C_t·h_t
            if Ds is not None:
                y = y.addcmul_(ch.u_t, Ds[:, None])                       # + D u
            if ch.z_t is not None:
                y = y.mul_(F.silu(ch.z_t))                                # ⊙ SiLU(z)
            out[..., t0:t1] = y
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h0s)
        ctx.softplus, ctx.chunk = softplus, (T, Q)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, h0s = ctx.saved_tensors
        softplus = ctx.softplus
        T, Q = ctx.chunk
        P = T // Q
        b, d, l = u.shape
        n = A.shape[1]
        sd = state_dtype(u.dtype)
        dev = u.device
        As = A.to(sd)
        Ds = D.to(sd) if D is not None else None
        du = torch.empty(u.shape, dtype=u.dtype, device=dev)
        ddelta = torch.empty(delta.shape, dtype=delta.dtype, device=dev)
        dB = torch.empty(B.shape, dtype=B.dtype, device=dev)
        dC = torch.empty(C.shape, dtype=C.dtype, device=dev)
        dz = torch.empty(z.shape, dtype=z.dtype, device=dev) if z is not None else None
        dA = torch.zeros((d, n), dtype=sd, device=dev)
        dD = torch.zeros((d,), dtype=sd, device=dev)
        dbias = torch.zeros((d,), dtype=sd, device=dev)
        a = torch.empty((Q, b, d, n, P), dtype=sd, device=dev)
        H = torch.empty_like(a)
        G = torch.empty_like(a)
        tmp = torch.empty_like(a)
        inc = torch.zeros((b, d, n), dtype=sd, device=dev)     # a_T G_T flowing in from the next chunk
        starts = list(range(0, l, T))
        for k in reversed(range(len(starts))):
            t0 = starts[k]
            t1 = min(l, t0 + T)
            L = t1 - t0
            ch = _Chunk(u, delta, B, C, z, delta_bias, softplus, t0, t1, T, Q, sd)
            _decays(ch, As, a, H)
            _forward_states(a, H, ch.dt.sum(0), As, h0s[k])               # H: h_t (Q, b, d, n, P)

            dy = dout[..., t0:t1].to(sd)                                  # (b, d, L)
            if ch.z_t is not None:
                y_pre = _time(torch.mul(H, ch.C[:, :, None, :, :], out=tmp).sum(3))[..., :L]
                if Ds is not None:
                    y_pre = y_pre.addcmul_(ch.u_t, Ds[:, None])
                sz = torch.sigmoid(ch.z_t)
                # d/dz [z σ(z)] = σ(z) (1 + z (1 - σ(z)))
                dz[..., t0:t1] = dy * y_pre * sz * (1 + ch.z_t * (1 - sz))
                dy = dy * ch.z_t * sz                                     # back through ⊙ SiLU(z)
            du_t = dy * Ds[:, None] if Ds is not None else torch.zeros_like(dy)   # from + D u
            if Ds is not None:
                dD += (dy * ch.u_t).sum((0, 2))
            dy = _segments(_pad(dy, T), Q)                                # (Q, b, d, P)

            # adjoint of the state, G_t = C_t dy_t + a_{t+1} G_{t+1}
            torch.mul(dy[:, :, :, None, :], ch.C[:, :, None, :, :], out=G)
            _backward_adjoints(a, G, ch.dt[1:].sum(0), As, inc)
            inc = a[0, ..., 0] * G[0, ..., 0]                             # a_{t0} G_{t0} for the chunk before

            # dC_t = Σ_d dy_t h_t
            dC_c = torch.mul(H, dy[:, :, :, None, :], out=tmp).sum(2)     # (Q, b, n, P)
            # M = G ⊙ a_t h_{t-1} = G ⊙ (h_t - Δ_t u_t B_t);  dΔ_t gets Σ_n A M, dA = Σ_{b,t} Δ_t M
            H.addcmul_(ch.dtu[:, :, :, None, :], ch.B[:, :, None, :, :], value=-1).mul_(G)
            ddt = torch.mul(H, As[None, None, :, :, None], out=tmp).sum(3)  # (Q, b, d, P)
            dA += H.mul_(ch.dt[:, :, :, None, :]).sum((0, 1, 4))
            # S = Σ_n G B_t: du_t = Δ_t S, dΔ_t gets u_t S;  dB_t = Σ_d G Δ_t u_t
            S = torch.mul(G, ch.B[:, :, None, :, :], out=tmp).sum(3)      # (Q, b, d, P)
            dB_c = G.mul_(ch.dtu[:, :, :, None, :]).sum(2)                # (Q, b, n, P)
            ddt = _time(ddt.addcmul_(ch.u, S))[..., :L]
            du_t += _time(S.mul_(ch.dt))[..., :L]
            if softplus:                                                  # softplus'(v) = σ(v), 1 above 20
                ddt = ddt * torch.where(ch.dv > SOFTPLUS_THRESHOLD, 1.0, torch.sigmoid(ch.dv))
            if delta_bias is not None:
                dbias += ddt.sum((0, 2))
            du[..., t0:t1] = du_t
            ddelta[..., t0:t1] = ddt
            dB[..., t0:t1] = _time(dB_c)[..., :L]
            dC[..., t0:t1] = _time(dC_c)[..., :L]
        return (du, ddelta, dA.to(A.dtype), dB, dC,
                dD.to(D.dtype) if D is not None else None, dz,
                dbias.to(delta_bias.dtype) if delta_bias is not None else None, None, None)


def selective_scan_portable(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                            chunk_len: int | None = None):
    """Shapes as `umamba.mamba.selective_scan`; `chunk_len` overrides the chunk length T (tests)."""
    return _PortableScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), chunk_len)
