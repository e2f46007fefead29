"""Checkpoint weights: strict round trip with the alias keys, and clear errors for weights that do not fit."""

import io

import pytest
import torch

from umamba.errors import UserError
from umamba.nets import build_network, load_network_weights


pytestmark = pytest.mark.usefixtures("one_thread")


PLANS = {"configurations": {"3d_fullres": {
    "patch_size": [8, 8, 8], "UNet_base_num_features": 4, "unet_max_num_features": 8,
    "conv_kernel_sizes": [[3, 3, 3]] * 3, "pool_op_kernel_sizes": [[1, 1, 1]] + [[2, 2, 2]] * 2,
    "n_conv_per_stage_encoder": [2] * 3, "n_conv_per_stage_decoder": [2] * 2}}}


def make(variant, num_classes=3, seed=0):
    torch.manual_seed(seed)
    return build_network(variant, PLANS, "3d_fullres", 1, num_classes).eval()


def saved_and_loaded(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("variant", ["bot", "enc"])
def test_state_dict_round_trip_is_strict_and_reproduces_outputs(variant):
    trained, fresh = make(variant, seed=0), make(variant, seed=1)
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert not torch.equal(trained(x)[0], fresh(x)[0])
        state = saved_and_loaded(trained.state_dict())
        assert fresh.load_state_dict(state, strict=True) is not None  # plain torch, aliases included
        torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)
        other = make(variant, seed=2)
        load_network_weights(other, {"network_weights": state, "trainer_name": "nnUNetTrainerUMambaBot"})
        torch.testing.assert_close(other(x), trained(x), rtol=0, atol=0)


def test_alias_keys_are_the_same_tensors():
    state = make("enc").state_dict()
    same = [("encoder.stem.0.conv1.weight", "decoder.encoder.stem.0.conv1.weight"),
            ("encoder.stem.1.conv1.conv.weight", "encoder.stem.1.conv1.all_modules.0.weight"),
            ("encoder.stages.1.1.conv2.norm.bias", "decoder.encoder.stages.1.1.conv2.all_modules.1.bias"),
            ("encoder.mamba_layers.2.mamba.A_log", "decoder.encoder.mamba_layers.2.mamba.A_log")]
    for a, b in same:
        assert state[a].data_ptr() == state[b].data_ptr(), (a, b)


def test_wrapped_keys_of_ddp_or_compile_load():
    trained, fresh = make("bot", seed=0), make("bot", seed=1)
    load_network_weights(fresh, {"module._orig_mod." + k: v for k, v in trained.state_dict().items()})
    assert torch.equal(fresh.decoder.seg_layers[0].weight, trained.decoder.seg_layers[0].weight)


def test_january_2024_layout_is_named_not_listed_as_missing_keys():
    old_layout = {"ln.weight": torch.ones(8), "ln.bias": torch.zeros(8), "mamba.A_log": torch.zeros(16, 16),
                  "encoder.stages.0.blocks.0.conv1.weight": torch.zeros(4, 4, 3, 3, 3),
                  "decoder.transpconvs.0.weight": torch.zeros(8, 8, 2, 2, 2),
                  "decoder.seg_layers.0.weight": torch.zeros(3, 4, 1, 1, 1)}
    with pytest.raises(UserError, match=r"January-2024 U-Mamba layout.*decoder\.transpconvs") as info:
        load_network_weights(make("bot"), old_layout)
    assert "missing" not in str(info.value) and info.value.hint and "retrain" in info.value.hint


def test_other_variant_is_named():
    with pytest.raises(UserError, match="U-Mamba Bot network but the network built is a U-Mamba Enc"):
        load_network_weights(make("enc"), make("bot").state_dict())


def test_mismatch_is_summarised_with_the_first_keys():
    state = make("bot", num_classes=5).state_dict()
    with pytest.raises(UserError, match=r"4 with another shape: decoder\.seg_layers\.0\.weight \(5, 8, 1, 1, 1\) "
                                        r"vs \(3, 8, 1, 1, 1\)"):
        load_network_weights(make("bot", num_classes=3), state)
    with pytest.raises(UserError) as info:
        load_network_weights(make("bot", num_classes=3), state)
    # the first mismatching key, both shapes, and no tensor values
    assert ("decoder.seg_layers.0.weight has shape (5, 8, 1, 1, 1) in the checkpoint but (3, 8, 1, 1, 1) in the "
            "network") in info.value.message
    assert "tensor(" not in str(info.value)
    state = make("bot").state_dict()
    removed = [k for k in state if ".mamba." in k]
    for k in removed:
        del state[k]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError) as info:
        load_network_weights(make("bot"), state)
    message = str(info.value)
    assert f"{len(removed)} missing: {removed[0]}" in message and f"({len(removed) - 5} more)" in message
    assert "1 unexpected: extra.weight" in message
    assert len(message) < 1200  # a summary, not a wall of keys
