"""MambaLayer runs in float32 whatever the surrounding autocast, and hands back the input's dtype."""

import pytest
import torch

from umamba.nets import MambaLayer, build_network


pytestmark = pytest.mark.usefixtures("one_thread")


def record_dtypes(module, seen):
    """Forward hook: note the dtypes of the module's input and output."""
    def hook(_module, args, output):
        seen.append((args[0].dtype, output.dtype))

    return module.register_forward_hook(hook)


@pytest.mark.parametrize("channel_token", [False, True])
def test_layer_is_float32_inside_cpu_bf16_autocast_and_returns_bf16(channel_token):
    torch.manual_seed(0)
    layer = MambaLayer(dim=8 if channel_token else 6, channel_token=channel_token).eval()
    x = torch.randn(2, 6, 2, 2, 2).to(torch.bfloat16)
    seen = []
    hooks = [record_dtypes(m, seen) for m in (layer.norm, layer.mamba, layer.mamba.in_proj)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    for h in hooks:
        h.remove()
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert seen and all(pair == (torch.float32, torch.float32) for pair in seen)
    # the same numbers as a plain float32 run: autocast really was off inside
    with torch.no_grad():
        reference = layer(x.float())
    assert reference.dtype == torch.float32
    torch.testing.assert_close(y, reference.to(torch.bfloat16), rtol=0, atol=0)


def test_half_input_without_autocast_runs_in_float32_and_returns_half():
    torch.manual_seed(0)
    layer = MambaLayer(dim=4).eval()
    x = torch.randn(1, 4, 3, 5).half()
    seen = []
    hook = record_dtypes(layer.mamba, seen)
    with torch.no_grad():
        y = layer(x)
    hook.remove()
    assert y.dtype == torch.float16 and seen == [(torch.float32, torch.float32)]


def test_whole_enc_network_under_autocast_keeps_its_mamba_layers_in_float32():
    torch.manual_seed(0)
    plans = {"configurations": {"2d": {
        "patch_size": [16, 16], "UNet_base_num_features": 4, "unet_max_num_features": 8,
        "conv_kernel_sizes": [[3, 3]] * 4, "pool_op_kernel_sizes": [[1, 1]] + [[2, 2]] * 3,
        "n_conv_per_stage_encoder": [2] * 4, "n_conv_per_stage_decoder": [2] * 3}}}
    net = build_network("enc", plans, "2d", 1, 2).eval()
    seen = []
    hooks = [record_dtypes(m.mamba, seen) for m in net.encoder.mamba_layers if isinstance(m, MambaLayer)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = net(torch.randn(1, 1, 16, 16))
    for h in hooks:
        h.remove()
    assert len(seen) == 2 and all(pair == (torch.float32, torch.float32) for pair in seen)
    assert outputs[0].dtype == torch.bfloat16  # the convolutions around them did run under autocast
    assert all(torch.isfinite(o.float()).all() for o in outputs)


def test_layer_converted_to_float64_runs_in_float64():
    torch.manual_seed(0)
    layer = MambaLayer(dim=3).double()
    x = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,), eps=1e-6, atol=1e-6)
