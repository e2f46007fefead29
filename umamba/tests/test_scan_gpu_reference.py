"""Every scan backend that runs on this CUDA GPU (mamba-ssm's `cuda`, umamba's `triton`, `portable`), float32
forward and backward, against the portable scan in float64 on CPU (itself held to the naive sequential scan in
test_scan_portable.py), at the shapes of U-Mamba's layers. Skipped without a GPU; the GPU check script runs it."""

from __future__ import annotations

import pytest
import torch

from umamba.mamba.scan import available_backends, selective_scan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (umamba/benchmarks/gpu_check.sh)")
# (b, d, l): a long Enc-like sequence, an Enc stage-2-like one, Bot's bottleneck, a short channel-token layer; n = 16
SHAPES = [(1, 64, 16_384), (2, 128, 4_096), (2, 640, 216), (2, 512, 320)]
TOLERANCE = 1e-4  # |x - x64| / |x64| (norms over the whole tensor), outputs and every gradient


def _inputs(b, d, l, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    return dict(u=r(b, d, l), delta=r(b, d, l, scale=0.7), A=-(torch.rand(d, n, generator=g, dtype=torch.float64)
                                                               * 3 + 0.1),
                B=r(b, n, l), C=r(b, n, l), D=r(d), z=r(b, d, l), delta_bias=r(d, scale=0.3))


def _run(inputs, gy, backend, device, dtype):
    leaves = {k: v.detach().to(device, dtype, copy=True).requires_grad_() for k, v in inputs.items()}
    y = selective_scan(**leaves, delta_softplus=True, backend=backend)
    y.backward(gy.to(device, dtype))
    return y.detach().double().cpu(), {k: v.grad.double().cpu() for k, v in leaves.items()}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"b{s[0]}-d{s[1]}-l{s[2]}")
@pytest.mark.parametrize("backend", ["cuda", "triton", "portable"])
def test_float32_backend_on_gpu_matches_float64(backend, shape):
    if not available_backends()[backend]:
        pytest.skip(f"scan backend {backend} does not import here")
    inputs = _inputs(*shape)
    gy = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y64, g64 = _run(inputs, gy, "portable", "cpu", torch.float64)
    y32, g32 = _run(inputs, gy, backend, "cuda", torch.float32)
    errors = {"y": ((y32 - y64).norm() / y64.norm()).item()}
    errors.update({f"d{k}": ((g32[k] - g64[k]).norm() / g64[k].norm()).item() for k in g64})
    assert max(errors.values()) < TOLERANCE, errors
