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
from pathlib import Path
from typing import Any

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
    if trust:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    else:
        try:
            with torch.serialization.safe_globals(safe_globals()):
                checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            needed = _unsafe_globals(path)
            what = ", ".join(needed) if needed else str(exc).splitlines()[0]
            raise UserError(
                f"{path} contains pickled objects that are not plain weights ({what}); it was not loaded "
                f"because loading it could run arbitrary code",
                f"only if you trust where this file came from, run again with {TRUST_OPTION}") from None
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})",
                            "the file may be truncated or not a checkpoint; copy or export the model again") \
                from None
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


def first_shape_mismatch(network_shapes: dict, weights: dict, skip: tuple[str, ...] = ()) -> str | None:
    """The first key where a checkpoint's `weights` do not fit a network (`network_shapes`: key -> shape), in words
    with both shapes (never tensor values); None when every key the network needs is there with its shape.

    Keys containing a string of `skip` are not compared (nnU-Net's pretrained loading skips '.seg_layers.').
    Prefixes that DDP ('module.') and torch.compile ('_orig_mod.') add to checkpoint keys are ignored."""
    def plain(key: str) -> str:
        for prefix in ("module.", "_orig_mod."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        return key

    found = {plain(k): tuple(getattr(v, "shape", ())) for k, v in weights.items()}
    for key, shape in network_shapes.items():
        if any(s in key for s in skip):
            continue
        if key not in found:
            return f"the network's key {key} (shape {tuple(shape)}) is missing in the checkpoint"
        if found[key] != tuple(shape):
            return f"key {key} has shape {found[key]} in the checkpoint but {tuple(shape)} in the network"
    return None
