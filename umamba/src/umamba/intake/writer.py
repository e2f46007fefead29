"""Write an `IntakePlan` as an nnU-Net raw dataset, atomically.

Everything goes into a hidden temporary folder beside the destination (same parent, so the final `rename` is one
atomic step on the same file system); on any failure that folder is removed, so a failed import leaves nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from umamba.errors import UserError
from umamba.intake import segnrrd
from umamba.intake.validate import IntakePlan, PlannedCase
from umamba.intake.volumes import onto_grid
from umamba.nnunet.process_safety import pid_alive

FILE_ENDING = ".nii.gz"
FIRST_ID = 501          # nnU-Net leaves ids below 500 to public datasets
DATASET_DIR = re.compile(r"^Dataset(\d{3})_")
PARTIAL = ".partial"


def used_ids(*roots: Path) -> set[int]:
    ids = set()
    for root in roots:
        if root and Path(root).is_dir():
            for p in Path(root).iterdir():
                m = DATASET_DIR.match(p.name)
                if m and p.is_dir():
                    ids.add(int(m.group(1)))
    return ids


def free_id(*roots: Path, start: int = FIRST_ID) -> int:
    taken = used_ids(*roots)
    for k in list(range(start, 1000)) + list(range(1, start)):
        if k not in taken:
            return k
    raise UserError("every dataset id 1-999 is in use", "remove datasets you no longer need from nnUNet_raw")


def clean_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_")
    return name[:60] or "Imported"


def write_dataset(plan: IntakePlan, raw: Path, name: str, dataset_id: int | None = None,
                  other_roots: tuple[Path, ...] = (), progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Write the dataset into `raw` and return its folder (`raw/DatasetXXX_name`)."""
    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    roots = (raw, *other_roots)
    if dataset_id is None:
        dataset_id = free_id(*roots)
    elif not 1 <= dataset_id <= 999:
        raise UserError(f"dataset id {dataset_id} is out of range", "use a number from 1 to 999")
    elif dataset_id in used_ids(*roots):
        raise UserError(f"dataset id {dataset_id} is already used in {raw} (or its preprocessed/results folders)",
                        f"choose another id (the next free one is {free_id(*roots)}) or leave --id out")
    final = raw / f"Dataset{dataset_id:03d}_{clean_name(name)}"
    _remove_abandoned_partials(raw)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=PARTIAL, dir=raw))
    try:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for i, case in enumerate(plan.cases):
            if progress:
                progress(i, len(plan.cases), case.case_id)
            _write_case(case, tmp)
        if progress:
            progress(len(plan.cases), len(plan.cases), "")
        (tmp / "dataset.json").write_text(json.dumps(_dataset_json(plan, final.name), indent=2), encoding="utf-8")
        if final.exists():  # another import took the id meanwhile
            raise UserError(f"{final} appeared while importing", "run the import again; it picks a free id")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _remove_abandoned_partials(raw: Path) -> None:
    """A killed import (SIGKILL, power loss) cannot clean up after itself; the next import removes what it left,
    once the process that wrote it is gone."""
    for folder in raw.glob(f".Dataset*{PARTIAL}"):
        parts = folder.name.split(".")
        pid = int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None
        if pid is not None and not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _dataset_json(plan: IntakePlan, folder_name: str) -> dict:
    data = {
        "channel_names": {str(i): n for i, n in enumerate(plan.channel_names)},
        "labels": plan.labels,
        "numTraining": len(plan.cases),
        "file_ending": FILE_ENDING,
        "name": folder_name,
        "description": f"imported by 'umamba import-dataset' from {plan.source} ({plan.layout} layout)",
    }
    if plan.regions_class_order:
        data["regions_class_order"] = plan.regions_class_order
    return data


def _write_case(case: PlannedCase, folder: Path) -> None:
    for k, path in enumerate(case.channels):
        out = folder / "imagesTr" / f"{case.case_id}_{k:04d}{FILE_ENDING}"
        if path.name.lower().endswith(FILE_ENDING):
            shutil.copyfile(path, out)
        else:
            sitk.WriteImage(sitk.ReadImage(str(path)), str(out), useCompression=True)
    labels = _label_array(case)
    n_max = int(labels.max()) if labels.size else 0
    image = sitk.GetImageFromArray(labels.astype(np.uint8 if n_max < 256 else np.uint16))
    g = case.geometry
    # The label gets the image's geometry exactly (intake accepted differences within tolerance).
    image.SetSpacing(g.spacing)
    image.SetOrigin(g.origin)
    image.SetDirection(g.direction)
    sitk.WriteImage(image, str(folder / "labelsTr" / f"{case.case_id}{FILE_ENDING}"), useCompression=True)


def _label_array(case: PlannedCase) -> np.ndarray:
    """The case's output label map as a (z, y, x) array of output values."""
    recipe = case.label
    source = sitk.ReadImage(str(recipe.path))
    shape = tuple(reversed(case.geometry.size))
    if recipe.kind == "map":
        array = sitk.GetArrayViewFromImage(source)
        array = np.asarray(np.round(array) if np.issubdtype(array.dtype, np.floating) else array).astype(np.int64)
        if recipe.reorient is not None:
            array = onto_grid(array, *recipe.reorient)
        lut_size = int(array.max()) + 1 if array.size else 1
        lut = np.zeros(max(lut_size, max(recipe.value_map, default=0) + 1), np.int64)
        for src, dst in recipe.value_map.items():
            lut[src] = dst
        return lut[array]
    out = np.zeros(shape, np.uint16)
    layers = segnrrd.layer_arrays(source)
    # offset is (x, y, z) in ITK order; numpy arrays are (z, y, x)
    box = tuple(slice(o, o + n) for o, n in zip(reversed(recipe.offset), layers[0].shape))
    region = out[box]
    for s in recipe.segments:
        region[segnrrd.segment_mask(layers, s, recipe.legacy)] = recipe.value_map[s.index]
    return out
