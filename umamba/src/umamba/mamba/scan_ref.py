"""The selective scan written as its equations, one step at a time in float64: the reference every backend's
outputs and gradients are checked against (tests, and `benchmarks/scan_compare.py` on a GPU).

    Δ_t = softplus(delta_t + delta_bias)           (b, d, l)   (softplus only with delta_softplus)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t      h_t: (b, d, n),  h_{-1} = 0
    y_t = C_t·h_t + D u_t ;  out = y ⊙ SiLU(z)

Plain autograd operations only, so its gradients are autograd's, independent of any backend's backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk_len=None):
    """out (b, d, l), float64, from u, delta, z (b, d, l); A (d, n); B, C (b, n, l); D, delta_bias (d,).

    chunk_len=None steps through the whole sequence one step at a time. chunk_len=K cuts it into chunks of K
    steps that advance together, for sequences too long for a Python loop over l (a 128³ patch has l = 2,097,152):
    each chunk's end state from a zero start, then the states entering the chunks chained in order, then the
    outputs from those states. The same equations; it never holds more than (b, d, n, l/K).
    """
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    b, d, l = u.shape
    n = A.shape[1]
    dt = delta + (delta_bias.double()[:, None] if delta_bias is not None else 0.0)
    if delta_softplus:
        dt = F.softplus(dt)                                            # = dt above 20, like every backend
    K = min(chunk_len or l, l)
    m = -(-l // K)                                                     # chunks
    pad = m * K - l                                                    # padded steps: Δ = 0, a no-op

    def chunks(t):                                                     # (b, k, l) -> (b, k, m, K)
        return F.pad(t, (0, pad)).view(t.shape[0], t.shape[1], m, K)

    dt4, du4, B4, C4 = chunks(dt), chunks(dt * u), chunks(B), chunks(C)
    A4 = A[None, :, :, None]                                           # (1, d, n, 1)

    def step(h, t):                                                    # h: (b, d, n, m), all chunks at step t
        return torch.exp(A4 * dt4[:, :, None, :, t]) * h + du4[:, :, None, :, t] * B4[:, None, :, :, t]

    h0 = u.new_zeros(b, d, n, m)
    if m > 1:
        h = h0
        for t in range(K):                                             # each chunk's end state from zero
            h = step(h, t)
        decay = torch.exp(A4 * dt4.sum(-1)[:, :, None, :])             # Π_t exp(Δ_t A) over each chunk
        entering, carry = [], u.new_zeros(b, d, n)
        for j in range(m):                                             # h entering chunk j
            entering.append(carry)
            carry = decay[..., j] * carry + h[..., j]
        h0 = torch.stack(entering, dim=-1)
    ys, h = [], h0
    for t in range(K):
        h = step(h, t)
        ys.append((h * C4[:, None, :, :, t]).sum(2))                   # (b, d, m)
    y = torch.stack(ys, dim=-1).reshape(b, d, m * K)[..., :l]
    if D is not None:
        y = y + D.double()[:, None] * u
    if z is not None:
        y = y * F.silu(z.double())
    return y
