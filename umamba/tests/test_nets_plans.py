"""Reading nnU-Net plans: old and current format, inheritance, nnU-Net's own view of them, bad input."""

import copy

import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from umamba.errors import UserError
from umamba.nets import (
    build_network,
    build_network_from_arch_kwargs,
    build_network_from_configuration,
    load_network_weights,
    spec_from_configuration,
    spec_from_plans,
)

# nnU-Net's ConfigurationManager warns when it converts old-format plans; that conversion is what is tested here
pytestmark = [pytest.mark.filterwarnings("ignore:Detected old nnU-Net plans format"),
              pytest.mark.usefixtures("one_thread")]


KERNELS = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]


def old_plans():
    """nnU-Net 2.1-2.3 format, anisotropic 3D plan, with a 3d_lowres configuration inheriting from 3d_fullres."""
    return {
        "dataset_name": "Dataset999_Tiny",
        "plans_name": "nnUNetPlans",
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "patch_size": [8, 16, 16],
                "UNet_class_name": "PlainConvUNet",
                "UNet_base_num_features": 4,
                "unet_max_num_features": 12,
                "conv_kernel_sizes": KERNELS,
                "pool_op_kernel_sizes": STRIDES,
                "num_pool_per_axis": [2, 3, 3],
                "n_conv_per_stage_encoder": [2, 2, 2, 2],
                "n_conv_per_stage_decoder": [2, 2, 2],
            },
            "3d_lowres": {"inherits_from": "3d_fullres", "patch_size": [8, 8, 8], "UNet_base_num_features": 6},
        },
    }


def new_plans(blocks_key="n_conv_per_stage"):
    """The same plan as nnU-Net >= 2.4 writes it (architecture.arch_kwargs)."""
    return {
        "dataset_name": "Dataset999_Tiny",
        "plans_name": "nnUNetPlans",
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "patch_size": [8, 16, 16],
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {
                        "n_stages": 4,
                        "features_per_stage": [4, 8, 12, 12],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": KERNELS,
                        "strides": STRIDES,
                        blocks_key: [2, 2, 2, 2],
                        "n_conv_per_stage_decoder": [2, 2, 2],
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
            },
            "3d_lowres": {"inherits_from": "3d_fullres", "patch_size": [8, 8, 8]},
        },
    }


