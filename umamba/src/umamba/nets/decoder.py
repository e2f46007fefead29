"""U-Mamba decoder: nearest upsampling + 1x1 conv, concatenation with the skip, residual stage
(docs/architecture.md, "Decoder and deep supervision")."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from umamba.nets.blocks import UpsampleLayer, make_conv, residual_stage
from umamba.nets.encoder import ResidualMambaEncoder
from umamba.nets.plan_spec import NetworkSpec


class UMambaDecoder(nn.Module):
    """Decoder index i = 0 .. n_stages-2 runs from the lowest resolution up; s = i + 1 counts stages from the end.

    In 2D the last (full-resolution) decoder stage takes no skip, as in the original U-Mamba 2D networks.
    `deep_supervision` (toggled by nnU-Net) selects between the list of all outputs, highest resolution first,
    and the full-resolution output alone.
    """

    def __init__(
        self,
        encoder: ResidualMambaEncoder,
        spec: NetworkSpec,
        num_classes: int,
        n_blocks: Sequence[int],
        deep_supervision: bool,
    ):
        super().__init__()
        self.deep_supervision = deep_supervision
        # Registered as a submodule on purpose: original checkpoints list every encoder key again under
        # `decoder.encoder.`, and a strict load needs these aliases.
        self.encoder = encoder
        f, k, d, n = spec.features_per_stage, spec.kernel_sizes, spec.dim, spec.n_stages
        self.skip_at_stage = [not (d == 2 and i == n - 2) for i in range(n - 1)]
        upsample_layers, stages, seg_layers = [], [], []
        for i in range(n - 1):
            s = i + 1
            c_below, c_out = f[-s], f[-(s + 1)]
            upsample_layers.append(UpsampleLayer(d, c_below, c_out, spec.strides[-s]))
            c_in = 2 * c_out if self.skip_at_stage[i] else c_out
            stages.append(residual_stage(d, c_in, c_out, k[-(s + 1)], 1, n_blocks[i]))
            seg_layers.append(make_conv(d, c_out, num_classes, (1,) * d))
        self.upsample_layers = nn.ModuleList(upsample_layers)
        self.stages = nn.ModuleList(stages)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        outputs = []  # lowest resolution first while collecting
        last = len(self.stages) - 1
        for i, (upsample, stage) in enumerate(zip(self.upsample_layers, self.stages)):
            x = upsample(x)
            if self.skip_at_stage[i]:
                x = torch.cat((x, skips[-(i + 2)]), dim=1)  # upsampled first, skip second
            x = stage(x)
            if self.deep_supervision or i == last:
                outputs.append(self.seg_layers[i](x))
        if not self.deep_supervision:
            return outputs[-1]
        return outputs[::-1]  # highest resolution first, as nnU-Net's deep-supervision loss expects
