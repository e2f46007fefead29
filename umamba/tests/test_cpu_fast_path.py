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


# -- precision and threads ------------------------------------------------------------------------------------------
CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\nmodel name\t: x\n"


def test_bf16_runs_only_when_asked_for_and_only_on_cpus_with_native_bf16():
    from umamba.errors import UserError
    from umamba.nnunet.cpu_speed import cpu_flags, resolve_precision

    with_bf16 = cpu_flags(CPUINFO.format(extra="avx512_bf16"))
    without = cpu_flags(CPUINFO.format(extra=""))
    assert "avx512_bf16" in with_bf16 and "avx512f" in without
    assert resolve_precision("bf16", with_bf16) == "bf16"
    assert resolve_precision("bf16", cpu_flags(CPUINFO.format(extra="amx_bf16"))) == "bf16"
    assert resolve_precision("auto", with_bf16) == "float32"       # labels changed beyond 0.1 %: not automatic
    assert resolve_precision("auto", without) == "float32"
    assert resolve_precision("float32", with_bf16) == "float32"
    with pytest.raises(UserError, match="native bfloat16"):
        resolve_precision("bf16", without)
    assert resolve_precision("auto", set()) == "float32"          # unreadable /proc/cpuinfo, macOS, Windows


def test_threads_above_the_core_count_are_clamped_with_a_warning():
    from umamba.nnunet.cpu_speed import core_count, set_threads

    before = torch.get_num_threads()
    try:
        with pytest.warns(UserWarning, match="more than the"):
            assert set_threads(core_count() + 3) == core_count()
        assert torch.get_num_threads() == core_count()
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# -- the per-class export -------------------------------------------------------------------------------------------
def test_per_class_export_equals_nnunets_export():
    import contextlib
    import sys

    import numpy as np

    with contextlib.redirect_stdout(sys.stderr):
        from nnunetv2.inference.export_prediction import \
            convert_predicted_logits_to_segmentation_with_correct_shape as convert
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from umamba.bench.predict_cpu import CT_PLAN
    from umamba.nnunet.lean_export import segmentation_from_logits

    plans = PlansManager(CT_PLAN)
    conf = plans.get_configuration("3d_fullres")
    labels = plans.get_label_manager({"labels": {"background": 0, "a": 1, "b": 2, "c": 3}, "channel_names": {"0": "CT"}})
    logits = torch.randn(4, 12, 10, 14, generator=torch.Generator().manual_seed(0)).half()
    props = {"spacing": [2.0, 1.0, 0.8], "shape_after_cropping_and_before_resampling": (9, 15, 26),
             "shape_before_cropping": (11, 15, 30), "bbox_used_for_cropping": [[1, 10], [0, 15], [2, 28]]}
    ours = segmentation_from_logits(logits, plans, conf, labels, props)
    theirs = convert(logits, plans, conf, labels, props, num_threads_torch=1)
    assert ours.shape == (11, 15, 30) and ours.dtype == theirs.dtype
    assert np.array_equal(ours, theirs)


# -- the fast path's labels against the eager float32 path ----------------------------------------------------------
def _predict_labels(model, image, monkeypatch, precision, scan_backend, conv_backend_numba):
    import numpy as np

    from umamba.mamba import conv as conv_module
    from umamba.nnunet.predictor import load_predictor

    monkeypatch.setenv("UMAMBA_SCAN_BACKEND", scan_backend)
    if not conv_backend_numba:
        monkeypatch.setattr(conv_module, "_numba_conv_applies", lambda x, w: False)
    loaded = load_predictor(model, device="cpu", precision=precision, use_mirroring=False)
    logits = loaded.predictor.predict_logits_from_preprocessed_data(torch.from_numpy(image))
    monkeypatch.undo()
    return np.asarray(logits.float().argmax(0))


@pytest.mark.slow
def test_fast_path_labels_agree_with_the_eager_float32_path(trained_tiny_model, monkeypatch):
    import numpy as np

    from umamba.nnunet.cpu_speed import native_bf16
    from umamba.synthetic import phantom_case

    image, _ = phantom_case((24, 20, 28), np.random.default_rng(7))   # 12 overlapping 16³ windows
    image = ((image - image.mean()) / image.std()).astype(np.float32)          # (1, 24, 20, 28), z-scored
    eager = _predict_labels(trained_tiny_model, image, monkeypatch, "float32", "portable", False)
    fast = _predict_labels(trained_tiny_model, image, monkeypatch, "auto", "auto", True)
    assert (fast == eager).mean() >= 0.999
    if native_bf16():   # the opt-in bf16 path runs and gives labels (its agreement is measured, BENCHMARKS.md)
        bf16 = _predict_labels(trained_tiny_model, image, monkeypatch, "bf16", "auto", True)
        assert bf16.shape == eager.shape


# -- --fast ---------------------------------------------------------------------------------------------------------
def _load_predictor_kwargs(monkeypatch, tmp_path, model, extra):
    """The keyword arguments `umamba predict` passes to load_predictor (stopped right there)."""
    import SimpleITK as sitk

    from umamba.cli import main
    from umamba.nnunet import predictor

    seen = {}

    def fake_load(model_dir, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(predictor, "load_predictor", fake_load)
    image = tmp_path / "img.nii.gz"
    sitk.WriteImage(sitk.Image(20, 20, 20, sitk.sitkFloat32), str(image))
    assert main(["predict", "-i", str(image), "-o", str(tmp_path / "out.nii.gz"), "-m", str(model), *extra]) == 130
    return seen


@pytest.mark.slow
def test_fast_changes_exactly_the_step_size_and_mirroring(trained_tiny_model, monkeypatch, tmp_path):
    from umamba.cli.predict import FAST_STEP_SIZE

    default = _load_predictor_kwargs(monkeypatch, tmp_path, trained_tiny_model, [])
    fast = _load_predictor_kwargs(monkeypatch, tmp_path, trained_tiny_model, ["--fast"])
    changed = {k: (default[k], fast[k]) for k in default if default[k] != fast[k]}
    assert changed == {"step_size": (0.5, FAST_STEP_SIZE), "use_mirroring": (True, False)}
    chosen = _load_predictor_kwargs(monkeypatch, tmp_path, trained_tiny_model, ["--fast", "--step-size", "0.6"])
    assert (chosen["step_size"], chosen["use_mirroring"]) == (0.6, False)
