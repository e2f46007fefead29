"""Read the network geometry out of an nnU-Net plan, in either plans format.

Two formats exist in the wild:
- old (nnU-Net 2.1-2.3): the configuration itself carries `UNet_base_num_features`, `unet_max_num_features`,
  `conv_kernel_sizes`, `pool_op_kernel_sizes`, `n_conv_per_stage_encoder`, `n_conv_per_stage_decoder`;
- current (nnU-Net >= 2.4): the configuration carries `architecture.arch_kwargs` with `n_stages`,
  `features_per_stage`, `kernel_sizes`, `strides`, `n_conv_per_stage` (or `n_blocks_per_stage`) and
  `n_conv_per_stage_decoder`.
Both reduce to a `NetworkSpec`, so the networks never look at a plans dict themselves.

The per-stage block counts stored here are the plan's own numbers; the U-Mamba block-count override is a rule of
the networks and is applied when they are built (see `builder.py`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from umamba.errors import UserError

OLD_FORMAT_KEYS = (
    "UNet_base_num_features",
    "unet_max_num_features",
    "conv_kernel_sizes",
    "pool_op_kernel_sizes",
    "n_conv_per_stage_encoder",
    "n_conv_per_stage_decoder",
)
ARCH_KWARGS_KEYS = ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage_decoder")


@dataclass(frozen=True)
class NetworkSpec:
    """Geometry of a U-Net-shaped network, one entry per resolution stage (stage 0 = full resolution).

    patch_size is None when the caller does not know it (only U-Mamba Enc needs it, to size channel tokens).
    """

    dim: int
    patch_size: tuple[int, ...] | None
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    n_blocks_enc: tuple[int, ...]
    n_blocks_dec: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.features_per_stage)

    def feature_map_sizes(self) -> list[tuple[int, ...]]:
        """Spatial size after each stage for an input of exactly `patch_size` (floor division per stride)."""
        if self.patch_size is None:
            raise UserError(
                "The patch size is needed to size U-Mamba Enc's Mamba layers, but none was given.",
                hint="pass patch_size (the plan configuration's 'patch_size') when building the network",
            )
        sizes, size = [], self.patch_size
        for stride in self.strides:
            size = tuple(n // s for n, s in zip(size, stride))
            if min(size) < 1:
                raise UserError(
                    f"Patch size {self.patch_size} is too small for the plan's strides {self.strides}: "
                    "a stage would have an empty feature map.",
                    hint="use the patch size of the same plans.json configuration as the strides",
                )
            sizes.append(size)
        return sizes


def resolve_configuration(plans: Mapping[str, Any], configuration: str) -> dict:
    """The configuration dict with `inherits_from` resolved the way nnU-Net does it (child keys win, shallowly)."""
    if not isinstance(plans, Mapping):
        raise UserError(f"Expected an nnU-Net plans dict (the content of plans.json), got {type(plans).__name__}.")
    configurations = plans.get("configurations")
    if not isinstance(configurations, Mapping):
        raise UserError(
            "The plans dict has no 'configurations' entry.",
            hint="pass the content of an nnU-Net plans.json (nnUNetPlans.json or plans.json of a trained model)",
        )
    chain: list[str] = []
    name = configuration
    while True:
        if name not in configurations:
            known = ", ".join(sorted(map(str, configurations))) or "none"
            where = f" (inherited by {chain[-1]!r})" if chain else ""
            raise UserError(
                f"Configuration {name!r}{where} is not in the plans; the plans have: {known}.",
                hint="choose one of the configurations listed in plans.json",
            )
        if name in chain:
            raise UserError(f"The plans' configurations inherit in a circle: {' -> '.join(chain + [name])}.")
        chain.append(name)
        parent = configurations[name].get("inherits_from") if isinstance(configurations[name], Mapping) else None
        if parent is None:
            break
        name = parent
    resolved: dict = {}
    for name in reversed(chain):  # root first, so that children override their parents
        resolved.update(copy.deepcopy(dict(configurations[name])))
    resolved.pop("inherits_from", None)
    return resolved


def spec_from_plans(plans: Mapping[str, Any], configuration: str) -> NetworkSpec:
    """NetworkSpec of one configuration ('2d', '3d_fullres', ...) of an nnU-Net plans dict (old or current format)."""
    return spec_from_configuration(resolve_configuration(plans, configuration), name=configuration)


def spec_from_configuration(config: Mapping[str, Any], name: str = "configuration") -> NetworkSpec:
    """NetworkSpec of one resolved configuration dict, e.g. nnU-Net's `ConfigurationManager.configuration`."""
    patch_size = _int_list(config.get("patch_size"), f"{name}.patch_size") if "patch_size" in config else None
    architecture = config.get("architecture")
    if isinstance(architecture, Mapping) and "arch_kwargs" in architecture:
        return spec_from_arch_kwargs(architecture["arch_kwargs"], patch_size, where=f"{name}.architecture.arch_kwargs")
    missing = [k for k in OLD_FORMAT_KEYS if k not in config]
    if missing:
        raise UserError(
            f"Configuration {name!r} describes no network: it has neither 'architecture.arch_kwargs' (nnU-Net >= 2.4) "
            f"nor the old-format keys (missing: {', '.join(missing)}).",
            hint="pass the plans.json that nnU-Net wrote for this dataset (nnUNetv2_plan_and_preprocess)",
        )
    kernels = _stage_list(config["conv_kernel_sizes"], f"{name}.conv_kernel_sizes")
    base = _positive_int(config["UNet_base_num_features"], f"{name}.UNet_base_num_features")
    maximum = _positive_int(config["unet_max_num_features"], f"{name}.unet_max_num_features")
    features = [min(base * 2**i, maximum) for i in range(len(kernels))]
    return _make_spec(
        name,
        patch_size,
        features,
        kernels,
        _stage_list(config["pool_op_kernel_sizes"], f"{name}.pool_op_kernel_sizes"),
        config["n_conv_per_stage_encoder"],
        config["n_conv_per_stage_decoder"],
    )


