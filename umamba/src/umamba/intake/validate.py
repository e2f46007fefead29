"""Read every case of a detected folder, collect every problem, and decide what the dataset will contain.

Nothing is written here. The result, an `IntakePlan`, says for each case which channel files to copy and how to
turn its label file into an nnU-Net label map with consecutive values (0 = background, 1..N as in `labels`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from umamba.intake import segnrrd
from umamba.intake.layouts import Detected, detect, split_name
from umamba.intake.problems import DATASET, IntakeError, Problem
from umamba.intake.volumes import (Geometry, axes_onto_grid, geometry_difference, integer_values, offset_on_grid,
                                   read_image)

Progress = Callable[[int, int, str], None]


@dataclass
class LabelRecipe:
    """How to build one case's output label map from its source file."""
    path: Path
    kind: str                                   # "map" (a label image) or "seg" (a Slicer .seg.nrrd)
    value_map: dict[int, int] = field(default_factory=dict)        # map: source value -> output value
    segments: list[segnrrd.Segment] = field(default_factory=list)  # seg: segments, with names
    legacy: bool = False                                           # seg: pre-4.11 file (nonzero = inside)
    offset: tuple[int, ...] = ()                                   # seg: first voxel (x, y, z) in the image grid
    reorient: tuple | None = None                                  # map: (perm, flip) onto the image's axes
    warnings: list[str] = field(default_factory=list)


@dataclass
class PlannedCase:
    case_id: str                 # identifier in the written dataset (file-name safe)
    source_id: str
    channels: list[Path]         # in channel order
    geometry: Geometry           # of the first channel; every output file gets exactly this geometry
    label: LabelRecipe


@dataclass
class IntakePlan:
    source: Path
    layout: str
    channel_names: list[str]
    labels: dict[str, int | list[int]]         # name -> value, background first (nnU-Net's dataset.json order)
    cases: list[PlannedCase]
    segment_values: dict[str, int] = field(default_factory=dict)  # seg: name -> output value
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    regions_class_order: list[int] | None = None

    def summary(self) -> dict:
        return {"source": str(self.source), "layout": self.layout, "cases": len(self.cases),
                "case_ids": [c.case_id for c in self.cases], "channels": self.channel_names,
                "labels": {k: v for k, v in self.labels.items() if k != "background"},
                "warnings": self.warnings, "ignored_files": self.ignored}


def inspect_source(source: Path | str, channel_names: list[str] | None = None,
                   progress: Progress | None = None) -> IntakePlan:
    """Detect the layout, read every file and return the plan; raise `IntakeError` listing every problem."""
    detected = detect(Path(source))
    problems = list(detected.problems)
    if channel_names:
        if len(channel_names) != len(detected.channel_keys):
            problems.append(Problem(DATASET, f"--channel-names gives {len(channel_names)} name(s) but the cases have "
                                             f"{len(detected.channel_keys)} channel(s)"))
        else:
            detected.channel_names = list(channel_names)
    complete = [c for c in detected.cases if c.channels and c.label is not None]
    checked: list[tuple[PlannedCase, object]] = []   # (case, label facts: values array or segment list)
    for i, case in enumerate(complete):
        if progress:
            progress(i, len(complete), case.case_id)
        planned, facts, case_problems = _check_case(detected, case)
        problems += case_problems
        if planned is not None:
            checked.append((planned, facts))
    if progress:
        progress(len(complete), len(complete), "")
    plan = IntakePlan(detected.source, detected.layout, detected.channel_names, {}, [c for c, _ in checked],
                      ignored=detected.ignored)
    problems += _assign_labels(plan, detected, checked)
    problems += _dataset_problems(plan, detected, complete)
    if problems:
        raise IntakeError(problems)
    _assign_case_ids(plan)
    return plan


def _rel(detected: Detected, path: Path) -> str:
    try:
        return str(path.relative_to(detected.source))
    except ValueError:
        return str(path)


