"""The U-Mamba networks against their stored expected outputs (net_expected_outputs.py: a fixed small Bot and Enc
3D network and input, computed on CPU in float64): float64 and float32 on CPU here, and on a CUDA GPU each scan
backend that imports there (the GPU check script runs this file on the device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from net_expected_outputs import EXPECTED, VARIANTS, compute

# float32 vs the float64 reference, relative to the output's largest magnitude: 1.3e-4 measured on CPU (both
# CPU scan backends), from rounding that instance norms over few voxels amplify; TF32 would be ~1e-2
FLOAT32_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def expected():
    with np.load(EXPECTED) as data:
        return {k: data[k] for k in data.files}


def _relative_error(out, ref) -> float:
    return float(np.abs(out - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_on_cpu_reproduces_the_stored_outputs(expected, variant):
    out = compute(variant)
    assert out.shape == expected[variant].shape
    assert _relative_error(out, expected[variant]) < 1e-6  # float32 storage of a float64 result


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_on_cpu_within_tolerance(expected, variant):
    assert _relative_error(compute(variant, dtype=torch.float32), expected[variant]) < FLOAT32_TOLERANCE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (umamba/benchmarks/gpu_check.sh)")
@pytest.mark.parametrize("backend", ["portable", "triton", "cuda"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_on_gpu_per_scan_backend(expected, variant, backend, monkeypatch):
    from umamba.mamba.scan import available_backends

    if not available_backends()[backend]:
        pytest.skip(f"scan backend {backend} does not import here")
    monkeypatch.setenv("UMAMBA_SCAN_BACKEND", backend)
    # cuDNN and cuBLAS may run float32 as TF32 (10-bit mantissa); this test is about float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert _relative_error(compute(variant, device="cuda", dtype=torch.float32), expected[variant]) \
        < FLOAT32_TOLERANCE
