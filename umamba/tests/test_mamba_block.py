"""umamba.mamba.Mamba against the checkpoint contract and an independent naive float64 reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from umamba.mamba import Mamba
from umamba.mamba import scan_portable
from umamba.mamba.scan_ref import selective_scan_ref

# docs/architecture.md, "The Mamba block": key -> shape as a function of (E, N, d, R, W)
SPEC = {
    "A_log": lambda E, N, d, R, W: (E, N),
    "D": lambda E, N, d, R, W: (E,),
    "in_proj.weight": lambda E, N, d, R, W: (2 * E, d),
    "conv1d.weight": lambda E, N, d, R, W: (E, 1, W),
    "conv1d.bias": lambda E, N, d, R, W: (E,),
    "x_proj.weight": lambda E, N, d, R, W: (R + 2 * N, E),
    "dt_proj.weight": lambda E, N, d, R, W: (E, R),
    "dt_proj.bias": lambda E, N, d, R, W: (E,),
    "out_proj.weight": lambda E, N, d, R, W: (d, E),
}


@pytest.mark.parametrize("d_model,d_state,d_conv,expand", [(32, 16, 4, 2), (320, 16, 4, 2), (20, 8, 3, 1)])
def test_state_dict_matches_spec_table(d_model, d_state, d_conv, expand):
    m = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand, dtype=torch.float64)
    E, R = expand * d_model, math.ceil(d_model / 16)
    sd = m.state_dict()
    assert list(sd) == list(SPEC)
    for key, shape in SPEC.items():
        assert tuple(sd[key].shape) == shape(E, d_state, d_model, R, d_conv), key
        # A_log and D stay float32 whatever dtype the module is built in
        assert sd[key].dtype == (torch.float32 if key in ("A_log", "D") else torch.float64), key
    assert m.A_log._no_weight_decay and m.D._no_weight_decay
    assert sum(p.numel() for p in m.parameters()) == sum(v.numel() for v in sd.values())


def test_initialisation_follows_mamba_simple():
    torch.manual_seed(1)
    m = Mamba(48, dt_min=0.001, dt_max=0.1)
    E, N, R = 96, 16, 3
    assert torch.equal(m.A_log, torch.log(torch.arange(1, N + 1, dtype=torch.float32)).expand(E, N))
    assert torch.equal(m.D, torch.ones(E))
    assert m.dt_proj.weight.abs().max() <= R ** -0.5
    assert m.dt_proj.weight.std() > 0.4 * R ** -0.5          # uniform, not constant
    dt = F.softplus(m.dt_proj.bias.double())                 # bias = softplus^-1(dt)
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert m.dt_proj.bias._no_reinit
    m2 = Mamba(48, dt_init="constant")
    assert torch.allclose(m2.dt_proj.weight, torch.full_like(m2.dt_proj.weight, R ** -0.5))
    with pytest.raises(ValueError, match="dt_init"):
        Mamba(48, dt_init="bogus")


def reference_mamba(p: dict, h: torch.Tensor, d_state: int, dt_rank: int) -> torch.Tensor:
    """Mamba v1 forward written out step by step, independent of the block's code paths (the scan: scan_ref)."""
    Bsz, L, _ = h.shape
    E = p["D"].shape[0]
    W = p["conv1d.weight"].shape[-1]
    xz = h @ p["in_proj.weight"].T                           # (B, L, 2E)
    x, z = xz[..., :E], xz[..., E:]
    # causal depthwise conv: out_t = bias + Σ_k w_k x_{t-(W-1)+k}, zeros before t = 0
    conv = p["conv1d.bias"].expand(Bsz, L, E).clone()
    for k in range(W):
        shift = W - 1 - k
        if shift < L:
            conv[:, shift:, :] = conv[:, shift:, :] + p["conv1d.weight"][:, 0, k] * x[:, :L - shift, :]
    x = conv * torch.sigmoid(conv)
    dbl = x @ p["x_proj.weight"].T
    dt, Bm, Cm = dbl[..., :dt_rank], dbl[..., dt_rank:dt_rank + d_state], dbl[..., dt_rank + d_state:]
    v = dt @ p["dt_proj.weight"].T + p["dt_proj.bias"]                # delta = softplus(v)
    A = -torch.exp(p["A_log"])
    y = selective_scan_ref(x.transpose(1, 2), v.transpose(1, 2), A, Bm.transpose(1, 2), Cm.transpose(1, 2), p["D"],
                           z.transpose(1, 2), delta_softplus=True)  # (B, E, L), float64, y·SiLU(z)
    return y.transpose(1, 2).to(h.dtype) @ p["out_proj.weight"].T


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


