"""A linear map over the channel axis of channels-first sequences: y[b] = W x[b] for x (B, K, L) -> (B, M, L).

Why not `W @ x`: torch.matmul of a 2-D by a 3-D tensor folds the batch into the rows of x transposed, which
copies x into (B·L, K) and returns a transposed view; at U-Mamba Enc's first stage (L 2,097,152) those strided
copies, and their gradients', cost more than the selective scan (BENCHMARKS.md, GPU). One matrix product per
batch element reads each x[b] (K, L) where it lies (any strides a BLAS accepts: unit stride along L or K) and
writes y contiguous; the Mamba block then needs no transposing copy anywhere.
"""

from __future__ import annotations

import torch


class ChannelLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        y = x.new_empty((x.shape[0], w.shape[0], x.shape[2]))          # (B, M, L)
        for i in range(x.shape[0]):
            torch.mm(w, x[i], out=y[i])                                 # (M, K) @ (K, L)
        ctx.save_for_backward(x, w)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = dy.new_empty(x.shape)                                  # (B, K, L)
            for i in range(x.shape[0]):
                torch.mm(w.t(), dy[i], out=dx[i])                       # dx_b = Wᵀ dy_b
        if ctx.needs_input_grad[1]:
            dw = torch.zeros_like(w)
            for i in range(x.shape[0]):
                dw.addmm_(dy[i], x[i].t())                              # dW = Σ_b dy_b x_bᵀ
        return dx, dw


def channel_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (B, K, L), w (M, K) -> (B, M, L) contiguous, = (w @ x) without a copy of x.

    Under autocast, or with x and w of different dtypes, this is `w @ x` (autocast picks the dtype of the
    product; `torch.mm(out=...)` would not follow it). MambaLayer runs the block with autocast off."""
    if x.dtype != w.dtype or torch.is_autocast_enabled(x.device.type):
        return w @ x
    return ChannelLinear.apply(x, w)
