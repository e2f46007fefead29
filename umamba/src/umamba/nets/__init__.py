"""U-Mamba Bot and Enc networks built from nnU-Net plans, checkpoint-compatible with the original code.

Entry points:
- build_network(variant, plans, configuration, num_input_channels, num_classes, deep_supervision=True)
- build_network_from_configuration(variant, configuration_dict, num_input_channels, num_classes, deep_supervision)
- build_network_from_arch_kwargs(variant, arch_kwargs, patch_size, num_input_channels, num_classes, deep_supervision)
- build_network_from_spec(variant, spec, num_input_channels, num_classes, deep_supervision)
- load_network_weights(net, state_dict_or_checkpoint)
"""

from umamba.nets.builder import (
    VARIANTS,
    build_network,
    build_network_from_arch_kwargs,
    build_network_from_configuration,
    build_network_from_spec,
    network_class,
)
from umamba.nets.mamba_layer import MambaLayer
from umamba.nets.networks import UMambaBot, UMambaEnc, enc_mamba_modes, umamba_block_counts
from umamba.nets.plan_spec import (
    NetworkSpec,
    resolve_configuration,
    spec_from_arch_kwargs,
    spec_from_configuration,
    spec_from_plans,
)
from umamba.nets.weights import load_network_weights

__all__ = [
    "VARIANTS",
    "MambaLayer",
    "NetworkSpec",
    "UMambaBot",
    "UMambaEnc",
    "build_network",
    "build_network_from_arch_kwargs",
    "build_network_from_configuration",
    "build_network_from_spec",
    "enc_mamba_modes",
    "load_network_weights",
    "network_class",
    "resolve_configuration",
    "spec_from_arch_kwargs",
    "spec_from_configuration",
    "spec_from_plans",
    "umamba_block_counts",
]
