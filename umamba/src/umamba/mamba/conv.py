"""Causal depthwise Conv1d + SiLU of the Mamba block, with causal-conv1d's CUDA kernel when it is installed.

The `causal_conv1d` package is probed with importlib and imported only on first use with a CUDA tensor, so
importing umamba never needs it; everywhere else (CPU, MPS, no kernel) a depthwise `F.conv1d` does the same.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch
import torch.nn.functional as F

_causal_conv1d_fn = None
_probed = False


def causal_conv1d_kernel():
    """causal_conv1d.causal_conv1d_fn when the package and its CUDA extension import, else None."""
    global _causal_conv1d_fn, _probed
    if not _probed:
        _probed = True
        if importlib.util.find_spec("causal_conv1d") is not None:
            try:
                _causal_conv1d_fn = importlib.import_module("causal_conv1d").causal_conv1d_fn
            except Exception:  # a wheel built for another torch/CUDA fails here: fall back, never crash
                _causal_conv1d_fn = None
    return _causal_conv1d_fn


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU(causal depthwise conv1d(x)): x (B, E, L), weight (E, 1, W), bias (E,) -> (B, E, L).

    out[b, e, t] = SiLU(bias[e] + Σ_k weight[e, 0, k] · x[b, e, t - (W-1) + k]), x = 0 before t = 0.
    """
    seqlen = x.shape[-1]
    width = weight.shape[-1]
    if x.is_cuda and causal_conv1d_kernel() is not None:
        return _causal_conv1d_fn(x, weight.squeeze(1), bias, activation="silu")
    if x.device.type == "cpu":
        # W shifted multiply-adds: about twice as fast as oneDNN's depthwise conv on long sequences
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        if bias is not None:
            out.copy_(bias.to(x.dtype)[:, None].expand_as(x))
        else:
            out.zero_()
        for k in range(width):
            shift = width - 1 - k                                   # tap k sees x[t - shift]
            if shift < seqlen:
                out[..., shift:].addcmul_(x[..., :seqlen - shift], weight[:, 0, k, None])
        return F.silu(out)
    # padding W-1 on both sides and keeping the first L outputs = left padding only (causal)
    return F.silu(F.conv1d(x, weight, bias, padding=width - 1, groups=x.shape[1])[..., :seqlen])
