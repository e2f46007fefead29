"""Residual encoder with optional Mamba layers after its stages (docs/architecture.md,
"Encoder" and "Where the Mamba layers sit")."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from umamba.nets.blocks import residual_stage
from umamba.nets.mamba_layer import MambaLayer
from umamba.nets.plan_spec import NetworkSpec

SPATIAL = "spatial"
CHANNEL = "channel"


class ResidualMambaEncoder(nn.Module):
    """stem -> stages[0] -> ... -> stages[n-1]; each stage's output (after its Mamba layer, if any) is a skip.

    `mamba_modes` has one entry per stage: None (no Mamba layer), "spatial" or "channel" tokens. When it is
    None altogether (U-Mamba Bot) the encoder has no `mamba_layers` attribute at all, like the original.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        num_input_channels: int,
        n_blocks: Sequence[int],
        mamba_modes: Sequence[str | None] | None = None,
    ):
        super().__init__()
        f, k, d = spec.features_per_stage, spec.kernel_sizes, spec.dim
        self.output_channels = list(f)
        self.strides = [list(s) for s in spec.strides]
        self.stem = residual_stage(d, num_input_channels, f[0], k[0], 1, n_blocks[0])
        self.stages = nn.ModuleList(
            residual_stage(d, f[max(s - 1, 0)], f[s], k[s], spec.strides[s], n_blocks[s]) for s in range(spec.n_stages)
        )
        if mamba_modes is not None:
            self.mamba_layers = nn.ModuleList(self._mamba_layer(spec, s, mode) for s, mode in enumerate(mamba_modes))

    @staticmethod
    def _mamba_layer(spec: NetworkSpec, s: int, mode: str | None) -> nn.Module:
        if mode is None:
            return nn.Identity()
        if mode == CHANNEL:
            return MambaLayer(dim=math.prod(spec.feature_map_sizes()[s]), channel_token=True)
        return MambaLayer(dim=spec.features_per_stage[s])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for s, stage in enumerate(self.stages):
            x = stage(x)
            if hasattr(self, "mamba_layers"):
                x = self.mamba_layers[s](x)  # replaces the feature map (no residual around it)
            skips.append(x)
        return skips

