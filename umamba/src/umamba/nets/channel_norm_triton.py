"""LayerNorm over the channel axis of a channels-first feature map (B, C, P), in Triton, forward and backward.

Why: MambaLayer normalises each spatial token over its C channels. With torch that needs the map transposed to
(B, P, C) first (a strided copy, and another for the gradient) plus a float16 -> float32 copy under autocast; at
U-Mamba Enc's first stage (C 32, P 2,097,152) those copies cost more than the norm itself (BENCHMARKS.md, GPU).
Here one program normalises BP positions across all C channels, reading the map where it lies, in its dtype:
    μ_p = mean_c x_cp      r_p = (mean_c (x_cp - μ_p)² + eps)^-1/2      x̂_cp = (x_cp - μ_p) r_p
    y_cp = x̂_cp γ_c + β_c                                               (float32 out, channels-first)
Backward, with g_cp = dy_cp γ_c:
    dx_cp = r_p (g_cp - mean_c g_cp - x̂_cp mean_c (g_cp x̂_cp))    dγ_c = Σ_{b,p} dy_cp x̂_cp    dβ_c = Σ dy_cp
dγ and dβ are per-program partial sums that torch adds up (deterministic).
"""

from __future__ import annotations

import torch

import triton  # an ImportError here tells mamba_layer.py to normalise with torch
import triton.language as tl

MAX_CHANNELS = 256   # one program holds all channels of BP positions; wider maps use torch
TILE = 4096          # elements per program (channels x positions)


@triton.jit
def channel_norm_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, C, P, eps, sxb, sxc, syb, syc,
                            CP: tl.constexpr, BP: tl.constexpr):
    p = tl.program_id(0) * BP + tl.arange(0, BP)                        # (BP,)
    c = tl.arange(0, CP)                                                # (CP,)
    bi = tl.program_id(1).to(tl.int64)
    m = (c < C)[:, None] & (p < P)[None, :]
    x = tl.load(x_ptr + bi * sxb + c[:, None].to(tl.int64) * sxc + p[None, :], mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / C                                        # (BP,)
    xc = tl.where(m, x - mean[None, :], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / C + eps)
    w = tl.load(w_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    y = xc * rstd[None, :] * w[:, None] + b[:, None]
    tl.store(y_ptr + bi * syb + c[:, None].to(tl.int64) * syc + p[None, :], y, mask=m)
    tl.store(mean_ptr + bi * P + p, mean, mask=p < P)
    tl.store(rstd_ptr + bi * P + p, rstd, mask=p < P)


@triton.jit
def channel_norm_bwd_kernel(x_ptr, w_ptr, dy_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr, C, P, NP,
                            sxb, sxc, sdb, sdc, sgb, sgc, CP: tl.constexpr, BP: tl.constexpr):
    pid = tl.program_id(0)
    p = pid * BP + tl.arange(0, BP)
    c = tl.arange(0, CP)
    bi = tl.program_id(1).to(tl.int64)
    cm = c < C
    m = cm[:, None] & (p < P)[None, :]
    c64 = c[:, None].to(tl.int64)
    x = tl.load(x_ptr + bi * sxb + c64 * sxc + p[None, :], mask=m, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + bi * sdb + c64 * sdc + p[None, :], mask=m, other=0.0).to(tl.float32)
    mean = tl.load(mean_ptr + bi * P + p, mask=p < P, other=0.0)
    rstd = tl.load(rstd_ptr + bi * P + p, mask=p < P, other=0.0)
    w = tl.load(w_ptr + c, mask=cm, other=0.0).to(tl.float32)
    xhat = tl.where(m, (x - mean[None, :]) * rstd[None, :], 0.0)
    g = dy * w[:, None]
    mg = tl.sum(g, axis=0) / C
    mgx = tl.sum(g * xhat, axis=0) / C
    dx = rstd[None, :] * (g - mg[None, :] - xhat * mgx[None, :])
    tl.store(dx_ptr + bi * sgb + c64 * sgc + p[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m)
    part = (bi * NP + pid) * C + c                                      # rows of (B, NP, C)
    tl.store(dw_ptr + part, tl.sum(dy * xhat, axis=1), mask=cm)
    tl.store(db_ptr + part, tl.sum(dy, axis=1), mask=cm)


def _plan(c: int) -> tuple[int, int]:
    cp = triton.next_power_of_2(c)
    return cp, max(16, TILE // cp)


class ChannelLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        if x.stride(-1) != 1:
            x = x.contiguous()
        bsz, c, p = x.shape
        cp, bp = _plan(c)
        y = torch.empty((bsz, c, p), device=x.device, dtype=torch.float32)
        mean = torch.empty((bsz, p), device=x.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        grid = (triton.cdiv(p, bp), bsz)
        channel_norm_fwd_kernel[grid](x, weight, bias, y, mean, rstd, c, p, eps, x.stride(0), x.stride(1),
                                      y.stride(0), y.stride(1), CP=cp, BP=bp, num_warps=4)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        if dy.stride(-1) != 1:
            dy = dy.contiguous()
        bsz, c, p = x.shape
        cp, bp = _plan(c)
        n_prog = triton.cdiv(p, bp)
        dx = torch.empty((bsz, c, p), device=x.device, dtype=x.dtype)
        dw_part = torch.empty((bsz, n_prog, c), device=x.device, dtype=torch.float32)
        db_part = torch.empty_like(dw_part)
        channel_norm_bwd_kernel[(n_prog, bsz)](x, weight, dy, mean, rstd, dx, dw_part, db_part, c, p, n_prog,
                                               x.stride(0), x.stride(1), dy.stride(0), dy.stride(1), dx.stride(0),
                                               dx.stride(1), CP=cp, BP=bp, num_warps=4)
        return dx, dw_part.sum((0, 1)).to(weight.dtype), db_part.sum((0, 1)).to(weight.dtype), None


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over axis 1 of x (B, C, P), any float dtype, unit stride along P preferred -> (B, C, P)
    float32 contiguous; the same numbers as F.layer_norm(x.float().transpose(1, 2), (C,), weight, bias, eps)
    transposed back. The gradient of x comes back in x's dtype."""
    return ChannelLayerNorm.apply(x, weight, bias, float(eps))
