"""Backend choice by GPU capability (umamba.mamba.backends): Triton only on compute capability >= 7.0, probes
kept once with their errors. The GPU is simulated: `device_capability` is the one place that asks torch, so CPU
tensors stand in for a CUDA device of the patched capability and the chosen non-Triton paths really run."""

from __future__ import annotations

import pytest
import torch

from umamba.errors import UserError
from umamba.mamba import backends, selective_scan
from umamba.nets.mamba_layer import MambaLayer


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    for name in (backends.SCAN_ENV, backends.CONV_ENV, "TRITON_INTERPRET"):
        monkeypatch.delenv(name, raising=False)


def simulate_gpu(monkeypatch, capability):
    monkeypatch.setattr(backends, "device_capability", lambda device: capability)


def spy_choices(monkeypatch) -> list:
    chosen, real = [], backends.resolve_backend

    def spy(op, device, *args, **kwargs):
        choice = real(op, device, *args, **kwargs)
        chosen.append((op, choice.backend))
        return choice

    monkeypatch.setattr(backends, "resolve_backend", spy)
    return chosen


def test_sm61_never_selects_triton_and_a_layer_trains(monkeypatch):
    simulate_gpu(monkeypatch, (6, 1))
    for op in backends.OPS:
        for training in (True, False):
            choice = backends.resolve_backend(op, "cpu", training=training)
            assert choice.backend != "triton", (op, choice)
            assert "sm_61" in choice.reason and "7.0" in choice.reason, choice
    chosen = spy_choices(monkeypatch)
    torch.manual_seed(0)
    layer = MambaLayer(dim=8, d_state=4)
    x = torch.randn(2, 8, 3, 4, 5, requires_grad=True)
    y = layer(x)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in layer.parameters())
    assert {op for op, _ in chosen} == set(backends.OPS)   # scan, conv and norm were all decided here
    assert all(b != "triton" for _, b in chosen), chosen


def test_sm80_selects_triton_for_every_op(monkeypatch):
    pytest.importorskip("triton")
    simulate_gpu(monkeypatch, (8, 0))
    for op in backends.OPS:
        assert backends.resolve_backend(op, "cpu", training=True).backend == "triton", op
    # with mamba-ssm's kernel importable, short sequences take it (measured faster there), long ones Triton
    real_probe = backends.probe
    monkeypatch.setattr(backends, "probe", lambda name: backends.Probe(True) if name == "mamba-ssm"
                        else real_probe(name))
    assert backends.resolve_backend("scan", "cpu", training=True, size=1 << 20).backend == "cuda"
    assert backends.resolve_backend("scan", "cpu", training=True, size=1 << 23).backend == "triton"


def test_sm80_without_triton_falls_back_and_says_why(monkeypatch):
    simulate_gpu(monkeypatch, (8, 0))
    broken = backends.Probe(False, "umamba.mamba.scan_triton does not import (ImportError: no libcuda)")
    monkeypatch.setattr(backends, "probe", lambda name: broken)
    choice = backends.resolve_backend("scan", "cpu", training=True)
    assert choice.backend == "portable" and "no libcuda" in choice.reason
    assert backends.resolve_backend("conv", "cpu").backend == "torch"
    assert backends.resolve_backend("norm", "cpu").backend == "torch"


def test_a_forced_backend_shows_the_kept_import_error(monkeypatch):
    broken = backends.Probe(False, "umamba.mamba.scan_triton does not import (ImportError: no libcuda)")
    monkeypatch.setattr(backends, "probe", lambda name: broken)
    u = torch.randn(1, 2, 8)
    args = dict(u=u, delta=u, A=-torch.ones(2, 4), B=torch.randn(1, 4, 8), C=torch.randn(1, 4, 8))
    with pytest.raises(UserError, match="no libcuda"):
        selective_scan(**args, backend="triton")
    monkeypatch.setenv(backends.CONV_ENV, "causal-conv1d")
    from umamba.mamba.conv import resolve_conv_backend
    with pytest.raises(UserError, match="no libcuda"):
        resolve_conv_backend(u)


def test_probes_run_once_and_keep_the_error(monkeypatch):
    imports = []
    real = backends.importlib.import_module
    monkeypatch.setitem(backends._MODULES, "test-missing", "json.no_such_submodule")
    monkeypatch.setattr(backends.importlib, "import_module", lambda name: imports.append(name) or real(name))
    first = backends.probe("test-missing")
    assert backends.probe("test-missing") is first and not first.ok
    assert "no_such_submodule" in first.error and imports == ["json.no_such_submodule"]
    backends.probe.cache_clear()


def test_opt_in_instance_norm_follows_the_same_rule(monkeypatch):
    from umamba.nets import blocks

    monkeypatch.setenv(blocks.NORM_BACKEND_ENV, "triton")
    x = torch.zeros(1, 2, 4, 4, 4)
    simulate_gpu(monkeypatch, (6, 1))
    assert blocks._fused_norm_act(x) is None
    pytest.importorskip("triton")
    simulate_gpu(monkeypatch, (8, 0))
    assert blocks._fused_norm_act(x) is not None
