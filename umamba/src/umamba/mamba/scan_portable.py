"""Portable selective scan: pure PyTorch, autograd, any device (first simple version)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def selective_scan_portable(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    sd = _state_dtype(u.dtype)
    dt = delta.to(sd)
    if delta_bias is not None:
        dt = dt + delta_bias.to(sd)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uu, AA, BB, CC = u.to(sd), A.to(sd), B.to(sd), C.to(sd)
    b, d, l = u.shape
    h = uu.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        # h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t ; y_t = C_t·h_t
        h = torch.exp(dt[:, :, t, None] * AA) * h + (dt[:, :, t] * uu[:, :, t])[..., None] * BB[:, None, :, t]
        ys.append((h * CC[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + uu * D.to(sd)[:, None]
    if z is not None:
        y = y * F.silu(z.to(sd))
    return y.to(u.dtype)
