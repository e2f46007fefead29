"""Loading nnU-Net checkpoints without executing pickled code.

A checkpoint written by an nnU-Net trainer is a pickled dict:
    network_weights (tensors), optimizer_state, grad_scaler_state, logging (lists of floats, many of them numpy
    scalars), _best_ema (numpy float), current_epoch, init_args (plans / dataset.json dicts, configuration, fold,
    device: torch.device), trainer_name (str), inference_allowed_mirroring_axes (tuple of int).
`torch.load(weights_only=True)` accepts tensors, containers, primitive types and torch.device by itself; the only
other things such a file holds are numpy scalars / dtypes (and, in some versions, small numpy arrays). Those are
the allow-list below, under both the numpy 2 module names and the numpy 1 names that old checkpoints (including
the original U-Mamba's) were written with. Anything else is refused with a message that names what the file
needs; `trust=True` (the `--trust-checkpoint` option) is the explicit opt-in for files whose origin is trusted.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from umamba.errors import UserError

TRUST_OPTION = "--trust-checkpoint"


def _numpy_allow_list() -> list:
    """(object, pickled name) pairs for the numpy types nnU-Net checkpoints contain."""
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    entries = []
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        entries.append((multiarray.scalar, f"{module}.scalar"))
        entries.append((multiarray._reconstruct, f"{module}._reconstruct"))
    entries.append((np.ndarray, "numpy.ndarray"))
    entries.append((np.dtype, "numpy.dtype"))
    # numpy >= 1.25 may pickle a dtype through its class (numpy.dtypes.Float64DType, ...): numeric ones only.
    for code in "?bBhHiIlLqQefdg":
        cls = type(np.dtype(code))
        if cls is not np.dtype:
            entries.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return entries


def safe_globals() -> list:
    """The allow-list used by `load_checkpoint` (exposed for tests and for `umamba doctor`)."""
    return _numpy_allow_list()


def load_checkpoint(path: str | os.PathLike, trust: bool = False, map_location: Any = "cpu") -> dict:
    """Load an nnU-Net checkpoint dict. Without `trust` no pickled code runs: unknown types raise `UserError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}",
                        "check the model folder: each fold_X/ folder should hold checkpoint_final.pth")
    try:
        if trust:
            checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        else:
            with torch.serialization.safe_globals(safe_globals()):
                checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch's unpickler fails in many ways on bytes that are not a checkpoint
        text = str(exc).splitlines()[0] if str(exc) else "no detail"
        # torch names what the restricted unpickler met: "Unsupported global: GLOBAL builtins.open ..." is code a
        # trusted load would run; anything else ("Unsupported operand", ...) means the bytes are no checkpoint.
        wanted = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if not trust and isinstance(exc, pickle.UnpicklingError) and wanted:
            needed = _unsafe_globals(path) or [wanted.group(1)]
            raise UserError(
                f"{path} contains pickled objects that are not plain weights ({', '.join(needed)}); it "
                f"was not loaded because loading it could run arbitrary code",
                f"only if you trust where this file came from, run again with {TRUST_OPTION}") from None
        reason = re.search(r"WeightsUnpickler error: ([^\n]+)", str(exc))
        text = reason.group(1) if reason else text
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {text})",
                        "the file may be truncated or not a checkpoint; copy or export the model again") from None
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise UserError(f"{path} is not an nnU-Net checkpoint (no 'network_weights' entry)",
                        "pass a checkpoint written by an nnU-Net trainer (checkpoint_final.pth / checkpoint_best.pth)")
    return checkpoint


def _unsafe_globals(path: Path) -> list[str]:
    """Names of the pickled globals outside torch's and our allow-list (best effort, for the message)."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the file is unreadable in another way: the caller's message suffices
        return []
    allowed = {name for _obj, name in safe_globals()}
    return [n for n in names if n not in allowed]


# -- comparing a checkpoint's weights with a network ----------------------------------------------------------------
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
SEG_HEAD_MARK = ".seg_layers."                # nnU-Net's segmentation heads: not transferred by pretrained weights


def strip_wrappers(key: str) -> str:
    """A state-dict key without the prefixes DDP and torch.compile add (nnU-Net saves without them, others may not)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def _shape(value: Any) -> tuple | None:
    if isinstance(value, (tuple, list)):  # a shape given as such (torch.Size is a tuple)
        return tuple(value)
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else None


@dataclass
class WeightsComparison:
    """How a checkpoint's weights (`given`) fit a network's state dict (`expected`), by key and shape only."""

    missing: list[str] = field(default_factory=list)       # in the network, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)    # in the checkpoint, not in the network
    mis_shaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint shape, network shape)
    skipped: list[str] = field(default_factory=list)       # keys left out on purpose (see `compare_weights`)
    missing_shapes: dict = field(default_factory=dict)     # network shape of each missing key

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def first_mismatch(self) -> str:
        """One sentence naming the first key that does not fit (shapes, never tensor values); '' when all fit."""
        if self.mis_shaped:
            key, given, expected = self.mis_shaped[0]
            return f"key {key} has shape {given} in the checkpoint but {expected} in the network"
        if self.missing:
            key, shape = self.missing[0], self.missing_shapes.get(self.missing[0])
            return f"the network's key {key} (shape {shape}) is missing in the checkpoint"
        if self.unexpected:
            return f"key {self.unexpected[0]} is in the checkpoint but not in the network"
        return ""

    def counts(self) -> str:
        """How many keys do not fit, by kind ("61 with another shape, 2 missing")."""
        kinds = (("with another shape", self.mis_shaped), ("missing", self.missing), ("unexpected", self.unexpected))
        return ", ".join(f"{len(keys)} {label}" for label, keys in kinds if keys)

    def summary(self, shown: int = 5) -> str:
        parts = []
        mis = [f"{k} {g} vs {e}" for k, g, e in self.mis_shaped]  # checkpoint vs network
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("with another shape", mis)):
            if keys:
                more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:shown])}{more}")
        return "; ".join(parts)


def compare_weights(expected: Mapping[str, Any], given: Mapping[str, Any],
                    skip: Callable[[str], bool] | None = None) -> WeightsComparison:
    """Compare key names and shapes of two state dicts (values may be tensors or anything with `.shape`).

    Wrapper prefixes (`module.`, `_orig_mod.`) are ignored on both sides; keys for which `skip(key)` is true are
    left out of the comparison and listed in `skipped` (those of the network that the checkpoint also has)."""
    own = {strip_wrappers(k): v for k, v in expected.items()}
    theirs = {strip_wrappers(k): v for k, v in given.items()}
    result = WeightsComparison()
    for key, value in own.items():
        if skip is not None and skip(key):
            result.skipped.append(key)
        elif key not in theirs:
            result.missing.append(key)
            result.missing_shapes[key] = _shape(value)
        elif _shape(theirs[key]) != _shape(value):
            result.mis_shaped.append((key, _shape(theirs[key]), _shape(value)))
    result.unexpected = [k for k in theirs if k not in own and not (skip is not None and skip(k))]
    return result


def is_segmentation_head(key: str) -> bool:
    return SEG_HEAD_MARK in f".{key}"


def load_pretrained_weights(network, checkpoint: Mapping[str, Any], source: str | os.PathLike) -> list[str]:
    """nnU-Net's pretrained-weights rule, without its unsafe `torch.load`, into `network` (the bare module, not a
    DDP or torch.compile wrapper): every weight except the segmentation heads (`.seg_layers.`) must be in the
    checkpoint with the same shape and is copied; the heads keep their fresh initialisation (the number of classes
    may differ). Returns the keys left untouched."""
    weights = checkpoint["network_weights"] if "network_weights" in checkpoint else checkpoint
    own = network.state_dict()
    comparison = compare_weights(own, weights, skip=is_segmentation_head)
    if comparison.missing or comparison.mis_shaped:
        raise UserError(
            f"the pretrained checkpoint {source} does not fit this network: {comparison.first_mismatch()} "
            f"({comparison.counts()} in all)",
            "pretrain with the same plans (nnUNetv2_move_plans_between_datasets / the same configuration and "
            "trainer variant); only the segmentation heads may differ")
    given = {strip_wrappers(k): v for k, v in weights.items()}
    own.update({k: given[k] for k in own if not is_segmentation_head(k)})
    network.load_state_dict(own)
    return comparison.skipped


def first_shape_mismatch(network_shapes: Mapping[str, Any], weights: Mapping[str, Any],
                         skip: tuple[str, ...] = ()) -> str | None:
    """The first key where a checkpoint's `weights` do not fit a network (`network_shapes`: key -> shape or
    tensor), in words with both shapes (never tensor values); None when every key the network needs is there with
    its shape (keys the checkpoint has beyond those are not counted). Keys containing a string of `skip` are not
    compared (nnU-Net's pretrained loading skips '.seg_layers.')."""
    comparison = compare_weights(network_shapes, weights, skip=lambda key: any(s in key for s in skip))
    comparison.unexpected = []
    return comparison.first_mismatch() or None
