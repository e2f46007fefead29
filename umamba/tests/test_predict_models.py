"""Prediction from other model sources: an old-plans-format folder (original U-Mamba), and the model store."""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from test_predict_cli import case_files, model_channels
from umamba.cli import main
from umamba.model_store import import_model
from umamba.nnunet.predict_inputs import resolve_cases
from umamba.nnunet.predictor import load_predictor, predict_cases
from umamba.progress import Reporter


@pytest.fixture(scope="module")
def model(trained_tiny_model) -> Path:
    return trained_tiny_model


def to_old_plans_format(plans: dict) -> dict:
    """nnU-Net 2.1/2.2 plans (what the original U-Mamba wrote): flat UNet_* keys instead of 'architecture'."""
    old = copy.deepcopy(plans)
    for cfg in old["configurations"].values():
        arch = cfg.pop("architecture", None)
        if arch is None:
            continue  # a configuration that only inherits from another one
        kw = arch["arch_kwargs"]
        base, top = kw["features_per_stage"][0], max(kw["features_per_stage"])
        # the old format can only say "base * 2^i, capped": check the plans fit it before converting
        assert [min(base * 2 ** i, top) for i in range(kw["n_stages"])] == list(kw["features_per_stage"])
        cfg.update({
            "UNet_class_name": "PlainConvUNet",
            "UNet_base_num_features": base,
            "unet_max_num_features": top,
            "n_conv_per_stage_encoder": kw["n_conv_per_stage"],
            "n_conv_per_stage_decoder": kw["n_conv_per_stage_decoder"],
            "pool_op_kernel_sizes": kw["strides"],
            "conv_kernel_sizes": kw["kernel_sizes"],
            "num_pool_per_axis": [sum(1 for s in kw["strides"] if s[d] > 1) for d in range(len(kw["strides"][0]))],
        })
    return old


def predict_array(model_dir: Path, files: list[Path], out: Path) -> np.ndarray:
    loaded = load_predictor(model_dir, device="cpu", use_mirroring=False)
    cases = resolve_cases([str(f) for f in files], str(out), loaded.channels, loaded.supported_endings)
    predict_cases(loaded, cases, Reporter(json_mode=False))
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out)))


def test_old_plans_format_model_predicts_identically(model, tmp_path):
    trainer = "nnUNetTrainerUMambaBot"
    old = tmp_path / "Dataset042_Old" / f"{trainer}__nnUNetPlans__{model.name.split('__')[-1]}"
    shutil.copytree(model, old)
    plans = json.loads((model / "plans.json").read_text())
    old_plans = to_old_plans_format(plans)
    assert all("architecture" not in c for c in old_plans["configurations"].values())
    (old / "plans.json").write_text(json.dumps(old_plans, indent=2))
    for ckpt_file in old.glob("fold_*/checkpoint*.pth"):
        ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False)  # our own test file
        ckpt["trainer_name"] = trainer
        ckpt["init_args"]["plans"] = old_plans
        torch.save(ckpt, ckpt_file)

    files = case_files(tmp_path / "in", "case", model_channels(model), seed=21)
    current = predict_array(model, files, tmp_path / "current.nii.gz")
    from_old = predict_array(old, files, tmp_path / "old.nii.gz")
    np.testing.assert_array_equal(from_old, current)
    # the labels of a barely trained model could agree by chance: the logits must agree too
    logits = []
    for folder in (model, old):
        p = load_predictor(folder, device="cpu", use_mirroring=False).predictor
        data, _, _ = p.configuration_manager.preprocessor_class(verbose=False).run_case(
            [str(f) for f in files], None, p.plans_manager, p.configuration_manager, p.dataset_json)
        logits.append(p.predict_logits_from_preprocessed_data(torch.from_numpy(data)))
    assert logits[0].shape[0] == 2 and logits[0].abs().sum() > 0
    assert torch.equal(logits[0], logits[1])


def test_store_round_trip_folder_and_zip(model, tmp_path, capsys):
    files = case_files(tmp_path / "in", "case", model_channels(model), seed=33)
    direct = tmp_path / "direct.nii.gz"
    assert main(["predict", "-i", *map(str, files), "-o", str(direct), "-m", str(model), "--device", "cpu",
                 "--disable-tta"]) == 0
    store = tmp_path / "store"
    [card] = import_model(model, store, name="tiny")
    assert card["trainer"].startswith("nnUNetTrainerUMamba")

    archive = tmp_path / "export.zip"  # nnUNetv2_export_model_to_zip's layout: DatasetXXX/Trainer__Plans__Config/
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(model.rglob("*")):
            if p.is_file():
                zf.write(p, f"{model.parent.name}/{model.name}/{p.relative_to(model).as_posix()}")
    assert main(["import-model", str(archive), "--name", "tiny_zip", "--store", str(store)]) == 0
    assert "tiny_zip: " in capsys.readouterr().out  # the one-line card

    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(direct)))
    for name in ("tiny", "tiny_zip"):
        out = tmp_path / f"{name}.nii.gz"
        assert main(["predict", "-i", *map(str, files), "-o", str(out), "-m", name, "--store", str(store),
                     "--device", "cpu", "--disable-tta"]) == 0
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), expected)
    assert main(["models", "--store", str(store)]) == 0
    listed = capsys.readouterr().out
    assert "tiny:" in listed and "tiny_zip:" in listed
