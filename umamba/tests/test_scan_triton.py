"""The Triton selective scan against an independent float64 sequential reference (outputs and all gradients).

On a machine without a GPU (CI) the kernels run under Triton's interpreter: `test_under_triton_interpreter`
re-runs this file in a subprocess with TRITON_INTERPRET=1 (the variable must be set before triton is imported,
so it cannot be switched on inside this process). The interpreter executes every program in Python, so the
cases are tiny but shaped to exercise every path of the kernels: several chunks (forward and reverse chunk scans
with a carry between scan tiles), several 16-step segments per chunk, a partial last segment and chunk, a partial
channel block, a state size that is not a power of two, 16 states (four 4-state groups, also shared by 4 threads
in the gradient kernel), the single-chunk path, optional D / z / delta_bias / softplus, bf16 inputs, a backward
channel block unlike the forward's.
On a CUDA machine the same cases run on the GPU directly.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from triton_interpreter import DEVICE, needs_device, run_under_interpreter, wrapper
from umamba.mamba.scan_ref import selective_scan_ref


def _inputs(b, d, l, n, has_d, has_z, has_bias, seed):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    A = -(torch.rand(d, n, generator=g, dtype=torch.float64) * 3 + 0.1)
    return dict(u=r(b, d, l), delta=r(b, d, l, scale=0.7), A=A, B=r(b, n, l), C=r(b, n, l),
                D=r(d) if has_d else None, z=r(b, d, l) if has_z else None,
                delta_bias=r(d, scale=0.3) if has_bias else None)


def _rel(x, ref):
    return ((x.double().cpu() - ref).norm() / ref.norm()).item()


# (b, d, l, n, DB, DB_grad, NT, has_d, has_z, has_bias, softplus)
CASES = {
    # 16-step segments, one per chunk (NT=1): 3 chunks, the last partial; a partial channel block; n=3
    "chunks_partial": (1, 3, 37, 3, 2, 0, 1, True, True, True, True),
    # one chunk (no scan across chunks), a partial segment, no options
    "one_chunk_no_options": (1, 2, 7, 2, 2, 0, 0, False, False, False, False),
    # n=16 (four 4-state groups), two segments per chunk, b=2, no options
    "n16_no_options": (2, 2, 45, 16, 2, 0, 2, False, False, False, False),
    # n=16 with the gradient kernel's states shared by 4 threads (the default) and its own channel block
    "n16_grad_lanes": (1, 3, 21, 16, 2, 4, 1, True, True, True, True),
}


@needs_device
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_matches_float64_reference(name, dtype):
    from umamba.mamba.scan_triton import ScanConfig, selective_scan_triton

    b, d, l, n, DB, DB_grad, NT, has_d, has_z, has_bias, softplus = CASES[name]
    if dtype == torch.bfloat16 and name != "chunks_partial":
        pytest.skip("one bf16 case is enough")
    ref_in = _inputs(b, d, l, n, has_d, has_z, has_bias, seed=hash(name) % 1000)
    ref_leaves = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in ref_in.items()}
    y_ref = selective_scan_ref(**ref_leaves, delta_softplus=softplus)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y_ref.backward(gy)

    # sequence tensors in `dtype`; A, D, delta_bias stay float32 like the Mamba block's parameters
    low = {k: v.to(dtype if k in ("u", "delta", "B", "C", "z") else torch.float32) for k, v in ref_in.items()
           if v is not None}
    # reference inputs rounded the same way, so only the kernel's arithmetic is compared
    ref_r = {k: (low[k].double().requires_grad_() if k in low else None) for k in ref_in}
    y_r = selective_scan_ref(**ref_r, delta_softplus=softplus)
    y_r.backward(gy)
    leaves = {k: v.to(DEVICE).requires_grad_() for k, v in low.items()}
    cfg = ScanConfig(DB=DB, DB_grad=DB_grad, NT=NT, LB=4, CB=2)
    y = selective_scan_triton(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves.get("D"),
                              leaves.get("z"), leaves.get("delta_bias"), softplus, config=cfg)
    assert y.dtype == dtype and y.shape == (b, d, l)
    y.backward(gy.to(DEVICE, dtype))
    # float32: arithmetic error only; bf16: the output and gradients are rounded to bf16 (8 bits)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    errors = {"y": _rel(y.detach(), y_r.detach())}
    for k, leaf in leaves.items():
        assert leaf.grad is not None and leaf.grad.dtype == leaf.dtype, k
        errors["d" + k] = _rel(leaf.grad, ref_r[k].grad)
    assert all(e < tol for e in errors.values()), errors
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves.values())


@needs_device
def test_dispatcher_no_grad_and_strided_inputs():
    """Through `selective_scan(backend="triton")`, with (E, B, L)-transposed views like the Mamba block passes,
    under no_grad (no tile states kept) — same values as the reference."""
    from umamba.mamba import selective_scan

    b, d, l, n = 2, 3, 9, 2
    x = _inputs(b, d, l, n, True, True, True, seed=7)
    ref = selective_scan_ref(**x, delta_softplus=True)
    # a (d, b, l) buffer viewed as (b, d, l): unit stride along l, other strides permuted
    u = x["u"].float().transpose(0, 1).contiguous().transpose(0, 1).to(DEVICE)
    delta = x["delta"].float().transpose(0, 1).contiguous().transpose(0, 1).to(DEVICE)
    assert not u.is_contiguous()
    with torch.no_grad():
        y = selective_scan(u, delta, x["A"].float().to(DEVICE), x["B"].float().to(DEVICE),
                           x["C"].float().to(DEVICE), x["D"].float().to(DEVICE), x["z"].float().to(DEVICE),
                           x["delta_bias"].float().to(DEVICE), delta_softplus=True, backend="triton")
    assert _rel(y, ref) < 1e-5


@wrapper
def test_under_triton_interpreter():
    run_under_interpreter(__file__, expected_passed=6)
