"""Check an nnU-Net raw dataset before planning, and report every problem at once.

nnU-Net's own `verify_dataset_integrity` stops at the first failing assertion and prints the rest; planning a
broken dataset fails somewhere in a worker process. This check reads dataset.json, every label file and every
image header, and raises one `UserError` that lists all problems, so nothing is written for a dataset that
cannot be trained.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from umamba.errors import UserError
from umamba.intake.integrity import integrity_problem

# File endings SimpleITK reads; other formats (png, tif, ...) go through nnU-Net's reader.
_SITK_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gipl", ".gipl.gz")
_MAX_LISTED = 25


@dataclass
class Case:
    identifier: str
    images: list[Path]
    label: Path


@dataclass
class RawDataset:
    folder: Path
    dataset_json: dict
    cases: list[Case] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        return len(channel_names(self.dataset_json))


def channel_names(dataset_json: dict) -> dict:
    return dataset_json.get("channel_names") or dataset_json.get("modality") or {}


def _label_values(labels: dict) -> tuple[list[int], list[str]]:
    """Declared integer label values (regions flattened) and problems with the declaration."""
    values, problems = set(), []
    for name, v in labels.items():
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, bool) or not isinstance(x, int) or x < 0:
                problems.append(f"dataset.json: label {name!r} has value {x!r}; label values must be integers >= 0")
            else:
                values.add(x)
    if 0 not in values:
        problems.append("dataset.json: labels must declare the background as 0 (e.g. \"background\": 0)")
    return sorted(values), problems


def load_raw_dataset(folder: Path) -> tuple[RawDataset | None, list[str]]:
    """Read dataset.json and list the cases; returns the dataset (or None) and the problems found so far."""
    problems: list[str] = []
    json_file = folder / "dataset.json"
    if not json_file.is_file():
        return None, [f"{json_file} is missing"]
    try:
        dataset_json = json.loads(json_file.read_text())
    except ValueError as exc:
        return None, [f"{json_file} is not valid JSON: {exc}"]
    if not isinstance(dataset_json, dict):
        return None, [f"{json_file} must contain a JSON object"]
    missing = [k for k in ("labels", "numTraining", "file_ending") if k not in dataset_json]
    if not channel_names(dataset_json):
        missing.insert(0, "channel_names")
    if missing:
        return None, [f"dataset.json lacks the key(s) {', '.join(missing)}"]
    ending = dataset_json["file_ending"]
    ds = RawDataset(folder, dataset_json)
    n_channels = ds.num_channels

    if "dataset" in dataset_json:  # explicit file lists (nnU-Net's alternative layout)
        for ident, entry in dataset_json["dataset"].items():
            ds.cases.append(Case(ident, [(folder / p).resolve() for p in entry.get("images", [])],
                                 (folder / entry.get("label", "")).resolve()))
    else:
        labels_dir, images_dir = folder / "labelsTr", folder / "imagesTr"
        for d in (images_dir, labels_dir):
            if not d.is_dir():
                problems.append(f"{d} is missing")
        if problems:
            return ds, problems
        for label in sorted(labels_dir.iterdir()):
            if label.name.endswith(ending) and not label.name.startswith("."):
                ident = label.name[: -len(ending)]
                ds.cases.append(Case(ident, [images_dir / f"{ident}_{c:04d}{ending}" for c in range(n_channels)],
                                     label))
        known = {p.name for c in ds.cases for p in c.images}
        pattern = re.compile(r"^(.*)_(\d{4})" + re.escape(ending) + "$")
        for img in sorted(images_dir.iterdir()):
            if img.name.startswith(".") or img.name in known:
                continue
            m = pattern.match(img.name)
            if m and int(m.group(2)) >= n_channels:
                problems.append(f"imagesTr/{img.name}: channel {int(m.group(2))} but dataset.json declares only "
                                f"{n_channels} channel(s)")
            elif m:
                problems.append(f"imagesTr/{img.name}: case {m.group(1)!r} has no label file "
                                f"labelsTr/{m.group(1)}{ending}")
            else:
                problems.append(f"imagesTr/{img.name}: name does not follow CASE_XXXX{ending} "
                                f"(XXXX = 4-digit channel number)")
    if not ds.cases:
        problems.append(f"no training cases found (labelsTr/*{ending})")
    elif dataset_json["numTraining"] != len(ds.cases):
        problems.append(f"dataset.json says numTraining = {dataset_json['numTraining']} but {len(ds.cases)} "
                        f"training case(s) were found")
    return ds, problems


def _read_header(path: Path):
    """(size in numpy order, spacing in numpy order, origin, direction) without reading the voxels."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = tuple(reversed(reader.GetSize()))
    spacing = tuple(reversed(reader.GetSpacing()))
    return size, spacing, np.array(reader.GetOrigin()), np.array(reader.GetDirection()), reader.GetNumberOfComponents()


def _read_label_array(path: Path, dataset_json: dict) -> np.ndarray:
    if str(path).lower().endswith(_SITK_ENDINGS):
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    rw = determine_reader_writer_from_dataset_json(dataset_json, str(path))()
    seg, _ = rw.read_seg(str(path))
    return seg


