"""Parameter and state_dict key inventory of full-size U-Mamba networks (docs/architecture.md,
"Checkpoint keys").

The networks are built on the meta device: shapes and keys are real, no memory or init time is spent.
"""

import re

import pytest
import torch

from umamba.nets import build_network


def old_format_plans(configuration, patch_size, n_stages, base, maximum):
    """A plans dict as nnU-Net 2.1-2.3 wrote it: isotropic 3x3(x3) kernels, stride 2 from stage 1 on."""
    dim = len(patch_size)
    return {
        "configurations": {
            configuration: {
                "patch_size": patch_size,
                "UNet_class_name": "PlainConvUNet",
                "UNet_base_num_features": base,
                "unet_max_num_features": maximum,
                "conv_kernel_sizes": [[3] * dim for _ in range(n_stages)],
                "pool_op_kernel_sizes": [[1] * dim] + [[2] * dim for _ in range(n_stages - 1)],
                "num_pool_per_axis": [n_stages - 1] * dim,
                "n_conv_per_stage_encoder": [2] * n_stages,
                "n_conv_per_stage_decoder": [2] * (n_stages - 1),
            }
        }
    }


PLAN_3D = old_format_plans("3d_fullres", [128, 128, 128], 6, 32, 320)
PLAN_2D = old_format_plans("2d", [512, 512], 8, 32, 512)


def build_on_meta(variant, plans, configuration):
    with torch.device("meta"):
        return build_network(variant, plans, configuration, num_input_channels=1, num_classes=14)


@pytest.mark.parametrize(
    "variant, plans, configuration, n_keys, n_params",
    [
        ("bot", PLAN_3D, "3d_fullres", 397, 42_130_054),
        ("enc", PLAN_3D, "3d_fullres", 518, 42_760_582),
        ("bot", PLAN_2D, "2d", 513, 64_818_914),
        ("enc", PLAN_2D, "2d", 590, 64_035_874),
    ],
)
def test_key_and_parameter_counts_match_the_original(variant, plans, configuration, n_keys, n_params):
    net = build_on_meta(variant, plans, configuration)
    assert len(net.state_dict()) == n_keys
    assert sum(p.numel() for p in net.parameters()) == n_params


def test_3d_features_follow_min_base_times_two_to_the_stage_max():
    net = build_on_meta("bot", PLAN_3D, "3d_fullres")
    assert net.encoder.output_channels == [32, 64, 128, 256, 320, 320]
    assert net.mamba_layer.mamba.d_model == 320


def test_state_dict_carries_decoder_encoder_and_all_modules_aliases():
    state = build_on_meta("enc", PLAN_3D, "3d_fullres").state_dict()
    encoder_keys = [k for k in state if k.startswith("encoder.")]
    assert encoder_keys and all("decoder." + k in state for k in encoder_keys)
    assert len(state) == 2 * len(encoder_keys) + sum(k.startswith("decoder.") and "encoder." not in k for k in state)
    # BasicBlockD sub-blocks list conv and norm twice: by name and inside all_modules
    for key in ("encoder.stem.1.conv1.conv.weight", "encoder.stem.1.conv1.all_modules.0.weight",
                "encoder.stem.1.conv2.norm.bias", "encoder.stem.1.conv2.all_modules.1.bias"):
        assert key in state
    # the BasicResBlock 1x1 projection exists even where channels and resolution do not change
    assert state["encoder.stem.0.conv3.weight"].shape == (32, 1, 1, 1, 1)
    assert state["encoder.stages.0.0.conv3.weight"].shape == (32, 32, 1, 1, 1)


def test_every_key_matches_the_original_patterns():
    patterns = [
        r"(decoder\.)?encoder\.stem\.0\.(conv[123]|norm[12])\.(weight|bias)",
        r"(decoder\.)?encoder\.(stem|stages\.\d+)\.([1-9]\d*)\.conv[12]\.(conv|norm|all_modules\.[01])\.(weight|bias)",
        r"(decoder\.)?encoder\.stages\.\d+\.0\.(conv[123]|norm[12])\.(weight|bias)",
        r"((decoder\.)?encoder\.mamba_layers\.\d+|mamba_layer)\.norm\.(weight|bias)",
        r"((decoder\.)?encoder\.mamba_layers\.\d+|mamba_layer)\.mamba\."
        r"(A_log|D|in_proj\.weight|conv1d\.(weight|bias)|x_proj\.weight|dt_proj\.(weight|bias)|out_proj\.weight)",
        r"decoder\.upsample_layers\.\d+\.conv\.(weight|bias)",
        r"decoder\.stages\.\d+\.0\.(conv[123]|norm[12])\.(weight|bias)",
        r"decoder\.stages\.\d+\.[1-9]\d*\.conv[12]\.(conv|norm|all_modules\.[01])\.(weight|bias)",
        r"decoder\.seg_layers\.\d+\.(weight|bias)",
    ]
    for variant, plans, configuration in (("bot", PLAN_2D, "2d"), ("enc", PLAN_3D, "3d_fullres")):
        for key in build_on_meta(variant, plans, configuration).state_dict():
            assert any(re.fullmatch(p, key) for p in patterns), key


def test_bot_has_one_mamba_layer_and_enc_none_outside_the_encoder():
    bot = build_on_meta("bot", PLAN_3D, "3d_fullres").state_dict()
    enc = build_on_meta("enc", PLAN_3D, "3d_fullres").state_dict()
    assert bot["mamba_layer.mamba.in_proj.weight"].shape == (2 * 640, 320)
    assert not any("mamba_layers" in k for k in bot)
    assert not any(k.startswith("mamba_layer.") for k in enc)
    assert {k.split(".")[2] for k in enc if k.startswith("encoder.mamba_layers.")} == {"0", "1", "2", "3", "4", "5"}
