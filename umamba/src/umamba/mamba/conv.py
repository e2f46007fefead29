"""Causal depthwise Conv1d + SiLU of the Mamba block: which kernel runs it.

On CUDA tensors (UMAMBA_CONV_BACKEND overrides `auto`), auto takes the first that imports:
    triton         our kernel (conv_triton.py). On an H200 at U-Mamba Enc's first stage (64 channels, 2,097,152
                   steps, b 2) forward / forward+backward: 0.61 / 3.7 ms, against causal-conv1d's 2.6 / 5.7 ms
                   and torch's 4.3 / 20 ms (BENCHMARKS.md)
    causal-conv1d  the compiled kernel of the `causal_conv1d` package, as the original U-Mamba uses (probed with
                   importlib, imported on first use, never needed)
    torch          depthwise `F.conv1d`
On the CPU: W shifted multiply-adds (faster than oneDNN's depthwise conv on long sequences); elsewhere F.conv1d.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from umamba.errors import UserError
from umamba.mamba.optional import optional_module

ENV_VAR = "UMAMBA_CONV_BACKEND"
BACKENDS = ("auto", "causal-conv1d", "triton", "torch")

def causal_conv1d_kernel():
    """causal_conv1d.causal_conv1d_fn when the package and its CUDA extension import, else None."""
    module = optional_module("causal_conv1d")
    return getattr(module, "causal_conv1d_fn", None)


@functools.cache
def triton_conv():
    """conv_triton.causal_conv1d_silu_triton when Triton imports, else None (probed once: this is on every
    forward, and a failed import would search the path again each time)."""
    try:
        from umamba.mamba.conv_triton import causal_conv1d_silu_triton
    except ImportError:
        return None
    return causal_conv1d_silu_triton


def resolve_conv_backend(x: torch.Tensor) -> str:
    """UMAMBA_CONV_BACKEND, or the auto rule: triton > causal-conv1d > torch on CUDA; "cpu"/"torch" elsewhere."""
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise UserError(f"{ENV_VAR}={choice!r} is not a convolution backend", f"use one of: {', '.join(BACKENDS)}")
    if choice == "auto":
        if not x.is_cuda:
            return "cpu" if x.device.type == "cpu" else "torch"
        if triton_conv() is not None:
            return "triton"
        return "causal-conv1d" if causal_conv1d_kernel() is not None else "torch"
    if choice == "causal-conv1d" and (not x.is_cuda or causal_conv1d_kernel() is None):
        raise UserError(f"{ENV_VAR}=causal-conv1d, but its CUDA kernel does not import here or the tensors are "
                        "not on a CUDA device", f"pip install causal-conv1d, or unset {ENV_VAR}")
    if choice == "triton":
        from umamba.mamba.scan_triton import is_available  # noqa: PLC0415 (needs triton, checked next)
        if triton_conv() is None or not is_available(x.device):
            raise UserError(f"{ENV_VAR}=triton, but Triton does not import or cannot run on {x.device}",
                            f"pip install triton and use a CUDA device, or unset {ENV_VAR}")
    if choice == "torch" and x.device.type == "cpu":
        return "cpu"
    return choice


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU(causal depthwise conv1d(x)): x (B, E, L), weight (E, 1, W), bias (E,) -> (B, E, L).

    out[b, e, t] = SiLU(bias[e] + Σ_k weight[e, 0, k] · x[b, e, t - (W-1) + k]), x = 0 before t = 0.
    """
    seqlen = x.shape[-1]
    width = weight.shape[-1]
    backend = resolve_conv_backend(x)
    if backend == "causal-conv1d":
        return _causal_conv1d_fn(x, weight.squeeze(1), bias, activation="silu")
    if backend == "triton":
        return triton_conv()(x, weight, bias)
    if backend == "cpu":
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