def _check_geometry(case: Case, ending: str) -> list[str]:
    problems = []
    lab_size, lab_spacing, lab_origin, lab_dir, _ = _read_header(case.label)
    tol_origin = 0.5 * min(lab_spacing)  # half a voxel: anything more misaligns label and image
    for img in case.images:
        size, spacing, origin, direction, components = _read_header(img)
        where = f"case {case.identifier}: {img.name} vs label {case.label.name}"
        if components != 1:
            problems.append(f"case {case.identifier}: {img.name} has {components} components per voxel; "
                            f"store each channel as its own file")
        if size != lab_size:
            problems.append(f"{where}: image size {size} differs from label size {lab_size}")
            continue
        if not np.allclose(spacing, lab_spacing, rtol=1e-4, atol=1e-6):
            problems.append(f"{where}: image spacing {tuple(round(s, 5) for s in spacing)} differs from label "
                            f"spacing {tuple(round(s, 5) for s in lab_spacing)}")
        if origin.shape == lab_origin.shape and np.max(np.abs(origin - lab_origin)) > tol_origin:
            problems.append(f"{where}: image origin {tuple(np.round(origin, 3))} differs from label origin "
                            f"{tuple(np.round(lab_origin, 3))}")
        if direction.shape == lab_dir.shape and not np.allclose(direction, lab_dir, atol=1e-3):
            problems.append(f"{where}: image and label have different orientation (direction matrices differ; "
                            f"when the label holds the same voxels with flipped axes, `umamba import-dataset` "
                            f"resamples it onto the image)")
    return problems


def _check_label_values(case: Case, dataset_json: dict, allowed: set[int]) -> list[str]:
    arr = np.asarray(_read_label_array(case.label, dataset_json))
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            return [f"case {case.identifier}: label file {case.label.name} contains NaN or infinite values"]
        values = np.unique(arr)
        fractional = values[values != np.round(values)]
        if fractional.size:
            return [f"case {case.identifier}: label file {case.label.name} has non-integer values "
                    f"(e.g. {', '.join(f'{v:g}' for v in fractional[:3])}); labels must be whole numbers"]
        values = values.astype(np.int64)
    elif arr.dtype.kind in "iub":
        values = np.unique(arr).astype(np.int64)
    else:
        return [f"case {case.identifier}: label file {case.label.name} has voxel type {arr.dtype}; "
                f"use an integer type"]
    unexpected = [int(v) for v in values if int(v) not in allowed]
    if unexpected:
        return [f"case {case.identifier}: label file {case.label.name} contains value(s) {unexpected[:5]} that "
                f"dataset.json does not declare (declared: {sorted(allowed)})"]
    return []


def validate_raw_dataset(folder: str | Path) -> RawDataset:
    """All problems of the raw dataset in one `UserError`, or the dataset when it can be planned."""
    folder = Path(folder)
    ds, problems = load_raw_dataset(folder)
    if ds is not None:
        allowed, label_problems = _label_values(ds.dataset_json["labels"])
        problems += label_problems
        if allowed and allowed != list(range(len(allowed))):
            problems.append(f"dataset.json: label values must be consecutive 0, 1, 2, ... (found {allowed})")
        ignore = ds.dataset_json["labels"].get("ignore")
        allowed_set = set(allowed) | ({ignore} if isinstance(ignore, int) else set())
        sitk_readable = ds.dataset_json["file_ending"].lower().endswith(_SITK_ENDINGS)
        for case in ds.cases:
            missing = [p for p in case.images if not p.is_file()]
            for p in missing:
                problems.append(f"case {case.identifier}: channel file {p.name} is missing")
            if not case.label.is_file():
                problems.append(f"case {case.identifier}: label file {case.label} is missing")
            if missing or not case.label.is_file():
                continue
            damaged = [(f, integrity_problem(f)) for f in (*case.images, case.label)]
            damaged = [(f, why) for f, why in damaged if why]
            for f, why in damaged:
                problems.append(f"case {case.identifier}: {f.parent.name}/{f.name} {why}")
            if damaged:
                continue
            try:
                if sitk_readable:
                    problems += _check_geometry(case, ds.dataset_json["file_ending"])
                problems += _check_label_values(case, ds.dataset_json, allowed_set)
            except RuntimeError as exc:  # SimpleITK: unreadable or corrupt file
                problems.append(f"case {case.identifier}: cannot read its files ({str(exc).strip().splitlines()[0]})")
    if problems:
        shown = problems[:_MAX_LISTED]
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise UserError(f"the raw dataset {folder} has {len(problems)} problem(s):\n  - " + "\n  - ".join(shown)
                        + more,
                        "fix these files (nothing was planned or written; copy damaged files again); nnU-Net's layout is "
                        "imagesTr/CASE_0000.nii.gz per channel and labelsTr/CASE.nii.gz with whole-number labels "
                        "on the same voxel grid")
    return ds
