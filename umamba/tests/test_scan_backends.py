"""Backend selection (auto / explicit / UMAMBA_SCAN_BACKEND), the numba CPU fast path, bad input, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from umamba.mamba import available_backends, backends, scan, scan_numba, selective_scan
from umamba.mamba.scan_portable import selective_scan_portable

HAS_NUMBA = scan_numba.is_available()


def inputs(b=2, d=6, n=4, l=50, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)   # noqa: E731
    return dict(u=r(b, d, l), delta=r(b, d, l) - 1, A=-torch.rand(d, n, generator=g, dtype=dtype) * 8,
                B=r(b, n, l), C=r(b, n, l), D=r(d), z=r(b, d, l), delta_bias=r(d))


def test_available_backends_lists_all_names():
    avail = available_backends()
    assert set(avail) == set(scan.BACKENDS) and avail["portable"] is True
    assert avail["numba"] == HAS_NUMBA


def test_auto_rule(monkeypatch):
    monkeypatch.delenv(scan.ENV_VAR, raising=False)
    u = torch.zeros(1, 2, 3)
    want_cpu_inference = "numba" if HAS_NUMBA else "portable"
    assert scan.scan_backend("auto", u, needs_grad=False) == want_cpu_inference
    assert scan.scan_backend("auto", u, needs_grad=True) == "portable"
    assert scan.scan_backend("auto", u.double(), needs_grad=False) == "portable"
    # the kernel is never chosen for CPU tensors, even when it imports
    monkeypatch.setattr(scan, "_cuda_available", lambda: True)
    assert scan.scan_backend("auto", u, needs_grad=True) == "portable"


def test_more_than_16_states_never_go_to_triton(monkeypatch):
    """The Triton kernels hold a channel's states in registers (up to 16, U-Mamba's d_state): `auto` sends larger
    states to mamba-ssm's kernel or the portable scan, and forcing triton says why it cannot."""
    monkeypatch.delenv(scan.ENV_VAR, raising=False)
    monkeypatch.setattr(backends, "device_capability", lambda device: (9, 0))  # CPU tensors stand in for a GPU's
    real, have = backends.probe, {"triton-scan": True, "mamba-ssm": False}
    monkeypatch.setattr(backends, "probe", lambda name: backends.Probe(have[name], None if have[name] else "absent")
                        if name in have else real(name))
    u = torch.zeros(1, 2, 3)
    assert scan.scan_backend("auto", u, needs_grad=True, n=16) == "triton"
    assert scan.scan_backend("auto", u, needs_grad=True, n=17) == "portable"
    have["mamba-ssm"] = True
    assert scan.scan_backend("auto", u, needs_grad=True, n=64) == "cuda"
    monkeypatch.setattr(backends, "probe", real)
    if available_backends()["triton"]:
        x = inputs(n=17)
        with pytest.raises(ValueError, match="'triton' selective-scan backend takes up to 16 states, got 17"):
            selective_scan(**x, backend="triton")


def test_env_var_overrides_auto_and_argument_overrides_env(monkeypatch):
    u = torch.zeros(1, 2, 3)
    monkeypatch.setenv(scan.ENV_VAR, "portable")
    assert scan.scan_backend("auto", u, needs_grad=False) == "portable"
    monkeypatch.setenv(scan.ENV_VAR, " Auto ")
    assert scan.scan_backend("auto", u, needs_grad=True) == "portable"
    if HAS_NUMBA:
        monkeypatch.setenv(scan.ENV_VAR, "numba")
        assert scan.scan_backend("auto", u, needs_grad=False) == "numba"
        assert scan.scan_backend("portable", u, needs_grad=False) == "portable"
    monkeypatch.setenv(scan.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match=f"unknown selective-scan backend 'fastest'.*{scan.ENV_VAR}"):
        scan.scan_backend("auto", u, needs_grad=False)
    with pytest.raises(ValueError, match="backend argument"):
        scan.scan_backend("warp", u, needs_grad=False)


def test_env_var_reaches_selective_scan(monkeypatch):
    x = inputs()
    monkeypatch.setenv(scan.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match="cuda"):
        selective_scan(**x)
    monkeypatch.setenv(scan.ENV_VAR, "portable")
    assert torch.isfinite(selective_scan(**x, delta_softplus=True)).all()