def _check_case(detected: Detected, case) -> tuple[PlannedCase | None, object, list[Problem]]:
    problems: list[Problem] = []
    cid = case.case_id
    keys = detected.channel_keys
    missing = [k for k in keys if k not in case.channels]
    extra = [k for k in case.channels if k not in keys]
    if missing or extra:
        have = ", ".join(sorted(p.name for p in case.channels.values()))
        want = ", ".join(k or "image" for k in keys)
        problems.append(Problem(cid, f"has {len(case.channels)} channel file(s) ({have}) but the other cases have "
                                     f"{len(keys)} ({want})" + (f"; missing: {', '.join(missing)}" if missing else "")))
    geometry = None
    for key in keys:
        path = case.channels.get(key)
        if path is None:
            continue
        image = read_image(path)
        if isinstance(image, str):
            problems.append(Problem(cid, image, _rel(detected, path)))
            continue
        g = Geometry.of(image)
        del image
        if g.components > 1:
            problems.append(Problem(cid, f"image has {g.components} values per voxel (colour or vector image); "
                                         "save each channel as its own file", _rel(detected, path)))
        elif g.dim not in (2, 3):
            problems.append(Problem(cid, f"image is {g.dim}D; expected 2D or 3D (save a 4D series as one file per "
                                         "channel)", _rel(detected, path)))
        elif geometry is None:
            geometry = g
        else:
            diff = geometry_difference(geometry, g)
            if diff:
                problems.append(Problem(cid, f"channel geometry differs from the first channel: {diff}",
                                        _rel(detected, path)))
    label_path = case.label
    if split_name(label_path.name)[1] == segnrrd.SEG_SUFFIX:
        recipe, facts, label_problems = _check_seg(detected, cid, label_path, geometry)
    else:
        recipe, facts, label_problems = _check_map(detected, cid, label_path, geometry)
    problems += label_problems
    if problems or geometry is None:
        return None, None, problems
    return PlannedCase(cid, cid, [case.channels[k] for k in keys], geometry, recipe), facts, problems


def _check_map(detected, cid, path, geometry):
    rel = _rel(detected, path)
    image = read_image(path)
    if isinstance(image, str):
        return None, None, [Problem(cid, image, rel)]
    g = Geometry.of(image)
    if g.components > 1:
        return None, None, [Problem(cid, f"label file has {g.components} values per voxel; expected one label "
                                         "map (or a Slicer .seg.nrrd)", rel)]
    problems = []
    recipe = LabelRecipe(path, "map")
    if geometry is not None:
        diff = geometry_difference(geometry, g)
        axes = axes_onto_grid(geometry, g) if diff else None
        if axes is not None:
            # the same voxels with flipped or permuted axes (a DICOM-derived image vs a NIfTI label, say)
            recipe.reorient = axes
            recipe.warnings.append(f"{cid}: the label's axes are flipped or permuted relative to the image "
                                   f"({rel}); it is resampled onto the image's grid (nearest neighbour, exact)")
        elif diff:
            problems.append(Problem(cid, f"label geometry differs from the image: {diff}", rel))
    import SimpleITK as sitk
    values = integer_values(sitk.GetArrayViewFromImage(image))
    if isinstance(values, str):
        problems.append(Problem(cid, values, rel))
        values = None
    return recipe, values, problems


def _check_seg(detected, cid, path, geometry):
    rel = _rel(detected, path)
    image = read_image(path)
    if isinstance(image, str):
        return None, None, [Problem(cid, image, rel)]
    segments = segnrrd.segments_of(image)
    if isinstance(segments, str):
        return None, None, [Problem(cid, segments, rel)]
    problems = []
    by_name: dict[str, segnrrd.Segment] = {}
    for s in segments:
        if s.name.strip().lower() == "background":
            problems.append(Problem(cid, "a segment is named 'background', which nnU-Net reserves for label 0; "
                                         "rename or delete it in Slicer's Segment Editor", rel))
        other = by_name.get(s.name)
        if other is not None:
            problems.append(Problem(cid, f"label name '{s.name}' is mapped to two values (segments {other.index} and "
                                         f"{s.index}: layer {other.layer} value {other.value} and layer {s.layer} "
                                         f"value {s.value}); give each segment its own name", rel))
        by_name.setdefault(s.name, s)
    offset: tuple[int, ...] = ()
    if geometry is not None:
        found = offset_on_grid(geometry, Geometry.of(image))
        if isinstance(found, str):
            problems.append(Problem(cid, f"segmentation does not fit the image's voxel grid: {found}; in Slicer, "
                                         "set the segmentation's geometry from the image (Segment Editor) and save "
                                         "again", rel))
        else:
            offset = found
    legacy = segnrrd.is_legacy(image)
    overlaps = segnrrd.overlapping_segments(segnrrd.layer_arrays(image), segments, legacy)
    warnings = []
    if overlaps:
        # Slicer keeps overlapping segments in separate layers; a label map holds one label per voxel. Like
        # Slicer's "Export to label map", the segment later in the list wins where they overlap.
        shown = ", ".join(f"'{n}' ({k} voxels)" for n, k in overlaps)
        warnings.append(f"{cid}: segments overlap: {shown}; where they do, the segment later in the list is used")
    recipe = LabelRecipe(path, "seg", segments=segments, legacy=legacy, offset=offset, warnings=warnings)
    return recipe, segments, problems


