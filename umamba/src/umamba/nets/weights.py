"""Load trained U-Mamba weights strictly, with messages a person can act on when they do not fit."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from umamba.checkpoint import compare_weights, strip_wrappers
from umamba.errors import UserError

NEW_LAYOUT_MARK = "decoder.upsample_layers."
OLD_LAYOUT_MARK = "decoder.transpconvs."
SHOWN = 5


def load_network_weights(net: nn.Module, weights: Mapping[str, Any]) -> None:
    """Load a state_dict (or a whole nnU-Net checkpoint with 'network_weights') into `net`, strictly.

    Raises UserError for the January-2024 U-Mamba layout (`decoder.transpconvs.*`), for a checkpoint of the
    other variant, and for any other mismatch (with the first few missing, unexpected and mis-shaped keys).
    """
    if isinstance(weights, Mapping) and "network_weights" in weights:
        weights = weights["network_weights"]
    if not isinstance(weights, Mapping):
        raise UserError(f"Expected a state_dict (a dict of tensors), got {type(weights).__name__}.")
    state = {strip_wrappers(k): v for k, v in weights.items()}
    if any(k.startswith(OLD_LAYOUT_MARK) for k in state) and not any(k.startswith(NEW_LAYOUT_MARK) for k in state):
        raise UserError(
            "These weights use the January-2024 U-Mamba layout (transposed-conv decoder, keys "
            "'decoder.transpconvs.*'), which this package does not implement; it implements the current "
            "layout (keys 'decoder.upsample_layers.*', U-Mamba code from March 2024 on).",
            hint="retrain the model with the current U-Mamba code or with `umamba` (or use the January-2024 "
            "U-Mamba code for this checkpoint)",
        )
    own = net.state_dict()
    _check_variant(own, state)
    comparison = compare_weights(own, state)
    if not comparison.fits:
        raise UserError(
            f"The weights do not fit this network ({len(state)} keys given, {len(own)} expected): "
            f"{comparison.first_mismatch()} ({comparison.summary(SHOWN)}).",
            hint="build the network from the same plans.json configuration, variant, number of input channels "
            "and number of classes that the model was trained with",
        )
    net.load_state_dict(state, strict=True)


def _check_variant(own: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """A Bot checkpoint has a top-level `mamba_layer.`, an Enc checkpoint `encoder.mamba_layers.`."""

    def variant(keys) -> str | None:
        if any(k.startswith("mamba_layer.") for k in keys):
            return "U-Mamba Bot"
        if any(k.startswith("encoder.mamba_layers.") for k in keys):
            return "U-Mamba Enc"
        return None

    given, expected = variant(state), variant(own)
    if given and expected and given != expected:
        raise UserError(
            f"These weights are of a {given} network but the network built is a {expected}.",
            hint=f"build the network with variant {given.split()[-1].lower()!r}",
        )
