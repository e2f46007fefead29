"""The Triton causal depthwise Conv1d + SiLU against torch's float64 conv1d with autograd (output, dx, dw, dbias).

Without a GPU (CI) the kernels run under Triton's interpreter: `test_under_triton_interpreter` re-runs this file
in a subprocess with TRITON_INTERPRET=1 (triton_interpreter.py). Small step blocks make the cases cover
several programs along the sequence, a partial last block, a partial channel block and the causal left edge.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from umamba.errors import UserError

from triton_interpreter import DEVICE, needs_device, run_under_interpreter, wrapper


def reference(x, w, bias):
    """SiLU(causal depthwise conv1d): left padding W-1, float64 autograd."""
    return F.silu(F.conv1d(F.pad(x, (w.shape[-1] - 1, 0)), w, bias, groups=x.shape[1]))


def _rel(x, ref):
    return ((x.double().cpu() - ref).norm() / ref.norm()).item()


# (b, e, l, width, has_bias, dtype, block_l, strided)
CASES = {
    "f32_blocks_partial_strided": (2, 5, 37, 4, True, torch.float32, 16, True),
    "f64_no_bias_width3": (1, 3, 10, 3, False, torch.float64, 8, False),
    "bf16_one_block": (2, 4, 9, 4, True, torch.bfloat16, 16, False),
}


@needs_device
@pytest.mark.parametrize("name", list(CASES))
def test_matches_float64_reference(name, monkeypatch):
    pytest.importorskip("triton")
    from umamba.mamba import conv_triton

    b, e, l, width, has_bias, dtype, block_l, strided = CASES[name]
    monkeypatch.setattr(conv_triton, "BL", block_l)
    g = torch.Generator().manual_seed(len(name))
    x64 = torch.randn(b, e, l, generator=g, dtype=torch.float64)
    w64 = torch.randn(e, 1, width, generator=g, dtype=torch.float64) * 0.5
    b64 = torch.randn(e, generator=g, dtype=torch.float64) if has_bias else None
    gy = torch.randn(b, e, l, generator=g, dtype=torch.float64)

    # the kernel's inputs: x in `dtype`, the parameters float32 (float64 in the float64 case), like the block's;
    # the reference gets the same rounded values, so only the kernel's arithmetic is compared
    pdt = torch.float64 if dtype == torch.float64 else torch.float32
    # (clone: .to() of a tensor already in that dtype is the same tensor, and the leaves must be distinct)
    xr = x64.to(dtype).double().clone().requires_grad_()
    wr = w64.to(pdt).double().clone().requires_grad_()
    br = b64.to(pdt).double().clone().requires_grad_() if has_bias else None
    y_ref = reference(xr, wr, br)
    y_ref.backward(gy)

    x = x64.to(dtype).clone()
    if strided:  # (E, B, L) storage viewed as (B, E, L), as the block's chunk of in_proj's output is
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
        assert not x.is_contiguous()
    x = x.to(DEVICE).requires_grad_()
    w = w64.to(pdt).to(DEVICE).clone().requires_grad_()
    bias = b64.to(pdt).to(DEVICE).clone().requires_grad_() if has_bias else None
    y = conv_triton.causal_conv1d_silu_triton(x, w, bias)
    assert y.dtype == dtype and y.shape == (b, e, l) and y.is_contiguous()
    y.backward(gy.to(DEVICE, dtype))

    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    errors = {"y": _rel(y.detach(), y_ref.detach()), "dx": _rel(x.grad, xr.grad), "dw": _rel(w.grad, wr.grad)}
    if has_bias:
        errors["dbias"] = _rel(bias.grad, br.grad)
    assert all(err < tol for err in errors.values()), errors
    assert x.grad.dtype == dtype and w.grad.dtype == pdt


@needs_device
def test_block_conv_dispatch_to_triton(monkeypatch):
    """UMAMBA_CONV_BACKEND=triton routes the Mamba block's convolution here, with the same result."""
    pytest.importorskip("triton")
    from umamba.mamba import conv

    x = torch.randn(2, 3, 20, dtype=torch.float32, device=DEVICE)
    w = torch.randn(3, 1, 4, device=DEVICE)
    bias = torch.randn(3, device=DEVICE)
    monkeypatch.setenv(conv.ENV_VAR, "triton")
    assert conv.resolve_conv_backend(x) == "triton"
    y = conv.causal_conv1d_silu(x, w, bias)
    assert _rel(y, reference(x.double().cpu(), w.double().cpu(), bias.double().cpu())) < 1e-5


def test_conv_backend_choice(monkeypatch):
    from umamba.mamba import conv

    x = torch.zeros(1, 2, 5)
    monkeypatch.delenv(conv.ENV_VAR, raising=False)
    assert conv.resolve_conv_backend(x) == "cpu"          # auto on the CPU: the shifted multiply-adds
    monkeypatch.setenv(conv.ENV_VAR, "torch")
    assert conv.resolve_conv_backend(x) == "cpu"
    monkeypatch.setenv(conv.ENV_VAR, "cudnn")
    with pytest.raises(UserError, match="not a convolution backend"):
        conv.resolve_conv_backend(x)
    monkeypatch.setenv(conv.ENV_VAR, "causal-conv1d")
    with pytest.raises(UserError, match="causal-conv1d"):
        conv.resolve_conv_backend(x)


@wrapper
def test_under_triton_interpreter():
    run_under_interpreter(__file__, expected_passed=5)
