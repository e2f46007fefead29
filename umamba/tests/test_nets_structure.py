"""Structure and behaviour of small U-Mamba networks: block counts, Mamba placement, channel tokens, decoder,
deep supervision, initialisation and forward/backward passes in 2D and 3D."""

import math

import pytest
import torch
from torch import nn

from umamba.nets import MambaLayer, build_network, enc_mamba_modes, spec_from_plans, umamba_block_counts


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_plans(dim, n_stages, patch, base=4, maximum=16, blocks=2):
    return {
        "configurations": {
            "c": {
                "patch_size": patch,
                "UNet_base_num_features": base,
                "unet_max_num_features": maximum,
                "conv_kernel_sizes": [[3] * dim for _ in range(n_stages)],
                "pool_op_kernel_sizes": [[1] * dim] + [[2] * dim for _ in range(n_stages - 1)],
                "n_conv_per_stage_encoder": [blocks] * n_stages,
                "n_conv_per_stage_decoder": [blocks] * (n_stages - 1),
            }
        }
    }


@pytest.mark.parametrize(
    "n_stages, enc, dec",
    [
        (6, [2, 2, 2, 1, 1, 1], [2, 2, 2, 1, 1]),  # the example of the spec
        (7, [2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 1, 1]),
        (4, [2, 2, 1, 1], [2, 2, 1]),
    ],
)
def test_block_count_override_shapes_the_built_stages(n_stages, enc, dec):
    plans = tiny_plans(2, n_stages, [2**n_stages] * 2)
    spec = spec_from_plans(plans, "c")
    assert umamba_block_counts(spec) == (enc, dec)
    with torch.device("meta"):
        net = build_network("bot", plans, "c", 1, 2)
    assert len(net.encoder.stem) == enc[0]
    assert [len(stage) for stage in net.encoder.stages] == enc
    assert [len(stage) for stage in net.decoder.stages] == dec


@pytest.mark.parametrize("n_stages, with_mamba", [(5, [0, 2, 4]), (6, [1, 3, 5]), (7, [0, 2, 4, 6]), (8, [1, 3, 5, 7])])
def test_enc_2d_places_mamba_on_alternating_stages_ending_at_the_last(n_stages, with_mamba):
    with torch.device("meta"):
        net = build_network("enc", tiny_plans(2, n_stages, [2 ** (n_stages + 2)] * 2), "c", 1, 2)
    layers = net.encoder.mamba_layers
    assert len(layers) == n_stages
    assert [s for s, m in enumerate(layers) if isinstance(m, MambaLayer)] == with_mamba
    for s, m in enumerate(layers):
        if s not in with_mamba:
            assert isinstance(m, nn.Identity) and not list(m.parameters())


def test_enc_3d_places_mamba_after_every_stage():
    with torch.device("meta"):
        net = build_network("enc", tiny_plans(3, 5, [32] * 3), "c", 1, 2)
    assert all(isinstance(m, MambaLayer) for m in net.encoder.mamba_layers) and len(net.encoder.mamba_layers) == 5


def test_channel_tokens_where_the_feature_map_has_no_more_voxels_than_channels():
    # patch 32^3, strides 1,2,2,2,2: maps 32^3, 16^3, 8^3, 4^3 = 64, 2^3 = 8; features 4, 8, 16, 16, 16
    plans = tiny_plans(3, 5, [32, 32, 32])
    assert enc_mamba_modes(spec_from_plans(plans, "c")) == ["spatial"] * 4 + ["channel"]
    with torch.device("meta"):
        layers = build_network("enc", plans, "c", 1, 2).encoder.mamba_layers
    assert [m.channel_token for m in layers] == [False] * 4 + [True]
    assert layers[4].dim == 8 and layers[4].mamba.d_model == 8  # d_model = prod(feature map)
    assert layers[3].dim == 16  # spatial tokens: d_model = channels
    # with 64 channels at stage 3, its 4^3 = 64 voxels also become channel tokens (<=, not <)
    plans = tiny_plans(3, 5, [32, 32, 32], base=8, maximum=64)
    assert enc_mamba_modes(spec_from_plans(plans, "c"))[3:] == ["channel", "channel"]


