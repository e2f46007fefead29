"""Find nnU-Net datasets by id ("4", "004") or name ("Dataset004_Hippocampus") in a workspace folder."""

from __future__ import annotations

import re
from pathlib import Path

from umamba.errors import UserError

_NAME = re.compile(r"^Dataset(\d{3})_(.+)$")


def parse_dataset_id(dataset: str) -> int | None:
    """The numeric id of `dataset` (an id or a DatasetXXX_Name), None when it is neither."""
    text = str(dataset).strip()
    if text.isdigit():
        return int(text)
    m = _NAME.match(text)
    return int(m.group(1)) if m else None


def list_datasets(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def find_dataset_folder(root: Path, dataset: str, what: str, hint: str) -> Path:
    """The dataset folder in `root` (nnUNet_raw or nnUNet_preprocessed), or a UserError naming what exists."""
    dataset_id = parse_dataset_id(dataset)
    if dataset_id is None:
        raise UserError(f"{dataset!r} is not a dataset id or name",
                        "give a number such as 4 or a name such as Dataset004_Hippocampus")
    if not 1 <= dataset_id <= 999:
        raise UserError(f"dataset id {dataset_id} is out of range", "nnU-Net dataset ids are 1 to 999")
    text = str(dataset).strip()
    candidates = [root / n for n in list_datasets(root) if int(_NAME.match(n).group(1)) == dataset_id]
    if not text.isdigit():
        candidates = [c for c in candidates if c.name == text]
    if len(candidates) == 1:
        return candidates[0]
    available = list_datasets(root)
    if len(candidates) > 1:
        raise UserError(f"several {what} folders have id {dataset_id}: {', '.join(c.name for c in candidates)}",
                        "give the full dataset name instead of the id")
    listing = ", ".join(available[:10]) + (" ..." if len(available) > 10 else "") if available else "none"
    raise UserError(f"dataset {text!r} not found in {what} folder {root} (available: {listing})", hint)
