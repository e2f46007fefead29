"""Entry points that turn an nnU-Net plan (or a part of it) into a U-Mamba network."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from umamba.errors import UserError
from umamba.nets.networks import UMambaBot, UMambaEnc
from umamba.nets.plan_spec import NetworkSpec, spec_from_arch_kwargs, spec_from_configuration, spec_from_plans

VARIANTS = {"bot": UMambaBot, "enc": UMambaEnc}


def network_class(variant: str) -> type[nn.Module]:
    """UMambaBot for "bot", UMambaEnc for "enc" (case-insensitive; "UMambaBot"/"U-Mamba_Enc" style names too)."""
    key = str(variant).lower().replace("-", "").replace("_", "")
    key = key[len("umamba") :] if key.startswith("umamba") else key
    if key not in VARIANTS:
        raise UserError(
            f"Unknown U-Mamba variant {variant!r}; expected one of: {', '.join(VARIANTS)}.",
            hint='use "bot" (one Mamba layer at the bottleneck) or "enc" (Mamba layers in the encoder)',
        )
    return VARIANTS[key]


def build_network_from_spec(
    variant: str, spec: NetworkSpec, num_input_channels: int, num_classes: int, deep_supervision: bool = True
) -> nn.Module:
    """U-Mamba network for a NetworkSpec. U-Mamba Enc needs spec.patch_size (it sizes the channel tokens)."""
    cls = network_class(variant)
    for name, value in (("num_input_channels", num_input_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}.")
    return cls(spec, num_input_channels, num_classes, deep_supervision)


def build_network(
    variant: str,
    plans: Mapping[str, Any],
    configuration: str,
    num_input_channels: int,
    num_classes: int,
    deep_supervision: bool = True,
) -> nn.Module:
    """U-Mamba "bot" or "enc" network for one configuration of an nnU-Net plans dict (old or current format).

    num_classes is the number of segmentation outputs (nnU-Net's `label_manager.num_segmentation_heads`).
    """
    network_class(variant)  # an unknown variant is reported before any complaint about the plans
    return build_network_from_spec(
        variant, spec_from_plans(plans, configuration), num_input_channels, num_classes, deep_supervision
    )


def build_network_from_configuration(
    variant: str,
    configuration: Mapping[str, Any],
    num_input_channels: int,
    num_classes: int,
    deep_supervision: bool = True,
) -> nn.Module:
    """Network for one resolved configuration dict, e.g. nnU-Net's `configuration_manager.configuration`
    (which carries the patch size, so this suits trainers with nnU-Net's plans_manager/configuration_manager
    `build_network_architecture` signature)."""
    network_class(variant)
    spec = spec_from_configuration(configuration)
    return build_network_from_spec(variant, spec, num_input_channels, num_classes, deep_supervision)


def build_network_from_arch_kwargs(
    variant: str,
    arch_kwargs: Mapping[str, Any],
    patch_size: Sequence[int] | None,
    num_input_channels: int,
    num_classes: int,
    deep_supervision: bool = True,
) -> nn.Module:
    """Network from nnU-Net's current-format `arch_kwargs` (a trainer's `arch_init_kwargs`).

    arch_kwargs has no patch size. U-Mamba Enc needs it (channel-token layers are sized from it): pass the
    configuration's `patch_size`, or put it into arch_kwargs as an extra 'patch_size' entry and pass None.
    U-Mamba Bot ignores it.
    """
    network_class(variant)
    spec = spec_from_arch_kwargs(arch_kwargs, patch_size)
    return build_network_from_spec(variant, spec, num_input_channels, num_classes, deep_supervision)