def test_channel_token_layer_is_causal_over_channels_and_accepts_only_its_map_size():
    torch.manual_seed(0)
    layer = MambaLayer(dim=8, channel_token=True).eval()  # 2x2x2 maps
    x = torch.randn(1, 5, 2, 2, 2)
    x2 = x.clone()
    x2[:, 3] += 1.0  # change channel 3 only
    with torch.no_grad():
        y, y2 = layer(x), layer(x2)
    changed = (y - y2).abs().flatten(2).amax(-1)[0]  # per channel
    assert torch.all(changed[:3] == 0) and torch.all(changed[3:] > 0)
    with pytest.raises(ValueError, match="feature-map size"):
        layer(torch.randn(1, 5, 4, 2, 2))


def test_spatial_token_layer_scans_in_row_major_order():
    torch.manual_seed(0)
    layer = MambaLayer(dim=3).eval()
    x = torch.randn(1, 3, 2, 3, 4)
    x2 = x.clone()
    x2[0, 0, 1, 0, 2] += 1.0  # one channel at raster position 1*12 + 0*4 + 2 = 14
    with torch.no_grad():
        y, y2 = layer(x), layer(x2)
    changed = (y - y2).abs().amax(1).flatten()  # (L,) in row-major order
    assert torch.all(changed[:14] == 0) and torch.all(changed[14:] > 0)


@pytest.mark.parametrize("dim, patch, n_stages", [(3, [8, 16, 16], 4), (2, [32, 32], 5)])
def test_deep_supervision_returns_highest_resolution_first_and_toggles(dim, patch, n_stages):
    torch.manual_seed(0)
    net = build_network("bot", tiny_plans(dim, n_stages, patch), "c", 2, 3).eval()
    x = torch.randn(2, 2, *patch)
    with torch.no_grad():
        outputs = net(x)
        assert [tuple(o.shape) for o in outputs] == [
            (2, 3, *[p // 2**i for p in patch]) for i in range(n_stages - 1)
        ]
        net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
        full = net(x)
    assert isinstance(full, torch.Tensor)
    torch.testing.assert_close(full, outputs[0], rtol=0, atol=0)


def test_without_deep_supervision_only_the_full_resolution_output_is_returned():
    net = build_network("enc", tiny_plans(2, 4, [16, 16]), "c", 1, 4, deep_supervision=False).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 16, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 4, 16, 16)
    assert len(net.decoder.seg_layers) == 3  # all heads exist (checkpoints contain them)


def test_2d_last_decoder_stage_has_no_skip_3d_has_all():
    with torch.device("meta"):
        net2 = build_network("bot", tiny_plans(2, 4, [16, 16], base=4), "c", 1, 2)
        net3 = build_network("bot", tiny_plans(3, 4, [16, 16, 16], base=4), "c", 1, 2)
    assert [s[0].conv1.in_channels for s in net2.decoder.stages] == [32, 16, 4]
    assert [s[0].conv1.in_channels for s in net3.decoder.stages] == [32, 16, 8]
    assert [u.scale for u in net3.decoder.upsample_layers] == [(2.0, 2.0, 2.0)] * 3


@pytest.mark.parametrize("variant", ["bot", "enc"])
# (the smallest maps stay above one voxel: a LayerNorm over a single-voxel channel token has no gradient)
@pytest.mark.parametrize("dim, patch, n_stages", [(3, [8, 8, 8], 3), (2, [32, 32], 5)])
def test_forward_and_backward_reach_every_parameter(variant, dim, patch, n_stages):
    torch.manual_seed(0)
    net = build_network(variant, tiny_plans(dim, n_stages, patch), "c", 1, 3)
    outputs = net(torch.randn(2, 1, *patch))
    assert outputs[0].shape == (2, 3, *patch)
    sum(o.square().mean() for o in outputs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_kaiming_init_on_convs_only():
    torch.manual_seed(0)
    net = build_network("enc", tiny_plans(3, 4, [16, 16, 16], base=16, maximum=32), "c", 1, 2)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
    assert all(torch.all(c.bias == 0) for c in convs)
    w = net.encoder.stages[1][0].conv1.weight  # 32 x 16 x 3x3x3: fan_in 432
    expected_std = math.sqrt(2.0 / (1 + 0.01**2) / (16 * 27))
    assert abs(w.std().item() / expected_std - 1) < 0.05
    mamba_layer = net.encoder.mamba_layers[0]
    assert torch.all(mamba_layer.norm.weight == 1) and torch.all(mamba_layer.norm.bias == 0)
    assert mamba_layer.mamba.conv1d.bias.abs().sum() > 0  # Conv1d of the Mamba block keeps its own init
