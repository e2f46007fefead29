"""The portable selective scan: exact against the float64 reference (scan_ref), gradcheck, chunk boundaries."""

from __future__ import annotations

import pytest
import torch

from umamba.mamba import selective_scan
from umamba.mamba.scan_portable import chunk_shape, selective_scan_portable
from umamba.mamba.scan_ref import selective_scan_ref


def make(b, d, n, l, dtype=torch.float64, seed=0, softplus=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)   # noqa: E731
    delta = r(b, d, l) * 0.7 - (1.0 if softplus else -0.3)
    if not softplus:
        delta = delta.abs() * 0.3                                # a raw Δ must be ≥ 0 to be a decay...
        delta[..., ::7] *= -1                                    # ...but the scan must also take Δ < 0 (a > 1)
    return dict(u=r(b, d, l), delta=delta, A=-torch.rand(d, n, generator=g, dtype=dtype) * 4,
                B=r(b, n, l), C=r(b, n, l), D=r(d), z=r(b, d, l), delta_bias=r(d) * 0.5)


@pytest.mark.parametrize("b,d,n,l,chunk", [(2, 3, 4, 1, None), (2, 3, 4, 37, 16), (1, 5, 3, 200, 64),
                                           (2, 3, 4, 150, None), (1, 2, 2, 300, 48), (3, 4, 8, 97, 7)])
@pytest.mark.parametrize("softplus", [True, False])
def test_matches_reference_values_and_gradients(b, d, n, l, chunk, softplus):
    x = make(b, d, n, l, softplus=softplus, seed=l)
    for v in x.values():
        v.requires_grad_()
    y = selective_scan_portable(**x, delta_softplus=softplus, chunk_len=chunk)
    y_ref = selective_scan_ref(**x, delta_softplus=softplus)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, list(x.values()), gy)
    grads_ref = torch.autograd.grad(y_ref, list(x.values()), gy)
    assert (y - y_ref).norm() <= 1e-12 * y_ref.norm()
    scale = grads_ref[0].norm()           # at l = 1, ∂y/∂A = 0 exactly; ours is rounding residue of that size
    for name, g, g_ref in zip(x, grads, grads_ref):
        assert (g - g_ref).norm() <= 1e-12 * (g_ref.norm() + (scale if l == 1 else 0)), name


def test_optional_inputs_absent():
    x = make(2, 3, 4, 45)
    del x["D"], x["z"], x["delta_bias"]
    for v in x.values():
        v.requires_grad_()
    y = selective_scan_portable(**x, chunk_len=16)
    y_ref = selective_scan_ref(**x)
    assert torch.allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    grads = torch.autograd.grad(y.sum(), list(x.values()))
    grads_ref = torch.autograd.grad(y_ref.sum(), list(x.values()))
    for g, g_ref in zip(grads, grads_ref):
        assert torch.allclose(g, g_ref, rtol=1e-11, atol=1e-13)


def test_gradcheck_small_case_with_all_inputs():
    x = make(2, 3, 2, 11)
    for v in x.values():
        v.requires_grad_()
    names = list(x)

    def fn(*tensors):
        return selective_scan(**dict(zip(names, tensors)), delta_softplus=True, backend="portable")

    assert torch.autograd.gradcheck(fn, tuple(x.values()), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_float32_state_for_reduced_precision_inputs():
    x = make(1, 4, 4, 130, dtype=torch.float32)
    ref = selective_scan_ref(**{k: v.double() for k, v in x.items()}, delta_softplus=True)
    y32 = selective_scan_portable(**x, delta_softplus=True)
    assert y32.dtype == torch.float32
    assert (y32.double() - ref).norm() <= 1e-5 * ref.norm()
    xb = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    yb = selective_scan_portable(**xb, delta_softplus=True)
    assert yb.dtype == torch.bfloat16                            # output in u's dtype, state float32
    ref_b = selective_scan_ref(**{k: v.double() for k, v in xb.items()}, delta_softplus=True)
    assert (yb.double() - ref_b).norm() <= 1e-2 * ref_b.norm()


def test_large_decays_do_not_overflow():
    """Δ·A down to -1e4 per step: decays underflow to 0, nothing overflows (no exp(-cumsum) tricks)."""
    x = make(1, 2, 3, 300)
    x["delta"] = x["delta"].abs() * 300
    y = selective_scan_portable(**x, chunk_len=64)
    assert torch.isfinite(y).all()
    assert torch.allclose(y, selective_scan_ref(**x), rtol=1e-12, atol=1e-12)


def test_chunk_shape_bounds_memory_not_length():
    # stage 0 of U-Mamba Enc 3D: the chunk does not grow with l
    T, Q = chunk_shape(1, 64, 16, 2_097_152)
    assert T * 64 * 16 <= 1 << 22 and T % Q == 0
    assert chunk_shape(1, 64, 16, 20_000_000) == (T, Q)
    assert chunk_shape(1, 4, 2, 10)[0] == 16                      # never much beyond l


def test_reference_in_chunks_equals_the_reference_step_by_step():
    """The chunked form of the reference (for long sequences) is the same scan: partial last chunk, all options."""
    x = make(2, 3, 4, 45)
    whole = selective_scan_ref(**x, delta_softplus=True)
    for K in (7, 16, 45):
        assert (selective_scan_ref(**x, delta_softplus=True, chunk_len=K) - whole).norm() <= 1e-12 * whole.norm()
