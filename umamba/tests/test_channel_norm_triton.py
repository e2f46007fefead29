"""The Triton channels-first LayerNorm of MambaLayer against torch's LayerNorm in float64 (output, dx, dγ, dβ),
and MambaLayer with it against MambaLayer without it.

Without a GPU (CI) the kernels run under Triton's interpreter: `test_under_triton_interpreter` re-runs this file
in a subprocess with TRITON_INTERPRET=1 (triton_interpreter.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from triton_interpreter import DEVICE, needs_device, run_under_interpreter, wrapper


def _rel(x, ref):
    return ((x.double().cpu() - ref).norm() / ref.norm()).item()


@needs_device
@pytest.mark.parametrize("c, p, dtype, tile", [(5, 37, torch.float32, 64), (32, 40, torch.float16, 256),
                                               (3, 9, torch.float32, 4096)])
def test_matches_float64_layer_norm(c, p, dtype, tile, monkeypatch):
    pytest.importorskip("triton")
    from umamba.nets import channel_norm_triton as cn

    monkeypatch.setattr(cn, "TILE", tile)  # small tiles: several programs along P and a partial last one
    g = torch.Generator().manual_seed(c)
    x64 = (torch.randn(2, c, p, generator=g, dtype=torch.float64) * 2 + 0.5).to(dtype).double()
    w64 = torch.randn(c, generator=g, dtype=torch.float64).float().double()
    b64 = torch.randn(c, generator=g, dtype=torch.float64).float().double()
    gy = torch.randn(2, c, p, generator=g, dtype=torch.float64)
    xr, wr, br = (t.clone().requires_grad_() for t in (x64, w64, b64))
    y_ref = F.layer_norm(xr.transpose(1, 2), (c,), wr, br, 1e-5).transpose(1, 2)
    y_ref.backward(gy)

    x = x64.to(dtype).to(DEVICE).requires_grad_()
    w = w64.float().to(DEVICE).requires_grad_()
    b = b64.float().to(DEVICE).requires_grad_()
    y = cn.channel_layer_norm(x, w, b, 1e-5)
    assert y.dtype == torch.float32 and y.shape == (2, c, p) and y.is_contiguous()
    y.backward(gy.float().to(DEVICE))
    assert x.grad.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-3   # float16: dx is rounded to float16
    errors = {"y": _rel(y.detach(), y_ref.detach()), "dx": _rel(x.grad, xr.grad), "dw": _rel(w.grad, wr.grad),
              "db": _rel(b.grad, br.grad)}
    assert all(e < tol for e in errors.values()), errors


@needs_device
def test_mamba_layer_same_with_and_without_it(monkeypatch):
    """MambaLayer on spatial tokens: the channels-first norm (and the copy-free view into Mamba) gives the
    same output and gradients as torch's LayerNorm on the transposed map."""
    pytest.importorskip("triton")
    from umamba.nets import mamba_layer

    torch.manual_seed(0)
    layer = mamba_layer.MambaLayer(dim=6).to(DEVICE)
    x = torch.randn(2, 6, 3, 2, 4, device=DEVICE)
    gy = torch.randn(2, 6, 3, 2, 4, device=DEVICE)
    calls = []
    real = mamba_layer._channel_norm

    def spy(x_, c):
        fn = real(x_, c)
        calls.append(fn is not None)
        return fn
    monkeypatch.setattr(mamba_layer, "_channel_norm", spy)

    def run():
        xi = x.clone().requires_grad_()
        y = layer(xi)
        grads = torch.autograd.grad(y, [xi, *layer.parameters()], gy)
        return [y.detach(), *grads]
    with_norm = run()
    monkeypatch.setattr(mamba_layer, "_channel_norm", lambda x_, c: None)
    without = run()
    assert calls == [True]
    for a, b in zip(with_norm, without):
        assert _rel(a, b.double().cpu()) < 1e-5


@wrapper
def test_under_triton_interpreter():
    run_under_interpreter(__file__, expected_passed=4)