CASES = [(1, 1, 16), (2, 37, 32), (3, 16, 24), (1, 70, 40)]


@pytest.mark.parametrize("b,l,d_model", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_outputs_and_all_gradients_match_reference(monkeypatch, b, l, d_model, dtype, tol):
    # small chunks: several chunks per sequence, the last one partial (l = 37, 70 are not multiples of 16)
    monkeypatch.setattr(scan_portable, "CHUNK_ELEMENTS", b * 2 * d_model * 16 * 16)
    assert scan_portable.chunk_shape(b, 2 * d_model, 16, l)[0] == (16 if l > 1 else 1)
    torch.manual_seed(b * 1000 + l)
    m = Mamba(d_model).to(dtype)   # float64: A_log and D too, so that every gradient is a float64 number
    with torch.no_grad():      # make the gate, D and the conv bias matter more than at initialisation
        m.D.uniform_(-1, 1)
        m.conv1d.bias.uniform_(-0.5, 0.5)
        m.dt_proj.bias.add_(1.0)
    h = torch.randn(b, l, d_model, dtype=dtype, requires_grad=True)
    y = m(h)
    assert y.shape == (b, l, d_model) and y.dtype == dtype
    gy = torch.randn_like(y)
    y.backward(gy)

    ref = {k: v.detach().double().requires_grad_() for k, v in m.named_parameters()}
    h64 = h.detach().double().requires_grad_()
    y_ref = reference_mamba(ref, h64, m.d_state, m.dt_rank)
    y_ref.backward(gy.double())

    assert _rel(y, y_ref) <= tol
    assert _rel(h.grad, h64.grad) <= tol
    for name, param in m.named_parameters():
        assert param.grad is not None, name
        assert param.grad.dtype == param.dtype, name
        if l == 1 and name == "A_log":     # h_{-1} = 0: A has no influence at l = 1 (only rounding residue)
            assert torch.all(ref[name].grad == 0)
            assert param.grad.abs().max() <= tol * h64.grad.abs().max()
            continue
        assert _rel(param.grad, ref[name].grad) <= tol, name


@pytest.mark.parametrize("b,l,d_model", [(2, 53, 32), (1, 1, 16)])
def test_inference_path_matches_reference(b, l, d_model):
    """Under no_grad `auto` may take the CPU fast path; it must give the same numbers."""
    torch.manual_seed(7)
    m = Mamba(d_model)
    h = torch.randn(b, l, d_model)
    with torch.no_grad():
        y = m(h)
    ref = {k: v.detach().double() for k, v in m.named_parameters()}
    y_ref = reference_mamba(ref, h.double(), m.d_state, m.dt_rank)
    assert _rel(y, y_ref) <= 1e-4


@pytest.mark.parametrize("bad,expect", [
    (lambda: torch.randn(10, 32), r"\(batch, length, d_model=32\)"),
    (lambda: torch.randn(2, 10, 31), r"got \(2, 10, 31\)"),
    (lambda: torch.randn(1, 2, 10, 32), r"\(batch, length, d_model=32\)"),
    (lambda: torch.randn(2, 0, 32), "length ≥ 1"),
])
def test_bad_input_says_what_was_expected(bad, expect):
    m = Mamba(32)
    with pytest.raises(ValueError, match=expect):
        m(bad())


@pytest.mark.parametrize("transposed", [False, True], ids=["channels_first", "tokens_first_view"])
def test_channel_linear_is_w_at_x_with_gradients(transposed):
    """channel_linear (the block's projections): w @ x per batch element, for (B, K, L) storage and for the
    (B, K, L) view of (B, L, K) storage; float64 gradcheck of both inputs."""
    from umamba.mamba.channel_linear import channel_linear

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 7, 5, generator=g, dtype=torch.float64).transpose(1, 2) if transposed else \
        torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    w = torch.randn(3, 5, generator=g, dtype=torch.float64)
    y = channel_linear(x, w)
    assert y.shape == (2, 3, 7) and y.is_contiguous()
    assert torch.allclose(y, torch.einsum("mk,bkl->bml", w, x), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(channel_linear, (x.clone().requires_grad_(), w.clone().requires_grad_()))
