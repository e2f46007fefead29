"""InstanceNorm (affine) followed by LeakyReLU in Triton, forward and backward: the conv blocks' norm and
activation as one pass over the map instead of two (and one saved tensor instead of two). Opt-in
(UMAMBA_NORM_BACKEND=triton, blocks.py): not yet measured on a GPU.

x is (N, C, S) (S the flattened spatial axes); each row r = (n, c) is normalised over its S values:
    μ_r = mean_s x_rs      r_r = (var_s x_rs + eps)^-1/2      x̂_rs = (x_rs - μ_r) r_r
    z_rs = x̂_rs γ_c + β_c      y_rs = z_rs if z_rs > 0 else a z_rs                  (a: the negative slope)
Backward, with g_rs = dy_rs (1 if z_rs > 0 else a) γ_c (z recomputed from x):
    dx_rs = r_r (g_rs - mean_s g_rs - x̂_rs mean_s (g_rs x̂_rs))
    dγ_c = Σ_{n,s} dy·act'·x̂      dβ_c = Σ_{n,s} dy·act'
A row can hold millions of values (U-Mamba Enc's first stage: 128³), so each row is cut into blocks of BS:
the kernels write per-block partial sums (count-weighted means and squared deviations, combined as in Chan et
al.'s parallel variance, so no E[x²] - E[x]² cancellation) that torch adds up, deterministically.
"""

from __future__ import annotations

import torch

import triton  # an ImportError here tells blocks.py to use torch's InstanceNorm and LeakyReLU
import triton.language as tl

BS = 4096  # values of one row per program


@triton.jit
def _stats_kernel(x_ptr, sum_ptr, m2_ptr, S, NB, BS: tl.constexpr):
    blk, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    s = blk * BS + tl.arange(0, BS)
    m = s < S
    x = tl.load(x_ptr + row * S + s, mask=m, other=0.0).to(tl.float32)
    n = tl.minimum(S - blk * BS, BS).to(tl.float32)
    mean = tl.sum(x, axis=0) / n
    d = tl.where(m, x - mean, 0.0)
    tl.store(sum_ptr + row * NB + blk, tl.sum(x, axis=0))
    tl.store(m2_ptr + row * NB + blk, tl.sum(d * d, axis=0))


@triton.jit
def _fwd_kernel(x_ptr, y_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, S, C, slope, BS: tl.constexpr):
    blk, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    s = blk * BS + tl.arange(0, BS)
    m = s < S
    c = row % C
    x = tl.load(x_ptr + row * S + s, mask=m, other=0.0).to(tl.float32)
    z = (x - tl.load(mean_ptr + row)) * tl.load(rstd_ptr + row) * tl.load(w_ptr + c).to(tl.float32) \
        + tl.load(b_ptr + c).to(tl.float32)
    y = tl.where(z > 0, z, z * slope)
    tl.store(y_ptr + row * S + s, y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _bwd_sums_kernel(x_ptr, dy_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, sg_ptr, sgx_ptr, S, C, NB, slope,
                     BS: tl.constexpr):
    blk, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    s = blk * BS + tl.arange(0, BS)
    m = s < S
    c = row % C
    x = tl.load(x_ptr + row * S + s, mask=m, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + row * S + s, mask=m, other=0.0).to(tl.float32)
    xhat = (x - tl.load(mean_ptr + row)) * tl.load(rstd_ptr + row)
    z = xhat * tl.load(w_ptr + c).to(tl.float32) + tl.load(b_ptr + c).to(tl.float32)
    dz = tl.where(m, tl.where(z > 0, dy, dy * slope), 0.0)               # dL/dz, before γ
    tl.store(sg_ptr + row * NB + blk, tl.sum(dz, axis=0))
    tl.store(sgx_ptr + row * NB + blk, tl.sum(dz * xhat, axis=0))


@triton.jit
def _bwd_dx_kernel(x_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, mg_ptr, mgx_ptr, S, C, slope,
                   BS: tl.constexpr):
    blk, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    s = blk * BS + tl.arange(0, BS)
    m = s < S
    c = row % C
    w = tl.load(w_ptr + c).to(tl.float32)
    rstd = tl.load(rstd_ptr + row)
    x = tl.load(x_ptr + row * S + s, mask=m, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + row * S + s, mask=m, other=0.0).to(tl.float32)
    xhat = (x - tl.load(mean_ptr + row)) * rstd
    z = xhat * w + tl.load(b_ptr + c).to(tl.float32)
    g = tl.where(z > 0, dy, dy * slope) * w
    dx = rstd * (g - tl.load(mg_ptr + row) - xhat * tl.load(mgx_ptr + row))
    tl.store(dx_ptr + row * S + s, dx.to(dx_ptr.dtype.element_ty), mask=m)


def _row_stats(x2: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    rows, S = x2.shape
    nb = triton.cdiv(S, BS)
    part_sum = torch.empty((rows, nb), device=x2.device, dtype=torch.float32)
    part_m2 = torch.empty_like(part_sum)
    _stats_kernel[(nb, rows)](x2, part_sum, part_m2, S, nb, BS=BS, num_warps=8)
    counts = torch.full((nb,), float(BS), device=x2.device)
    counts[-1] = S - (nb - 1) * BS
    mean = part_sum.sum(1) / S
    block_means = part_sum / counts
    m2 = part_m2.sum(1) + ((block_means - mean[:, None]) ** 2 * counts).sum(1)  # Chan et al.
    return mean, torch.rsqrt(m2 / S + eps)


class InstanceNormLeakyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps, slope):
        n, c = x.shape[:2]
        x2 = x.contiguous().view(n * c, -1)
        S = x2.shape[1]
        mean, rstd = _row_stats(x2, eps)
        y = torch.empty_like(x2)
        _fwd_kernel[(triton.cdiv(S, BS), n * c)](x2, y, mean, rstd, weight, bias, S, c, slope, BS=BS, num_warps=8)
        ctx.save_for_backward(x2, weight, bias, mean, rstd)
        ctx.shape, ctx.slope = x.shape, slope
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, bias, mean, rstd = ctx.saved_tensors
        rows, S = x2.shape
        c = ctx.shape[1]
        nb = triton.cdiv(S, BS)
        dy2 = dy.contiguous().view(rows, S)
        sg = torch.empty((rows, nb), device=x2.device, dtype=torch.float32)
        sgx = torch.empty_like(sg)
        _bwd_sums_kernel[(nb, rows)](x2, dy2, mean, rstd, weight, bias, sg, sgx, S, c, nb, ctx.slope, BS=BS,
                                     num_warps=8)
        dz_sum, dzx_sum = sg.sum(1), sgx.sum(1)                          # per row: Σ dz, Σ dz x̂
        w_rows = weight.float().repeat(rows // c)
        dx = torch.empty_like(x2)
        _bwd_dx_kernel[(nb, rows)](x2, dy2, dx, mean, rstd, weight, bias, w_rows * dz_sum / S,
                                   w_rows * dzx_sum / S, S, c, ctx.slope, BS=BS, num_warps=8)
        dw = dzx_sum.view(-1, c).sum(0).to(weight.dtype)
        db = dz_sum.view(-1, c).sum(0).to(bias.dtype)
        return dx.view(ctx.shape), dw, db, None, None


def instance_norm_leaky_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                             slope: float) -> torch.Tensor:
    """F.leaky_relu(F.instance_norm(x, weight=weight, bias=bias, eps=eps), slope) for x (N, C, *spatial), in
    x's dtype (statistics and arithmetic in float32)."""
    return InstanceNormLeakyReLU.apply(x, weight, bias, float(eps), float(slope))
