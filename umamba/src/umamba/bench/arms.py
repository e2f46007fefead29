"""The kernel arms that GPU benchmarks run side by side: umamba's own kernels ("triton"), the default rules
("auto"), torch alone ("portable"), and the original: mamba-ssm's `Mamba` module with its CUDA kernels
("mamba-ssm"). An arm is a family of kernels (scan and convolution), not a scan alone; "ARM:CONV" names the
convolution explicitly (e.g. "triton:torch").
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types

import torch


class _MambaSsmScan(torch.autograd.Function):
    """The calls mamba-ssm's SelectiveScanFn makes to its compiled kernel (fwd/bwd, B and C given a group axis,
    x and the ungated out kept for backward); used when the mamba_ssm package itself does not import."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        import selective_scan_cuda
        u, delta, z = (None if t is None else (t if t.stride(-1) == 1 else t.contiguous()) for t in (u, delta, z))
        B, C = B.contiguous().unsqueeze(1), C.contiguous().unsqueeze(1)
        out, x, *rest = selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        ctx.delta_softplus = delta_softplus
        return rest[0] if z is not None else out

    @staticmethod
    def backward(ctx, dout):
        import selective_scan_cuda
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, ddelta_bias, *rest = selective_scan_cuda.bwd(
            u, delta, A, B, C, D, z, delta_bias, dout.contiguous(), x, out if z is not None else None, None,
            ctx.delta_softplus, False)
        return (du, ddelta, dA, dB.squeeze(1), dC.squeeze(1), dD if D is not None else None,
                rest[0] if z is not None else None, ddelta_bias if delta_bias is not None else None, None)


def mamba_ssm_scan_fn():
    """mamba-ssm's `selective_scan_fn` when its compiled kernel imports (else None); if only the extension
    imports, not the mamba_ssm package, the same kernel calls through _MambaSsmScan."""
    try:
        import selective_scan_cuda  # noqa: F401  (torch is imported first: libc10.so)
    except Exception:
        return None
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        return selective_scan_fn
    except Exception:
        return lambda u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False: \
            _MambaSsmScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def dispatcher_has(backend: str) -> bool:
    from umamba.mamba.scan import available_backends
    return bool(available_backends().get(backend))


def original_mamba_class():
    """mamba-ssm's own `Mamba` module (mamba_simple.Mamba: its fused `mamba_inner_fn` path when causal-conv1d is
    installed, else its unfused one), or None when the package is not installed or does not import.

    mamba_ssm/__init__.py also imports its language-model code, which needs a transformers API that newer
    transformers releases dropped; the module itself does not, so it is loaded without running that __init__.
    """
    spec = importlib.util.find_spec("mamba_ssm")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        from mamba_ssm.modules.mamba_simple import Mamba as original
        return original
    except Exception:
        for key in [k for k in sys.modules if k == "mamba_ssm" or k.startswith("mamba_ssm.")]:
            del sys.modules[key]
    try:
        package = types.ModuleType("mamba_ssm")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["mamba_ssm"] = package
        from mamba_ssm.modules.mamba_simple import Mamba as original
        return original
    except Exception:
        sys.modules.pop("mamba_ssm", None)
        return None


def use_arm_blocks(net: torch.nn.Module, name: str) -> str:
    """For the "mamba-ssm" arm, replace every umamba Mamba block of `net` by mamba-ssm's own module with the
    same weights (loaded strictly: the checkpoint contract, checked live), so that arm runs the original's code
    around its kernels too. Returns the block class the arm runs."""
    from umamba.mamba import Mamba
    original = original_mamba_class() if name == "mamba-ssm" else None
    if original is None:
        return "umamba.Mamba"
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is Mamba:
                swapped = original(d_model=child.d_model, d_state=child.d_state, d_conv=child.d_conv,
                                   expand=child.expand).to(child.A_log.device)
                swapped.load_state_dict(child.state_dict(), strict=True)
                setattr(parent, child_name, swapped)
    return "mamba_ssm.Mamba"


def arm_conv(name: str) -> str:
    """The convolution kernel of a benchmark arm: each arm is a family of kernels, not a scan alone.
    "mamba-ssm": the original's kernels (causal-conv1d's when it imports, else torch's conv1d, as the original's
    slow path); "triton": umamba's; "auto": the default rule (conv.py); "portable": torch's. "ARM:CONV" names
    the convolution explicitly (e.g. "triton:torch", to see what the convolution kernel alone is worth)."""
    from umamba.mamba.conv import causal_conv1d_kernel
    name, _, conv = name.partition(":")
    if conv:
        return conv
    if name == "mamba-ssm":
        return "causal-conv1d" if causal_conv1d_kernel() is not None else "torch"
    return {"triton": "triton", "auto": "auto"}.get(name, "torch")


@contextlib.contextmanager
def kernels(name: str):
    """Route every `selective_scan` and causal conv1d call of umamba's Mamba block to one arm's kernels
    (UMAMBA_SCAN_BACKEND, UMAMBA_CONV_BACKEND; see `arm_conv`) for the duration.

    "mamba-ssm" uses the dispatcher's "cuda" scan backend when it is available; otherwise the block's scan is
    pointed at mamba-ssm's selective_scan_fn directly (benchmark-only, so the comparison can run before the
    dispatcher's cuda backend exists). "auto" leaves both rules alone.
    """
    import umamba.mamba.block as block

    saved_env = {k: os.environ.get(k) for k in ("UMAMBA_SCAN_BACKEND", "UMAMBA_CONV_BACKEND")}
    saved_fn = block.selective_scan
    try:
        os.environ["UMAMBA_CONV_BACKEND"] = arm_conv(name)
        name = name.partition(":")[0]
        if name == "mamba-ssm":
            if dispatcher_has("cuda"):
                os.environ["UMAMBA_SCAN_BACKEND"] = "cuda"
            else:
                fn = mamba_ssm_scan_fn()
                if fn is None:
                    raise RuntimeError("mamba-ssm's selective_scan_cuda does not import")

                def direct(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **_):
                    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
                block.selective_scan = direct
        else:
            os.environ["UMAMBA_SCAN_BACKEND"] = name
        yield
    finally:
        block.selective_scan = saved_fn
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def available() -> list[str]:
    """The GPU arms that can run here: umamba's Triton kernels, and mamba-ssm's when its kernel imports."""
    names = []
    if dispatcher_has("triton"):
        names.append("triton")
    if dispatcher_has("cuda") or mamba_ssm_scan_fn() is not None:
        names.append("mamba-ssm")
    return names


def chosen(text: str) -> list[str]:
    """The arms of a `--backends a,b` option, or all that are available."""
    return [s for s in text.split(",") if s] or available()
