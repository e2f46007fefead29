"""mamba-ssm's compiled selective-scan kernel (`selective_scan_cuda`), loaded lazily and only if it imports.

The extension module is probed with importlib.util.find_spec and imported on first use; the `mamba_ssm` package
itself is never imported (its __init__ pulls in triton, transformers and the extension unconditionally). The
autograd wrapper below calls the extension's fwd/bwd directly, with the argument lists of mamba-ssm 1.x/2.x
(newer builds take one more optional argument, cu_seqlens, which is passed as None).
"""

from __future__ import annotations

import importlib

import torch


def extension():
    """The selective_scan_cuda module, or None when it is not installed or fails to import (probed once, the error
    kept: umamba.mamba.backends)."""
    from umamba.mamba import backends

    return importlib.import_module("selective_scan_cuda") if backends.probe("mamba-ssm").ok else None


def is_available() -> bool:
    return extension() is not None


def _call(fn, *args):
    """Call ext.fwd / ext.bwd with the argument list this build expects (with or without cu_seqlens)."""
    try:
        return fn(*args)
    except TypeError:
        return fn(*args, None)


class _CudaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):
        ext = extension()
        u, delta = u.contiguous(), delta.contiguous()
        # the kernel wants B, C in u's dtype with a group axis: (b, n, l) -> (b, 1, n, l)
        B = B.to(u.dtype).contiguous().unsqueeze(1)
        C = C.to(u.dtype).contiguous().unsqueeze(1)
        A = A.float().contiguous()
        D = D.float().contiguous() if D is not None else None
        z = z.contiguous() if z is not None else None
        delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
        out, x, *rest = _call(ext.fwd, u, delta, A, B, C, D, z, delta_bias, softplus)
        ctx.softplus = softplus
        ctx.has_z = z is not None
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        return rest[0] if z is not None else out

    @staticmethod
    def backward(ctx, dout):
        ext = extension()
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, ddelta_bias, *rest = _call(
            ext.bwd, u, delta, A, B, C, D, z, delta_bias, dout.contiguous(), x, out if ctx.has_z else None,
            None, ctx.softplus, False)
        return (du, ddelta, dA, dB.squeeze(1), dC.squeeze(1), dD if D is not None else None,
                rest[0] if ctx.has_z else None, ddelta_bias if delta_bias is not None else None, None)


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Same contract as `umamba.mamba.selective_scan`, on CUDA tensors, through mamba-ssm's kernel."""
    y = _CudaScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
    return y.to(u.dtype)
