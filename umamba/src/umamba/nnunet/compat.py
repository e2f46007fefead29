"""The one place that knows how supported nnU-Net versions (2.6, 2.7, 2.8) differ.

Differences handled here:
- `build_network_architecture`: 2.6 calls it as (arch_class_name, arch_kwargs, arch_kwargs_req_import,
  num_input_channels, num_output_channels, enable_deep_supervision); 2.7+ call it as (plans_manager,
  configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision) when the signature has
  a `plans_manager` parameter. Both the trainer (positionally) and the predictor (deep supervision as keyword)
  call it. `split_build_arguments` turns any of these calls into one record.
- The trainer's `plans` argument: 2.7+ pop a "continue_training" key from it (and fail without it); 2.6 would
  store that key in the saved plans.json, so it is added only where it is expected.
- The training logger: 2.6 has `nnUNetLogger.my_fantastic_logging[key][-1]`, 2.7+ `MetaLogger.get_value(key, step)`.
- `nnunetv2.paths`: 2.6/2.7 read nnUNet_raw/_preprocessed/_results once at import, 2.8 on every use.
- External trainers: only 2.8 searches the folders in `nnUNet_extTrainer`.
- Planning/preprocessing API: 2.8 added `show_progress_bar` keywords.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from umamba.errors import UserError

SUPPORTED = ((2, 6), (2, 9))  # [lower, upper)
EXT_TRAINER_DIR = Path(__file__).resolve().parent / "ext_trainers"


def _parse(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def nnunet_version() -> tuple[int, ...]:
    try:
        return _parse(metadata.version("nnunetv2"))
    except metadata.PackageNotFoundError:
        return ()


def require_supported_nnunet() -> tuple[int, ...]:
    v = nnunet_version()
    if not v:
        raise UserError("nnU-Net v2 (the `nnunetv2` package) is not installed",
                        "install it with: pip install 'nnunetv2>=2.6,<2.9'")
    if not (SUPPORTED[0] <= v[:2] < SUPPORTED[1]):
        raise UserError(f"nnunetv2 {'.'.join(map(str, v))} is not supported (umamba supports 2.6 to 2.8)",
                        "install a supported version: pip install 'nnunetv2>=2.6,<2.9'")
    return v


# -- trainer construction -------------------------------------------------------------------------------------------
def trainer_plans(plans: dict, continue_training: bool) -> dict:
    """The `plans` dict to hand to nnUNetTrainer.__init__ for this nnU-Net version (a copy)."""
    plans = dict(plans)
    plans.pop("continue_training", None)
    if trainer_pops_continue_flag():
        plans["continue_training"] = bool(continue_training)
    return plans


def trainer_pops_continue_flag() -> bool:
    """nnUNetTrainer.__init__ pops plans["continue_training"] from 2.7 on, together with its MetaLogger; the
    feature is detected rather than the version, so a source checkout of any version is handled too."""
    from nnunetv2.training.logging import nnunet_logger

    return hasattr(nnunet_logger, "MetaLogger")


@dataclass(frozen=True)
class BuildArguments:
    """One `build_network_architecture` call, whatever convention the caller used."""

    num_input_channels: int
    num_output_channels: int
    deep_supervision: bool
    plans_manager: Any = None  # new convention (2.7+)
    configuration_manager: Any = None
    arch_class_name: str | None = None  # old convention (2.6)
    arch_kwargs: dict | None = None


def split_build_arguments(first, second, third, fourth, legacy: tuple, deep_supervision: bool | None
                          ) -> BuildArguments:
    """Normalise the arguments of `build_network_architecture(first, second, third, fourth, *legacy,
    enable_deep_supervision=...)` (see the module docstring for the two conventions)."""
    if isinstance(first, str):  # (class_name, arch_kwargs, req_import, n_in, n_out[, deep_supervision])
        if not legacy:
            raise TypeError("build_network_architecture: the old convention needs 5 or 6 arguments")
        n_out = legacy[0]
        ds = legacy[1] if len(legacy) > 1 else (True if deep_supervision is None else deep_supervision)
        return BuildArguments(int(fourth), int(n_out), bool(ds), arch_class_name=first, arch_kwargs=dict(second))
    ds = legacy[0] if legacy else (True if deep_supervision is None else deep_supervision)
    return BuildArguments(int(third), int(fourth), bool(ds), plans_manager=first, configuration_manager=second)


# -- logging ---------------------------------------------------------------------------------------------------------
def logged_value(logger, key: str, step: int = -1):
    """The value nnU-Net's training logger holds for `key` at `step` (None when absent)."""
    try:
        if hasattr(logger, "get_value"):
            return logger.get_value(key, step)
        return logger.my_fantastic_logging[key][step]
    except (KeyError, IndexError, AttributeError):
        return None


# -- paths ------------------------------------------------------------------------------------------------------------
def nnunet_paths_follow_environment() -> bool:
    """True when changing nnUNet_* environment variables now still reaches nnU-Net in this process."""
    paths = sys.modules.get("nnunetv2.paths")
    # 2.6/2.7 hold plain strings (or None) read at import; 2.8 holds objects that read the environment on use
    return paths is None or not isinstance(getattr(paths, "nnUNet_preprocessed", None), (str, type(None)))


def supports_ext_trainer_env() -> bool:
    return nnunet_version()[:2] >= (2, 8)


# -- calls whose keywords changed -----------------------------------------------------------------------------------
def call_with_supported_kwargs(fn: Callable, *args, **kwargs):
    """Call fn, dropping keyword arguments this nnU-Net version's fn does not accept."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def env_flag(name: str) -> bool | None:
    """True/False when the variable is set to a boolean word, None when unset."""
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
