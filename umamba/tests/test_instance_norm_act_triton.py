"""The Triton InstanceNorm+LeakyReLU of the conv blocks (opt-in, UMAMBA_NORM_BACKEND=triton) against torch in
float64 (output, dx, dγ, dβ), and the blocks with it against the blocks without it.

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
@pytest.mark.parametrize("shape, dtype, bs", [((2, 3, 5, 7, 9), torch.float32, 64), ((1, 4, 6, 6), torch.float16, 16),
                                              ((2, 2, 37), torch.float32, 4096)])
def test_matches_float64_instance_norm_and_leaky_relu(shape, dtype, bs, monkeypatch):
    pytest.importorskip("triton")
    from umamba.nets import instance_norm_act_triton as na

    monkeypatch.setattr(na, "BS", bs)  # small blocks: several per row and a partial last one
    c = shape[1]
    g = torch.Generator().manual_seed(c)
    x64 = (torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 1.5).to(dtype).double()
    w64 = torch.randn(c, generator=g, dtype=torch.float64).float().double()
    b64 = torch.randn(c, generator=g, dtype=torch.float64).float().double()
    gy = torch.randn(*shape, generator=g, dtype=torch.float64)
    xr, wr, br = (t.clone().requires_grad_() for t in (x64, w64, b64))
    y_ref = F.leaky_relu(F.instance_norm(xr, weight=wr, bias=br, eps=1e-5), 0.01)
    y_ref.backward(gy)

    x = x64.to(dtype).to(DEVICE).requires_grad_()
    w = w64.float().to(DEVICE).requires_grad_()
    b = b64.float().to(DEVICE).requires_grad_()
    y = na.instance_norm_leaky_relu(x, w, b, 1e-5, 0.01)
    assert y.dtype == dtype and y.shape == shape
    y.backward(gy.to(dtype).to(DEVICE))
    assert x.grad.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 3e-3   # float16: y, dy and dx are rounded to float16
    errors = {"y": _rel(y.detach(), y_ref.detach()), "dx": _rel(x.grad, xr.grad), "dw": _rel(w.grad, wr.grad),
              "db": _rel(b.grad, br.grad)}
    assert all(e < tol for e in errors.values()), errors


@needs_device
def test_blocks_same_with_and_without_it(monkeypatch):
    """BasicResBlock and BasicBlockD with UMAMBA_NORM_BACKEND=triton: the same output and gradients as torch's
    InstanceNorm and LeakyReLU modules, and the same state_dict keys."""
    pytest.importorskip("triton")
    from umamba.nets import blocks

    torch.manual_seed(0)
    nets = [blocks.BasicResBlock(3, 2, 4, (3, 3, 3), 2).to(DEVICE), blocks.BasicBlockD(3, 3, (3, 3, 3)).to(DEVICE)]
    inputs = [torch.randn(2, 2, 6, 4, 6, device=DEVICE), torch.randn(1, 3, 4, 5, 3, device=DEVICE)]
    calls = []
    real = blocks._fused_norm_act

    def spy(x):
        fn = real(x)
        calls.append(fn is not None)
        return fn
    monkeypatch.setattr(blocks, "_fused_norm_act", spy)

    def run(net, x):
        xi = x.clone().requires_grad_()
        y = net(xi)
        return [y.detach(), *torch.autograd.grad(y, [xi, *net.parameters()], torch.ones_like(y))]
    for net, x in zip(nets, inputs):
        monkeypatch.setenv(blocks.NORM_BACKEND_ENV, "triton")
        fused = run(net, x)
        monkeypatch.setenv(blocks.NORM_BACKEND_ENV, "torch")
        plain = run(net, x)
        for a, b in zip(fused, plain):  # absolute too: a conv bias before a norm has a gradient of ~0
            torch.testing.assert_close(a.double().cpu(), b.double().cpu(), rtol=1e-4, atol=1e-5)
    assert calls == [True, False, True, False]


@wrapper
def test_under_triton_interpreter():
    run_under_interpreter(__file__, expected_passed=4)
