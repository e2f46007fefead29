"""Optional compiled kernels (mamba-ssm's selective_scan_cuda, causal-conv1d): found with importlib, imported
on first use, and never required."""

from __future__ import annotations

import functools
import importlib
import importlib.util


@functools.cache
def optional_module(name: str):
    """The module `name` when it is installed and imports, else None. Probed once: the answer is asked on every
    forward, and a failed import would search the path again each time."""
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return importlib.import_module(name)       # torch is imported first: the extensions link against it
    except Exception:   # a wheel built for another torch / CUDA / Python fails here: fall back, never crash
        return None
