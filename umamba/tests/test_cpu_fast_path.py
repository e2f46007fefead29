"""The CPU inference fast path: compiled Mamba loops, bfloat16 convolutions where the CPU has native bf16, thread
count; each against the float32 eager path it replaces."""

from __future__ import annotations

import pytest
import torch

from umamba.mamba import conv, scan_numba

HAS_NUMBA = scan_numba.is_available()


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_conv1d_silu_equals_the_torch_ops(with_bias):
    torch.manual_seed(0)
    xz = torch.randn(2, 12, 300)
    x = xz[:, :6]                                              # a half of one projection: not contiguous
    w, bias = torch.randn(6, 1, 4), (torch.randn(6) if with_bias else None)
    with torch.no_grad():
        fast = conv.causal_conv1d_silu(x, w, bias)
        ref = torch.nn.functional.silu(torch.nn.functional.conv1d(x, w, bias, padding=3, groups=6)[..., :300])
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-5)
    assert conv._numba_conv_applies(x, w)
    w.requires_grad_(True)
    assert not conv._numba_conv_applies(x, w)                # training keeps the differentiable torch ops
