"""U-Mamba Bot and U-Mamba Enc networks built from a NetworkSpec (docs/architecture.md, "Building
the network from a plan" and "Where the Mamba layers sit")."""

from __future__ import annotations

import math

import torch
from torch import nn

from umamba.nets.blocks import init_weights_he
from umamba.nets.decoder import UMambaDecoder
from umamba.nets.encoder import CHANNEL, SPATIAL, ResidualMambaEncoder
from umamba.nets.mamba_layer import MambaLayer
from umamba.nets.plan_spec import NetworkSpec


def umamba_block_counts(spec: NetworkSpec) -> tuple[list[int], list[int]]:
    """The plan's blocks per stage with U-Mamba's override: the deeper half of the encoder and the
    highest-resolution decoder stages (all but the last) get a single block.

    Encoder stage s gets 1 block if s >= ceil(n/2); decoder index i (0 = lowest resolution) gets 1 block if
    ceil((n-1)/2 + 0.5) <= i < n-1. E.g. n = 6: [2,2,2,2,2,2]/[2,2,2,2,2] -> [2,2,2,1,1,1]/[2,2,2,1,1].
    """
    n = spec.n_stages
    enc = [1 if s >= math.ceil(n / 2) else b for s, b in enumerate(spec.n_blocks_enc)]
    first_single = math.ceil((n - 1) / 2 + 0.5)
    dec = [1 if first_single <= i < n - 1 else b for i, b in enumerate(spec.n_blocks_dec)]
    return enc, dec


def enc_mamba_modes(spec: NetworkSpec) -> list[str | None]:
    """Which encoder stages of U-Mamba Enc carry a Mamba layer, and with which tokens.

    3D: every stage. 2D: stages where bool(s % 2) XOR bool(n_stages % 2) (so always the last one).
    Channel tokens where the feature map at the plan's patch size has no more voxels than the stage has
    channels; spatial tokens elsewhere.
    """
    n = spec.n_stages
    sizes = spec.feature_map_sizes()
    modes: list[str | None] = []
    for s in range(n):
        if spec.dim == 2 and not (bool(s % 2) ^ bool(n % 2)):
            modes.append(None)
        elif math.prod(sizes[s]) <= spec.features_per_stage[s]:
            modes.append(CHANNEL)
        else:
            modes.append(SPATIAL)
    return modes


class UMambaBot(nn.Module):
    """Residual U-Net with one Mamba layer (spatial tokens) on the bottleneck output."""

    def __init__(self, spec: NetworkSpec, num_input_channels: int, num_classes: int, deep_supervision: bool = True):
        super().__init__()
        n_enc, n_dec = umamba_block_counts(spec)
        self.encoder = ResidualMambaEncoder(spec, num_input_channels, n_enc)
        self.mamba_layer = MambaLayer(dim=spec.features_per_stage[-1])
        self.decoder = UMambaDecoder(self.encoder, spec, num_classes, n_dec, deep_supervision)
        _init_convs(self)

    def forward(self, x: torch.Tensor):
        skips = self.encoder(x)
        skips[-1] = self.mamba_layer(skips[-1])
        return self.decoder(skips)


class UMambaEnc(nn.Module):
    """Residual U-Net whose encoder stages end in Mamba layers (3D: all stages, 2D: alternating)."""

    def __init__(self, spec: NetworkSpec, num_input_channels: int, num_classes: int, deep_supervision: bool = True):
        super().__init__()
        n_enc, n_dec = umamba_block_counts(spec)
        self.encoder = ResidualMambaEncoder(spec, num_input_channels, n_enc, enc_mamba_modes(spec))
        self.decoder = UMambaDecoder(self.encoder, spec, num_classes, n_dec, deep_supervision)
        _init_convs(self)

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))


def _init_convs(net: nn.Module) -> None:
    # modules() visits the encoder once although it is registered twice (also as decoder.encoder)
    for module in net.modules():
        init_weights_he(module)