@pytest.mark.parametrize("variant", ["bot", "enc"])
@pytest.mark.parametrize("blocks_key", ["n_conv_per_stage", "n_blocks_per_stage"])
def test_old_and_new_format_give_identical_networks(variant, blocks_key):
    old = build_network(variant, old_plans(), "3d_fullres", 1, 3).eval()
    new = build_network(variant, new_plans(blocks_key), "3d_fullres", 1, 3).eval()
    assert list(old.state_dict()) == list(new.state_dict())
    assert [t.shape for t in old.state_dict().values()] == [t.shape for t in new.state_dict().values()]
    load_network_weights(new, old.state_dict())
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        for a, b in zip(old(x), new(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_spec_of_both_formats_and_of_nnunets_converted_configuration_agree():
    """nnU-Net's ConfigurationManager rewrites old plans into the current format; all three views agree."""
    spec_old = spec_from_plans(old_plans(), "3d_fullres")
    assert spec_old == spec_from_plans(new_plans(), "3d_fullres")
    nnunet_view = PlansManager(old_plans()).get_configuration("3d_fullres").configuration
    assert "architecture" in nnunet_view and "conv_kernel_sizes" not in nnunet_view
    assert spec_from_configuration(nnunet_view) == spec_old
    assert spec_old.dim == 3 and spec_old.patch_size == (8, 16, 16)
    assert spec_old.features_per_stage == (4, 8, 12, 12)
    assert spec_old.kernel_sizes[0] == (1, 3, 3) and spec_old.strides[1] == (1, 2, 2)


@pytest.mark.parametrize("make_plans", [old_plans, new_plans])
def test_inherited_configuration_is_resolved_like_nnunet_does(make_plans):
    spec = spec_from_plans(make_plans(), "3d_lowres")
    nnunet_view = PlansManager(make_plans()).get_configuration("3d_lowres").configuration
    assert spec == spec_from_configuration(nnunet_view)
    assert spec.patch_size == (8, 8, 8)
    assert spec.strides == tuple(map(tuple, STRIDES))
    if make_plans is old_plans:  # the child overrides the base feature count
        assert spec.features_per_stage == (6, 12, 12, 12)


def test_configuration_entry_point_builds_what_build_network_builds():
    torch.manual_seed(0)
    a = build_network("enc", old_plans(), "3d_fullres", 2, 3, deep_supervision=False)
    configuration = PlansManager(old_plans()).get_configuration("3d_fullres").configuration
    torch.manual_seed(0)
    b = build_network_from_configuration("enc", configuration, 2, 3, deep_supervision=False)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert b.decoder.deep_supervision is False


def test_arch_kwargs_entry_point_takes_the_patch_size_separately_or_inside():
    arch_kwargs = new_plans()["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    reference = build_network("enc", new_plans(), "3d_fullres", 1, 3)
    given = build_network_from_arch_kwargs("enc", arch_kwargs, [8, 16, 16], 1, 3)
    inside = build_network_from_arch_kwargs("enc", {**arch_kwargs, "patch_size": [8, 16, 16]}, None, 1, 3)
    for net in (given, inside):
        assert {k: v.shape for k, v in net.state_dict().items()} == {
            k: v.shape for k, v in reference.state_dict().items()
        }
    # Bot does not need the patch size at all
    build_network_from_arch_kwargs("bot", arch_kwargs, None, 1, 3)
    with pytest.raises(UserError, match="patch size"):
        build_network_from_arch_kwargs("enc", arch_kwargs, None, 1, 3)


def test_variant_names_are_case_insensitive():
    assert type(build_network("BOT", old_plans(), "3d_fullres", 1, 2)).__name__ == "UMambaBot"
    assert type(build_network("Enc", old_plans(), "3d_fullres", 1, 2)).__name__ == "UMambaEnc"


def test_unknown_variant_is_a_user_error_naming_the_choices():
    with pytest.raises(UserError, match=r"'bottleneck'.*bot, enc") as info:
        build_network("bottleneck", old_plans(), "3d_fullres", 1, 2)
    assert isinstance(info.value, ValueError)


def test_configuration_not_in_plans_lists_the_available_ones():
    with pytest.raises(UserError, match=r"'2d' is not in the plans.*3d_fullres, 3d_lowres"):
        build_network("bot", old_plans(), "2d", 1, 2)
    plans = old_plans()
    plans["configurations"]["3d_lowres"]["inherits_from"] = "3d_missing"
    with pytest.raises(UserError, match=r"'3d_missing' \(inherited by '3d_lowres'\)"):
        spec_from_plans(plans, "3d_lowres")


def test_circular_inheritance_is_reported():
    plans = old_plans()
    plans["configurations"]["3d_fullres"]["inherits_from"] = "3d_lowres"
    with pytest.raises(UserError, match="circle"):
        spec_from_plans(plans, "3d_lowres")


@pytest.mark.parametrize("key", ["UNet_base_num_features", "conv_kernel_sizes", "n_conv_per_stage_decoder"])
def test_old_plans_missing_a_key_name_it(key):
    plans = old_plans()
    del plans["configurations"]["3d_fullres"][key]
    with pytest.raises(UserError, match=key):
        build_network("bot", plans, "3d_fullres", 1, 2)


@pytest.mark.parametrize("key", ["features_per_stage", "strides", "n_conv_per_stage"])
def test_new_plans_missing_a_key_name_it(key):
    plans = new_plans()
    del plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"][key]
    with pytest.raises(UserError, match=key):
        build_network("enc", plans, "3d_fullres", 1, 2)


def test_inconsistent_or_malformed_plans_are_user_errors():
    cases = []
    plans = old_plans()
    plans["configurations"]["3d_fullres"]["pool_op_kernel_sizes"] = STRIDES[:3]
    cases.append((plans, r"expected 4 strides"))
    plans = old_plans()
    plans["configurations"]["3d_fullres"]["conv_kernel_sizes"] = [[3, 3]] + KERNELS[1:]
    cases.append((plans, r"kernel sizes must have 2 \(2D\) or 3 \(3D\)|must have 2 entries"))
    plans = old_plans()
    plans["configurations"]["3d_fullres"]["patch_size"] = [16, 16]
    cases.append((plans, r"patch size \[16, 16\] has 2 axes"))
    plans = new_plans()
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["n_stages"] = 5
    cases.append((plans, r"n_stages is 5"))
    plans = old_plans()
    plans["configurations"]["3d_fullres"]["UNet_base_num_features"] = "32"
    cases.append((plans, r"UNet_base_num_features must be a positive integer"))
    cases.append(({"plans_name": "x"}, r"no 'configurations'"))
    for plans, message in cases:
        with pytest.raises(UserError, match=message):
            build_network("enc", copy.deepcopy(plans), "3d_fullres", 1, 2)
    with pytest.raises(UserError, match="num_classes"):
        build_network("enc", old_plans(), "3d_fullres", 1, 0)


def test_patch_smaller_than_the_strides_is_a_user_error_for_enc():
    plans = old_plans()
    plans["configurations"]["3d_fullres"]["patch_size"] = [2, 16, 16]
    build_network("bot", plans, "3d_fullres", 1, 2)  # Bot never looks at the patch size
    with pytest.raises(UserError, match=r"Patch size \(2, 16, 16\) is too small"):
        build_network("enc", plans, "3d_fullres", 1, 2)