@pytest.mark.skipif(scan._cuda_available(), reason="mamba-ssm's kernel is installed here")
def test_forcing_cuda_without_the_kernel_is_a_clear_error():
    with pytest.raises(ValueError, match="selective_scan_cuda.*does not import") as err:
        selective_scan(**inputs(), backend="cuda")
    assert "build-kernels" in str(err.value)


def test_forcing_cuda_with_cpu_tensors_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(scan, "_cuda_available", lambda: True)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        selective_scan(**inputs(), backend="cuda")


def test_forcing_triton_when_its_module_is_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(scan, "_triton_module", lambda: None)
    with pytest.raises(ValueError, match="scan_triton"):
        selective_scan(**inputs(), backend="triton")
    assert scan.scan_backend("auto", torch.zeros(1, 1, 1), needs_grad=True) == "portable"


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_numba_is_inference_only_and_float32_only():
    x = inputs()
    x["u"].requires_grad_()
    with pytest.raises(ValueError, match="inference-only"):
        selective_scan(**x, backend="numba")
    with pytest.raises(ValueError, match="float64"):
        selective_scan(**inputs(dtype=torch.float64), backend="numba")


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("b,d,n,l", [(2, 6, 4, 50), (1, 64, 16, 1000), (3, 5, 16, 1), (1, 3, 7, 333)])
@pytest.mark.parametrize("optional", [True, False])
@pytest.mark.parametrize("softplus", [True, False])
def test_numba_fast_path_equals_portable(monkeypatch, b, d, n, l, optional, softplus):
    # small chunks and blocks: state carried across several calls of the compiled loop and its time blocks
    monkeypatch.setattr(scan_numba, "SEQ_CHUNK", 128)
    monkeypatch.setattr(scan_numba, "TIME_BLOCK", 48)
    x = inputs(b, d, n, l, seed=l + d)
    if not softplus:                                   # raw Δ ≥ 0, so the state decays
        x["delta"] = x["delta"].abs() * 0.2
        x["delta_bias"] = x["delta_bias"].abs() * 0.1
    if not optional:
        del x["D"], x["z"], x["delta_bias"]
    with torch.no_grad():
        y_fast = selective_scan(**x, delta_softplus=softplus, backend="numba")
        y_ref = selective_scan_portable(**{k: v.double() for k, v in x.items()}, delta_softplus=softplus)
        y_port = selective_scan(**x, delta_softplus=softplus, backend="portable")
    assert y_fast.dtype == torch.float32
    assert (y_fast.double() - y_ref).norm() <= 2e-6 * y_ref.norm()
    assert (y_fast - y_port).norm() <= 2e-6 * y_port.norm()


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_numba_fast_path_extreme_decays_and_half_inputs():
    x = inputs(1, 4, 16, 200)
    x["delta"] = x["delta"] * 40                          # Δ·A from ≈ 0 to ≈ -10^3: exp far below float32's range
    with torch.no_grad():
        y_fast = selective_scan(**x, delta_softplus=True, backend="numba")
        y_ref = selective_scan_portable(**{k: v.double() for k, v in x.items()}, delta_softplus=True)
        assert (y_fast.double() - y_ref).norm() <= 2e-6 * y_ref.norm()
        xh = {k: (v.half() if k in ("u", "delta", "B", "C", "z") else v) for k, v in inputs().items()}
        yh = selective_scan(**xh, delta_softplus=True, backend="numba")
        assert yh.dtype == torch.float16
        y_port = selective_scan(**xh, delta_softplus=True, backend="portable")
        assert torch.isfinite(yh).all() and torch.allclose(yh.float(), y_port.float(), rtol=2e-3, atol=2e-3)


BAD = [
    (dict(u=torch.zeros(2, 6)), "u \\(2, 6\\)"),
    (dict(delta=torch.zeros(2, 6, 49)), "delta \\(2, 6, 49\\)"),
    (dict(A=torch.zeros(5, 4)), "A \\(5, 4\\)"),
    (dict(A=torch.zeros(6)), "A \\(6,\\)"),
    (dict(B=torch.zeros(2, 3, 50)), "B \\(2, 3, 50\\)"),
    (dict(B=torch.zeros(2, 1, 4, 50)), "B \\(2, 1, 4, 50\\)"),
    (dict(C=torch.zeros(1, 4, 50)), "C \\(1, 4, 50\\)"),
    (dict(D=torch.zeros(5)), "D \\(5,\\)"),
    (dict(z=torch.zeros(2, 6, 51)), "z \\(2, 6, 51\\)"),
    (dict(delta_bias=torch.zeros(6, 1)), "delta_bias \\(6, 1\\)"),
]


