"""Causal depthwise Conv1d + SiLU of the Mamba block: which kernel runs it.

On CUDA tensors (UMAMBA_CONV_BACKEND overrides `auto`), auto takes the first that can run (umamba.mamba.backends):
    triton         our kernel (conv_triton.py), on compute capability >= 7.0. On an H200 at U-Mamba Enc's first
                   stage (64 channels, 2,097,152 steps, b 2) forward / forward+backward: 0.61 / 3.7 ms, against
                   causal-conv1d's 2.6 / 5.7 ms and torch's 4.3 / 20 ms (BENCHMARKS.md)
    causal-conv1d  the compiled kernel of the `causal_conv1d` package, as the original U-Mamba uses (probed with
                   importlib, imported on first use, never needed)
    torch          depthwise `F.conv1d`
On the CPU: for float32 inference a compiled one-pass loop (numba, like the scan's fast path), else W shifted
multiply-adds (faster than oneDNN's depthwise conv on long sequences); elsewhere F.conv1d.
"""

from __future__ import annotations

import importlib
import os

import torch
import torch.nn.functional as F

from umamba.errors import UserError
from umamba.mamba import backends

ENV_VAR = backends.CONV_ENV
BACKENDS = ("auto", "causal-conv1d", "triton", "torch")


def causal_conv1d_kernel():
    """causal_conv1d.causal_conv1d_fn when the package and its CUDA extension import, else None (probed once)."""
    return importlib.import_module("causal_conv1d").causal_conv1d_fn if backends.probe("causal-conv1d").ok else None


def triton_conv():
    """conv_triton.causal_conv1d_silu_triton when Triton imports, else None (probed once)."""
    if not backends.probe("triton-conv").ok:
        return None
    return importlib.import_module("umamba.mamba.conv_triton").causal_conv1d_silu_triton


def resolve_conv_backend(x: torch.Tensor) -> str:
    """UMAMBA_CONV_BACKEND, or the auto rule of umamba.mamba.backends (triton on compute capability >= 7.0 >
    causal-conv1d > torch on CUDA; "cpu" on the CPU, "torch" elsewhere); checks that a forced choice can run."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced and forced not in BACKENDS:
        raise UserError(f"{ENV_VAR}={forced!r} is not a convolution backend", f"use one of: {', '.join(BACKENDS)}")
    choice = backends.resolve_backend("conv", x.device).backend
    if choice == "causal-conv1d" and (not x.is_cuda or causal_conv1d_kernel() is None):
        raise UserError(f"{ENV_VAR}=causal-conv1d, but its CUDA kernel does not import here "
                        f"({backends.probe('causal-conv1d').error}) or the tensors are not on a CUDA device",
                        f"pip install causal-conv1d, or unset {ENV_VAR}")
    if choice == "triton":
        from umamba.mamba.scan_triton import interpreting  # noqa: PLC0415 (triton imports: checked first)
        usable, why = backends.triton_usable(x.device, "triton-conv")
        if triton_conv() is None or not (usable or interpreting()):
            raise UserError(f"{ENV_VAR}=triton, but the Triton conv cannot run on {x.device}: {why}",
                            f"unset {ENV_VAR} to use causal-conv1d's kernel or torch's conv")
    if choice == "torch" and x.device.type == "cpu":
        return "cpu"
    return choice


def _numba_conv_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The compiled one-pass loop (scan_numba_kernel.conv1d_silu) runs float32 CPU inference when the numba scan
    path works here (same module, same JIT cache); training keeps the torch ops, which autograd differentiates."""
    if x.dtype != torch.float32 or torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    if any(s < 0 for s in x.stride()):
        return False
    from umamba.mamba import scan_numba

    if not scan_numba.is_available():
        return False
    try:
        scan_numba._kernel()
    except scan_numba.NumbaUnavailable:
        return False
    return True


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU(causal depthwise conv1d(x)): x (B, E, L), weight (E, 1, W), bias (E,) -> (B, E, L).

    out[b, e, t] = SiLU(bias[e] + Σ_k weight[e, 0, k] · x[b, e, t - (W-1) + k]), x = 0 before t = 0.
    """
    seqlen = x.shape[-1]
    width = weight.shape[-1]
    backend = resolve_conv_backend(x)
    if backend == "causal-conv1d":
        return causal_conv1d_kernel()(x, weight.squeeze(1), bias, activation="silu")
    if backend == "triton":
        return triton_conv()(x, weight, bias)
    if backend == "cpu" and _numba_conv_applies(x, weight):
        from umamba.mamba.scan_numba_kernel import conv1d_silu

        out = torch.empty(x.shape, dtype=torch.float32)
        w = weight.detach()[:, 0].to(torch.float32).contiguous()
        b = bias.detach().to(torch.float32) if bias is not None else torch.zeros(w.shape[0])
        conv1d_silu(x.numpy(), w.numpy(), b.contiguous().numpy(), out.numpy())
        return out
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