def spec_from_arch_kwargs(
    arch_kwargs: Mapping[str, Any], patch_size: Sequence[int] | None = None, where: str = "arch_kwargs"
) -> NetworkSpec:
    """NetworkSpec from nnU-Net's current-format `arch_kwargs` (what trainers receive as `arch_init_kwargs`).

    arch_kwargs does not contain the patch size; pass it separately (or as an extra 'patch_size' entry in
    arch_kwargs) when building U-Mamba Enc.
    """
    if not isinstance(arch_kwargs, Mapping):
        raise UserError(f"Expected {where} to be a dict, got {type(arch_kwargs).__name__}.")
    missing = [k for k in ARCH_KWARGS_KEYS if k not in arch_kwargs]
    if "n_conv_per_stage" not in arch_kwargs and "n_blocks_per_stage" not in arch_kwargs:
        missing.append("n_conv_per_stage or n_blocks_per_stage")
    if missing:
        raise UserError(
            f"{where} lacks {', '.join(missing)}.",
            hint="pass the 'arch_kwargs' of a plans.json configuration written by nnU-Net >= 2.4",
        )
    if patch_size is None and arch_kwargs.get("patch_size") is not None:
        patch_size = arch_kwargs["patch_size"]
    patch = _int_list(patch_size, "patch_size") if patch_size is not None else None
    kernels = _stage_list(arch_kwargs["kernel_sizes"], f"{where}.kernel_sizes")
    features = arch_kwargs["features_per_stage"]
    n_stages = arch_kwargs.get("n_stages", len(kernels))
    if isinstance(features, int):  # dynamic_network_architectures also accepts one number for all stages
        features = [features] * int(n_stages)
    enc = arch_kwargs.get("n_blocks_per_stage", arch_kwargs.get("n_conv_per_stage"))
    spec = _make_spec(
        where,
        patch,
        _int_list(features, f"{where}.features_per_stage"),
        kernels,
        _stage_list(arch_kwargs["strides"], f"{where}.strides"),
        enc,
        arch_kwargs["n_conv_per_stage_decoder"],
    )
    if spec.n_stages != n_stages:
        raise UserError(f"{where}.n_stages is {n_stages} but the per-stage lists have {spec.n_stages} entries.")
    return spec


def _make_spec(where, patch_size, features, kernels, strides, enc, dec) -> NetworkSpec:
    n = len(kernels)
    if n < 2:
        raise UserError(f"{where}: a U-Net needs at least 2 stages, the plan has {n}.")
    dim = len(kernels[0])
    if dim not in (2, 3):
        raise UserError(f"{where}: kernel sizes must have 2 (2D) or 3 (3D) entries, got {kernels[0]}.")
    if isinstance(enc, int):
        enc = [enc] * n
    if isinstance(dec, int):
        dec = [dec] * (n - 1)
    enc = _int_list(enc, f"{where} encoder blocks per stage")
    dec = _int_list(dec, f"{where} decoder blocks per stage")
    for label, values, expected in (
        ("features per stage", features, n),
        ("strides", strides, n),
        ("encoder blocks per stage", enc, n),
        ("decoder blocks per stage", dec, n - 1),
    ):
        if len(values) != expected:
            raise UserError(
                f"{where}: expected {expected} {label} (the plan has {n} stages of kernel sizes), got {len(values)}."
            )
    for label, rows in (("kernel size", kernels), ("stride", strides)):
        for row in rows:
            if len(row) != dim:
                raise UserError(f"{where}: every {label} must have {dim} entries like the first kernel, got {row}.")
    if patch_size is not None and len(patch_size) != dim:
        raise UserError(f"{where}: patch size {patch_size} has {len(patch_size)} axes but the kernels have {dim}.")
    if any(v < 1 for v in list(features) + list(enc) + list(dec)):
        raise UserError(f"{where}: features and block counts must be >= 1.")
    return NetworkSpec(
        dim=dim,
        patch_size=tuple(patch_size) if patch_size is not None else None,
        features_per_stage=tuple(features),
        kernel_sizes=tuple(tuple(k) for k in kernels),
        strides=tuple(tuple(s) for s in strides),
        n_blocks_enc=tuple(enc),
        n_blocks_dec=tuple(dec),
    )


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where} must be a positive integer, got {value!r}.")
    return value


def _int_list(value, where: str) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise UserError(f"{where} must be a list of positive integers, got {value!r}.")
    return [_positive_int(v, where) for v in value]


def _stage_list(value, where: str) -> list[list[int]]:
    """A per-stage list of per-axis integers, e.g. [[3, 3, 3], [3, 3, 3]]."""
    if not isinstance(value, (list, tuple)) or not value:
        raise UserError(f"{where} must be a non-empty list with one [..per axis..] entry per stage, got {value!r}.")
    return [_int_list(row, f"{where}[{i}]") for i, row in enumerate(value)]
