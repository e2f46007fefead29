"""Trainer classes against nnU-Net's calling conventions (2.6 and 2.7+), external-trainer discovery, CLI plumbing.

Networks are built from a real nnU-Net plan written by the real planner (the `tiny_workspace` fixture).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from umamba.nnunet import compat

TRAINERS = ("nnUNetTrainerUMambaBot", "nnUNetTrainerUMambaEnc", "nnUNetTrainerUMambaBotNoAMP",
            "nnUNetTrainerUMambaEncNoAMP")


@pytest.fixture(scope="module")
def tiny_plans(tiny_workspace) -> dict:
    return json.loads((tiny_workspace / "nnUNet_preprocessed" / "Dataset990_TinyPhantom" / "nnUNetPlans.json")
                      .read_text())


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", TRAINERS)
@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_build_network_architecture_accepts_old_and_new_conventions(tiny_plans, name, configuration):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from umamba.nets import build_network
    from umamba.nnunet.trainers import TRAINER_CLASSES

    cls = TRAINER_CLASSES[name]
    pm = PlansManager(tiny_plans)
    cm = pm.get_configuration(configuration)
    variant = "enc" if "Enc" in name else "bot"
    reference = build_network(variant, tiny_plans, configuration, 1, 2, deep_supervision=False)

    # nnU-Net 2.7+ (trainer.initialize positionally, predictor with a keyword)
    new_positional = cls.build_network_architecture(pm, cm, 1, 2, True)
    new_keyword = cls.build_network_architecture(pm, cm, 1, 2, enable_deep_supervision=False)
    # nnU-Net 2.6 (trainer.initialize positionally, predictor with a keyword); the patch size is unknown there,
    # so for Enc it comes from the arch kwargs caller -> pass it as nnU-Net 2.6 cannot: via the configuration
    old_args = (cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import)
    if variant == "bot":
        old_positional = cls.build_network_architecture(*old_args, 1, 2, True)
        old_keyword = cls.build_network_architecture(*old_args, 1, 2, enable_deep_supervision=False)
        nets = (new_positional, new_keyword, old_positional, old_keyword)
    else:
        nets = (new_positional, new_keyword)
    for net in nets:
        assert type(net) is type(reference)
        assert _n_params(net) == _n_params(reference)
        net.load_state_dict(reference.state_dict(), strict=True)
    assert new_positional.decoder.deep_supervision is True
    assert new_keyword.decoder.deep_supervision is False
    # 2.7+ choose their convention by looking for a `plans_manager` parameter
    import inspect

    assert "plans_manager" in inspect.signature(cls.build_network_architecture).parameters


def test_split_build_arguments_both_conventions():
    pm, cm = object(), object()  # stand-ins: only their identity is passed on
    new = compat.split_build_arguments(pm, cm, 3, 4, (False,), None)
    assert (new.plans_manager, new.configuration_manager, new.num_input_channels, new.num_output_channels,
            new.deep_supervision) == (pm, cm, 3, 4, False)
    assert compat.split_build_arguments(pm, cm, 3, 4, (), None).deep_supervision is True
    old = compat.split_build_arguments("a.b.PlainConvUNet", {"n_stages": 3}, ["conv_op"], 2, (5,), False)
    assert (old.arch_class_name, old.arch_kwargs, old.num_input_channels, old.num_output_channels,
            old.deep_supervision) == ("a.b.PlainConvUNet", {"n_stages": 3}, 2, 5, False)
    old6 = compat.split_build_arguments("a.b.C", {}, [], 1, (2, True), None)
    assert old6.deep_supervision is True and old6.num_output_channels == 2


def test_trainer_plans_follow_the_installed_version():
    plans = {"plans_name": "nnUNetPlans", "configurations": {}}
    out = compat.trainer_plans(plans, True)
    assert "continue_training" not in plans  # a copy
    if compat.trainer_pops_continue_flag():
        assert out["continue_training"] is True
    else:
        assert "continue_training" not in out


def test_stock_nnunet_finds_our_trainers_through_ext_trainer_folder():
    """nnunetv2 >= 2.8: nnUNet_extTrainer=<folder printed by umamba> lets stock nnUNetv2_train/predict find them."""
    if not compat.supports_ext_trainer_env():
        pytest.skip("nnUNet_extTrainer exists from nnunetv2 2.8 on")
    printed = subprocess.run([sys.executable, "-m", "umamba", "train", "--print-ext-trainer-path"],
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    folder = Path(printed.stdout.strip())
    assert folder == compat.EXT_TRAINER_DIR and folder.is_dir()
    # nnU-Net's external search, called exactly as nnunetv2.utilities.find_objects does for each folder in
    # nnUNet_extTrainer. (The full stock lookup first imports every trainer inside nnunetv2, including Primus ->
    # timm -> torchvision, which this test venv must not import.)
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    import umamba.nnunet.trainers as ours

    for name in TRAINERS:
        found = recursive_find_python_class(str(folder), name, None, base_folder=str(folder), verbose=False,
                                            cleanup_imports_from_base_folder=True)
        assert found is getattr(ours, name), (name, found)
    import nnunetv2.utilities.find_objects as find_objects  # and the stock lookup does read that variable

    assert "nnUNet_extTrainer" in Path(find_objects.__file__).read_text()


def test_torch_compile_is_off_unless_requested(monkeypatch, tmp_path, tiny_workspace, tiny_plans):
    """nnU-Net >= 2.5 compiles by default on CUDA; our trainers only when nnUNet_compile asks for it. The
    trainer is built for a CUDA device object (no GPU is touched by construction)."""
    if not compat.nnunet_paths_follow_environment():
        pytest.skip("this nnU-Net version read its paths at import time")
    from umamba.nnunet.trainers import nnUNetTrainerUMambaBot

    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    monkeypatch.setenv("nnUNet_preprocessed", str(tiny_workspace / "nnUNet_preprocessed"))
    dataset_json = json.loads((tiny_workspace / "nnUNet_preprocessed" / "Dataset990_TinyPhantom" / "dataset.json")
                              .read_text())
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else _nothing():
        trainer = nnUNetTrainerUMambaBot(compat.trainer_plans(tiny_plans, False), "3d_fullres", "all",
                                         dataset_json, torch.device("cuda"))
    assert trainer.save_every == 1 and trainer.amp_active
    monkeypatch.delenv("nnUNet_compile", raising=False)
    assert trainer._do_i_compile() is False
    monkeypatch.setenv("nnUNet_compile", "false")
    assert trainer._do_i_compile() is False
    monkeypatch.setenv("nnUNet_compile", "1")
    assert trainer._do_i_compile() is (os.name != "nt")  # then nnU-Net's own rules decide


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
