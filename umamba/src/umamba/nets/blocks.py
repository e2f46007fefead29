"""Convolutional building blocks of the U-Mamba networks (docs/architecture.md, "Blocks").

Module and parameter names are the checkpoint contract: `conv1, norm1, conv2, norm2, conv3` in BasicResBlock,
`conv1/conv2.{conv, norm, all_modules}` in BasicBlockD, `conv` in UpsampleLayer.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from umamba.mamba import backends

NEGATIVE_SLOPE = 0.01  # LeakyReLU slope, also the `a` of the Kaiming initialisation
NORM_EPS = 1e-5
NORM_BACKEND_ENV = "UMAMBA_NORM_BACKEND"  # "torch" (default) or "triton": instance_norm_act_triton.py, opt-in


def conv_class(dim: int) -> type[nn.Module]:
    return nn.Conv3d if dim == 3 else nn.Conv2d


def norm_class(dim: int) -> type[nn.Module]:
    return nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d


def make_conv(dim: int, c_in: int, c_out: int, kernel: Sequence[int], stride: Sequence[int] | int = 1) -> nn.Module:
    """Conv with bias and 'same' padding (k // 2 per axis), so only the stride changes the spatial size."""
    return conv_class(dim)(c_in, c_out, tuple(kernel), stride=stride, padding=tuple(k // 2 for k in kernel), bias=True)


def make_norm(dim: int, channels: int) -> nn.Module:
    return norm_class(dim)(channels, eps=NORM_EPS, affine=True)


def make_nonlin() -> nn.Module:
    return nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)


def _fused_norm_act(x: torch.Tensor):
    """The Triton InstanceNorm+LeakyReLU when UMAMBA_NORM_BACKEND=triton, Triton imports and x can run it (CUDA,
    or any device under Triton's interpreter); else None: torch's modules."""
    if os.environ.get(NORM_BACKEND_ENV, "torch") != "triton":
        return None
    # umamba.mamba.backends: probed once, and Triton only on compute capability >= 7.0 (or its interpreter)
    interpreted = os.environ.get("TRITON_INTERPRET") == "1" and backends.probe("triton-instnorm").ok
    if not (interpreted or backends.triton_usable(x.device, "triton-instnorm")[0]):
        return None
    from umamba.nets.instance_norm_act_triton import instance_norm_leaky_relu

    return instance_norm_leaky_relu


def norm_act(norm: nn.Module, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """act(norm(x)), in one Triton pass when chosen (the modules keep their parameters: checkpoints unchanged)."""
    fused = _fused_norm_act(x)
    if fused is None:
        return act(norm(x))
    return fused(x, norm.weight, norm.bias, norm.eps, act.negative_slope)


class BasicResBlock(nn.Module):
    """Residual block whose skip is always a strided 1x1 conv.

    out = act2(norm2(conv2(act1(norm1(conv1(x))))) + conv3(x))
    """

    def __init__(self, dim: int, c_in: int, c_out: int, kernel: Sequence[int], stride: Sequence[int] | int = 1):
        super().__init__()
        ones = (1,) * dim
        self.conv1 = make_conv(dim, c_in, c_out, kernel, stride)
        self.norm1 = make_norm(dim, c_out)
        self.act1 = make_nonlin()
        self.conv2 = make_conv(dim, c_out, c_out, kernel)
        self.norm2 = make_norm(dim, c_out)
        self.act2 = make_nonlin()
        # The projection exists even when c_in == c_out and stride == 1: checkpoints contain it.
        self.conv3 = make_conv(dim, c_in, c_out, ones, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = norm_act(self.norm1, self.act1, self.conv1(x))
        y = self.norm2(self.conv2(y))
        return self.act2(y + self.conv3(x))


class ConvNormAct(nn.Module):
    """conv -> norm (-> LeakyReLU), registered both by name and as `all_modules`, as in original checkpoints.

    The two registrations hold the same modules, so the state_dict lists each tensor twice
    (`conv.weight` and `all_modules.0.weight`) while parameters() yields it once.
    """

    def __init__(self, dim: int, channels: int, kernel: Sequence[int], with_nonlin: bool):
        super().__init__()
        self.conv = make_conv(dim, channels, channels, kernel)
        self.norm = make_norm(dim, channels)
        modules = [self.conv, self.norm]
        if with_nonlin:
            self.nonlin = make_nonlin()
            modules.append(self.nonlin)
        self.all_modules = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "nonlin"):
            return norm_act(self.norm, self.nonlin, self.conv(x))
        return self.all_modules(x)


class BasicBlockD(nn.Module):
    """Residual block with identity skip (stride 1, same channels): out = LeakyReLU(conv2(conv1(x)) + x)."""

    def __init__(self, dim: int, channels: int, kernel: Sequence[int]):
        super().__init__()
        self.conv1 = ConvNormAct(dim, channels, kernel, with_nonlin=True)
        self.conv2 = ConvNormAct(dim, channels, kernel, with_nonlin=False)
        self.nonlin2 = make_nonlin()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin2(self.conv2(self.conv1(x)) + x)


def residual_stage(dim: int, c_in: int, c_out: int, kernel: Sequence[int], stride, n_blocks: int) -> nn.Sequential:
    """One BasicResBlock (which may change channels and stride) followed by n_blocks - 1 BasicBlockD."""
    blocks = [BasicResBlock(dim, c_in, c_out, kernel, stride)]
    blocks += [BasicBlockD(dim, c_out, kernel) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class UpsampleLayer(nn.Module):
    """Nearest-neighbour upsampling by the stage's stride, then a 1x1 conv that changes the channel count."""

    def __init__(self, dim: int, c_in: int, c_out: int, scale: Sequence[int]):
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.conv = make_conv(dim, c_in, c_out, (1,) * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


def init_weights_he(module: nn.Module) -> None:
    """Kaiming-normal (a = 0.01) weights and zero bias for 2D/3D (transposed) convs; other modules keep theirs."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
