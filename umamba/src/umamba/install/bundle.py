"""The umamba package a Slicer extension carries: a hash of its content, so the installer can tell whether the
installed umamba is that content (every build says version 0.1.0), and whether umamba modules already loaded in
Slicer's process are stale after an install (then, and only then, Slicer must restart).

Torch-free and import-free: the installed package is located with importlib.util.find_spec, never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

HASH_FILE = "source_hash.json"   # written into the copy that is installed (package data: *.json)
_SUFFIXES = (".py", ".json")


def source_hash(package_dir: str | os.PathLike) -> str:
    """sha256 over the relative paths and bytes of the package's .py and .json files (not HASH_FILE, caches)."""
    root = Path(package_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in _SUFFIXES and p.is_file()
                       and p.name != HASH_FILE and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def bundled_hash(bundle: str | os.PathLike) -> str:
    """The hash of a carried package folder (pyproject.toml + src/umamba)."""
    return source_hash(Path(bundle) / "src" / "umamba")


def stamp(bundle_copy: str | os.PathLike) -> str:
    """Write the hash into a copy of the carried package before it is installed; returns the hash."""
    package = Path(bundle_copy) / "src" / "umamba"
    value = source_hash(package)
    (package / HASH_FILE).write_text(json.dumps({"sha256": value}))
    return value


def _package_dir() -> Path | None:
    loaded = sys.modules.get("umamba")
    if loaded is not None and getattr(loaded, "__path__", None):
        return Path(list(loaded.__path__)[0])
    spec = importlib.util.find_spec("umamba")
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def installed_hash() -> str | None:
    """The hash recorded in the installed umamba (None: not installed, or not installed from a carried package)."""
    folder = _package_dir()
    try:
        return json.loads((folder / HASH_FILE).read_text())["sha256"] if folder else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def installed_state(bundle: str | os.PathLike) -> str:
    """"missing" (no umamba installed), "same" (installed from this content, or this very checkout: developer
    mode) or "differs" (another build, or one installed without the hash)."""
    folder = _package_dir()
    if folder is None:
        return "missing"
    carried = Path(bundle) / "src" / "umamba"
    if folder.resolve() == carried.resolve():
        return "same"
    return "same" if installed_hash() == bundled_hash(bundle) else "differs"


def loaded_hash(modules=None) -> str | None:
    """The content hash of the umamba package loaded in this process (None: not loaded). Taken before an install:
    afterwards the files on disk are the new ones, the modules in memory still the old."""
    modules = sys.modules if modules is None else modules
    loaded = modules.get("umamba")
    if loaded is None or not getattr(loaded, "__path__", None):
        return None
    return source_hash(list(loaded.__path__)[0])