def _assign_labels(plan: IntakePlan, detected: Detected, checked) -> list[Problem]:
    """Choose one output value per label name, the same in every case."""
    problems: list[Problem] = []
    kinds = {c.label.kind for c, _ in checked}
    if kinds == {"seg", "map"}:
        segs = sorted(c.source_id for c, _ in checked if c.label.kind == "seg")
        return [Problem(DATASET, f"some labels are Slicer segmentations ({', '.join(segs[:5])}) and others plain "
                                 "label maps; use one kind for all cases so label names and values agree")]
    if kinds == {"seg"}:
        # Names in order of first appearance; Slicer's per-file label values are ignored.
        values: dict[str, int] = {}
        for _, segments in checked:
            for s in segments:
                values.setdefault(s.name, len(values) + 1)
        for case, _ in checked:
            case.label.value_map = {s.index: values[s.name] for s in case.label.segments}
        plan.segment_values = values
        plan.labels = {"background": 0, **values}
        return problems
    found = sorted({int(v) for _, vals in checked if vals is not None for v in vals if v != 0})
    if detected.nnunet_labels is not None:   # region-based nnU-Net dataset: keep its labels as they are
        allowed = {v for vs in detected.nnunet_labels.values() for v in (vs if isinstance(vs, list) else [vs])}
        mapping = {v: v for v in allowed}
        plan.labels = dict(detected.nnunet_labels)
        meta = json.loads((detected.source / "dataset.json").read_text(encoding="utf-8"))
        plan.regions_class_order = meta.get("regions_class_order")
    else:
        source_values = sorted(set(found) | set(detected.label_names))
        mapping = {0: 0, **{v: i + 1 for i, v in enumerate(source_values)}}
        plan.labels = {"background": 0, **{detected.label_names.get(v, f"label_{v}"): mapping[v]
                                           for v in source_values}}
        if len(plan.labels) != len(source_values) + 1:
            problems.append(Problem(DATASET, "two label values share one name in the label names; give each value "
                                             "its own name"))
    for case, vals in checked:
        case.label.value_map = mapping
        if detected.layout == "nnunet" and vals is not None:
            unknown = [int(v) for v in vals if int(v) not in set(detected.label_names) | {0}]
            if unknown and detected.nnunet_labels is None:
                problems.append(Problem(case.source_id, f"label values {unknown} are not in dataset.json's labels",
                                        _rel(detected, case.label.path)))
    return problems


def _dataset_problems(plan: IntakePlan, detected: Detected, complete) -> list[Problem]:
    problems = []
    n = len(complete)
    if n < 2:
        problems.append(Problem(DATASET, f"found {n} case{'s' if n != 1 else ''} with both image and label; "
                                         "training needs at least 2 (nnU-Net splits cases into train and validation)"))
    dims = {c.geometry.dim for c in plan.cases}
    if len(dims) > 1:
        problems.append(Problem(DATASET, "cases mix 2D and 3D images; use one kind"))
    if plan.cases and len(plan.labels) <= 1:
        problems.append(Problem(DATASET, "no foreground label in any case (every label map is empty)"))
    for case in plan.cases:
        plan.warnings += case.label.warnings
    empty = [c.source_id for c in plan.cases if c.label.kind == "seg" and not c.label.segments]
    if empty:
        plan.warnings.append(f"{len(empty)} case(s) have no segments: {', '.join(empty[:5])}")
    return problems


def _assign_case_ids(plan: IntakePlan) -> None:
    used: set[str] = set()
    for case in plan.cases:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", case.source_id).strip("._") or "case"
        cid, k = base, 1
        while cid in used:
            k += 1
            cid = f"{base}_{k}"
        used.add(cid)
        case.case_id = cid