@pytest.mark.parametrize("change,mentions", BAD)
def test_bad_shapes_say_what_was_expected(change, mentions):
    x = inputs()
    x.update(change)
    with pytest.raises(ValueError, match="expected u, delta, z: \\(batch, d, length\\); A: \\(d, n\\)") as err:
        selective_scan(**x)
    assert pytest.importorskip("re").search(mentions, str(err.value))


def test_bad_types_and_dtypes():
    x = inputs()
    with pytest.raises(ValueError, match="A must be a real"):
        selective_scan(**{**x, "A": torch.zeros(6, 4, dtype=torch.complex64)})
    with pytest.raises(ValueError, match="u must be a torch.Tensor"):
        selective_scan(**{**x, "u": [[1.0]]})
    with pytest.raises(ValueError, match="length and state size"):
        selective_scan(**inputs(l=0))


def test_imports_stay_lazy():
    code = ("import sys, umamba; assert 'torch' not in sys.modules, 'umamba imported torch'\n"
            "import umamba.mamba\n"
            "bad = [m for m in ('mamba_ssm', 'selective_scan_cuda', 'causal_conv1d', 'numba', 'triton') "
            "if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bench_scan_command_reports_every_backend():
    import json

    proc = subprocess.run([sys.executable, "-m", "umamba", "bench", "scan", "--quick", "--reps", "1",
                           "--shapes", "enc3d-s5-channel", "--backward"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert records[0]["kind"] == "machine" and records[0]["torch"] == torch.__version__
    scans = [r for r in records if r["kind"] == "scan"]
    want = {b for b in ("numba", "portable") if available_backends()[b]}
    assert {(r["shape"], r["backend"]) for r in scans} == {("enc3d-s5-channel", b) for b in want}
    for r in scans:
        assert r["forward_s"] > 0 and r["forward_updates_per_s"] == pytest.approx(
            r["b"] * r["d"] * r["n"] * r["l"] / r["forward_s"])
        assert (r["backend"] == "numba") == ("forward_backward_s" not in r)
    assert any(line.split()[:3] == ["kind", "shape", "backend"] for line in proc.stdout.splitlines())  # table
    bad = subprocess.run([sys.executable, "-m", "umamba", "bench", "scan", "--shapes", "enc9"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown shape" in bad.stdout + bad.stderr


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_numba_that_fails_to_compile_falls_back_or_says_why(monkeypatch):
    def broken():
        raise scan_numba.NumbaUnavailable("LoweringError: simulated")

    monkeypatch.setattr(scan_numba, "_kernel", broken)
    monkeypatch.delenv(scan.ENV_VAR, raising=False)
    x = inputs()
    with torch.no_grad():
        y = selective_scan(**x, delta_softplus=True)                     # auto: numba chosen, portable runs
        assert torch.equal(y, selective_scan(**x, delta_softplus=True, backend="portable"))
        with pytest.raises(ValueError, match="'numba' selective-scan backend does not work here: LoweringError"):
            selective_scan(**x, delta_softplus=True, backend="numba")


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_numba_reads_the_two_halves_of_one_projection_where_they_lie():
    # the Mamba block passes x and z as the halves of one (b, 2d, l) tensor, δ as a view: no copy is needed
    x = inputs(2, 6, 4, 300, seed=3)
    xz = torch.cat([x["u"], x["z"]], dim=1)
    u, z = xz.chunk(2, dim=1)
    delta = torch.cat([x["delta"], x["delta"]], dim=2)[..., ::2]     # stride 2 along l
    assert not u.is_contiguous() and not delta.is_contiguous()
    with torch.no_grad():
        y_fast = selective_scan(**dict(x, u=u, z=z, delta=delta), delta_softplus=True, backend="numba")
        y_ref = selective_scan_portable(**{k: v.double() for k, v in dict(x, delta=delta).items()},
                                        delta_softplus=True)
    assert (y_fast.double() - y_ref).norm() <= 2e-6 * y_ref.norm()
