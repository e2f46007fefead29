"""Causal depthwise Conv1d + SiLU of the Mamba block in Triton, forward and backward.

Why: without causal-conv1d's compiled kernel, torch's depthwise `F.conv1d` is the slowest part of the Mamba
block at U-Mamba Enc's full-resolution stages (l up to 2,097,152 tokens, 64 channels): cuDNN has no fast path for
a 4-tap depthwise convolution over such long rows, least of all for the weight gradient (BENCHMARKS.md, GPU).
This is one pass over the data each way, and needs no compiler at install time.

For x (B, E, L), weight w (E, W), bias β (E,), with x_t = 0 for t < 0:
    p_t = β + Σ_k w_k x_{t-(W-1)+k}          out_t = SiLU(p_t) = p_t σ(p_t)
Backward, with g_t = dout_t · SiLU'(p_t) = dout_t σ(p_t) (1 + p_t (1 - σ(p_t))):
    dx_t = Σ_k w_k g_{t+(W-1)-k}      dw_k = Σ_{b,t} g_t x_{t-(W-1)+k}      dβ = Σ_{b,t} g_t
The backward recomputes p (nothing but x is kept) and writes dw, dβ as per-program partial sums that torch adds
up: deterministic, unlike atomics. All arithmetic in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch

import triton  # an ImportError here tells conv.py that this kernel is unavailable
import triton.language as tl

from umamba.mamba.scan_triton_kernels import _acc

BE = 2      # channels per program  (BE, BL, WARPS: the fastest fwd+bwd of a sweep on an H200, BENCHMARKS.md)
BL = 1024   # steps per program
WARPS = 4


@triton.jit
def _bias(b_ptr, e, em, HAS_BIAS: tl.constexpr, F64: tl.constexpr, BE: tl.constexpr):
    if HAS_BIAS:
        return _acc(tl.load(b_ptr + e, mask=em, other=0.0), F64)
    else:
        return _acc(tl.zeros((BE,), dtype=tl.float32), F64)


@triton.jit
def _pre(x_row, w_ptr, e, em, t, L, bias, W: tl.constexpr, F64: tl.constexpr):
    """p_t = β + Σ_k w_k x_{t-(W-1)+k} for a (BE, BL) tile of channels e and steps t (x_row: x at (b, e, 0))."""
    p = bias[:, None] + tl.zeros(t.shape, dtype=bias.dtype)[None, :]
    for k in tl.static_range(W):
        tt = t - (W - 1 - k)
        m = em[:, None] & ((tt >= 0) & (tt < L))[None, :]
        xv = _acc(tl.load(x_row + tt[None, :], mask=m, other=0.0), F64)
        wk = _acc(tl.load(w_ptr + e * W + k, mask=em, other=0.0), F64)
        p += wk[:, None] * xv
    return p


@triton.jit
def conv_silu_fwd_kernel(x_ptr, w_ptr, b_ptr, out_ptr, E, L, sxb, sxe, sob, soe,
                         W: tl.constexpr, HAS_BIAS: tl.constexpr, F64: tl.constexpr,
                         BE: tl.constexpr, BL: tl.constexpr):
    t = tl.program_id(0) * BL + tl.arange(0, BL)                       # (BL,)
    e = tl.program_id(1) * BE + tl.arange(0, BE)                       # (BE,)
    b = tl.program_id(2).to(tl.int64)
    em = e < E
    bias = _bias(b_ptr, e, em, HAS_BIAS, F64, BE)
    x_row = x_ptr + b * sxb + e[:, None].to(tl.int64) * sxe              # (BE, 1) pointers
    p = _pre(x_row, w_ptr, e, em, t, L, bias, W, F64)                   # (BE, BL)
    out = p / (1.0 + tl.exp(-p))
    m = em[:, None] & (t < L)[None, :]
    tl.store(out_ptr + b * sob + e[:, None].to(tl.int64) * soe + t[None, :],
             out.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def conv_silu_bwd_kernel(x_ptr, w_ptr, b_ptr, dout_ptr, dx_ptr, dw_ptr, db_ptr, E, L, NL,
                         sxb, sxe, sdb, sde, sgb, sge,
                         W: tl.constexpr, HAS_BIAS: tl.constexpr, F64: tl.constexpr,
                         BE: tl.constexpr, BL: tl.constexpr):
    pid_l = tl.program_id(0)
    t = pid_l * BL + tl.arange(0, BL)
    e = tl.program_id(1) * BE + tl.arange(0, BE)
    b = tl.program_id(2).to(tl.int64)
    em = e < E
    bias = _bias(b_ptr, e, em, HAS_BIAS, F64, BE)
    e64 = e[:, None].to(tl.int64)
    x_row = x_ptr + b * sxb + e64 * sxe
    dout_row = dout_ptr + b * sdb + e64 * sde
    dx = tl.zeros((BE, BL), dtype=bias.dtype)
    for k in tl.static_range(W):
        # tap k of step t reads x_{t-s}, s = W-1-k, so dx_t collects g_{t+s} w_k
        s = W - 1 - k
        ts = t + s
        m = em[:, None] & (ts < L)[None, :]
        p = _pre(x_row, w_ptr, e, em, ts, L, bias, W, F64)
        sig = 1.0 / (1.0 + tl.exp(-p))
        g = _acc(tl.load(dout_row + ts[None, :], mask=m, other=0.0), F64) * sig * (1.0 + p * (1.0 - sig))
        wk = _acc(tl.load(w_ptr + e * W + k, mask=em, other=0.0), F64)
        dx += wk[:, None] * g
        if s == 0:
            # this program's own steps: partial sums of dw and dβ over its BL steps
            part = (b * NL + pid_l) * E + e                               # (BE,) rows of (B, NL, E)
            tl.store(db_ptr + part, tl.sum(g, axis=1), mask=em)
            for j in tl.static_range(W):
                tj = t - (W - 1 - j)
                mj = em[:, None] & ((tj >= 0) & (tj < L))[None, :]
                xv = _acc(tl.load(x_row + tj[None, :], mask=mj, other=0.0), F64)
                tl.store(dw_ptr + part * W + j, tl.sum(g * xv, axis=1), mask=em)
    m = em[:, None] & (t < L)[None, :]
    tl.store(dx_ptr + b * sgb + e64 * sge + t[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m)


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class CausalConv1dSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        x = _unit_stride(x)                                                # (B, E, L), any batch/channel strides
        bsz, e, l = x.shape
        w = weight.reshape(e, -1).contiguous()                             # (E, W)
        out = torch.empty((bsz, e, l), device=x.device, dtype=x.dtype)
        grid = (triton.cdiv(l, BL), triton.cdiv(e, BE), bsz)
        conv_silu_fwd_kernel[grid](x, w, bias if bias is not None else w, out, e, l, x.stride(0), x.stride(1),
                                   out.stride(0), out.stride(1), W=w.shape[1], HAS_BIAS=bias is not None,
                                   F64=x.dtype == torch.float64, BE=BE, BL=BL, num_warps=WARPS)
        ctx.save_for_backward(x, w, bias)
        ctx.weight_shape = weight.shape
        return out

    @staticmethod
    def backward(ctx, dout):
        x, w, bias = ctx.saved_tensors
        dout = _unit_stride(dout)
        bsz, e, l = x.shape
        nl = triton.cdiv(l, BL)
        acc = _acc_dtype(x)
        dx = torch.empty((bsz, e, l), device=x.device, dtype=x.dtype)
        dw_part = torch.empty((bsz, nl, e, w.shape[1]), device=x.device, dtype=acc)
        db_part = torch.empty((bsz, nl, e), device=x.device, dtype=acc)
        grid = (nl, triton.cdiv(e, BE), bsz)
        conv_silu_bwd_kernel[grid](x, w, bias if bias is not None else w, dout, dx, dw_part, db_part, e, l, nl,
                                   x.stride(0), x.stride(1), dout.stride(0), dout.stride(1), dx.stride(0),
                                   dx.stride(1), W=w.shape[1], HAS_BIAS=bias is not None,
                                   F64=x.dtype == torch.float64, BE=BE, BL=BL, num_warps=WARPS)
        dw = dw_part.sum((0, 1)).to(w.dtype).reshape(ctx.weight_shape)
        db = db_part.sum((0, 1)).to(bias.dtype) if bias is not None else None
        return dx, dw, db


def causal_conv1d_silu_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU(causal depthwise conv1d(x)): x (B, E, L) with unit stride along L preferred, weight (E, 1, W) or
    (E, W), bias (E,) or None -> (B, E, L) contiguous, in x's dtype."""
    return CausalConv1dSiLU.apply(x, weight, bias)
