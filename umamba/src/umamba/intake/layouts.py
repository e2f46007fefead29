"""Which folder layout a source folder uses, and which files make up each case.

Layouts (checked in this order):
- `nnunet`        an nnU-Net raw dataset: `dataset.json`, `imagesTr/CASE_0000.ext`, `labelsTr/CASE.ext`;
- `folders`       `images/` + `labels/` (also `imagesTr`/`labelsTr`, `masks`, `segmentations`) with matching names;
- `side-by-side`  `CASE.ext` next to `CASE_seg.ext` / `CASE_label.ext` / `CASE_mask.ext` / `CASE.seg.nrrd`.
Images may be `.nii`, `.nii.gz`, `.nrrd`, `.mha`; labels also Slicer `.seg.nrrd`. A case with several channels
has one file per channel, told apart by a suffix after the case name: `CASE_0000`, `CASE_0001` or `CASE_t1`,
`CASE_t2`. Pairing problems (an image without its label, ...) are collected, not raised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from umamba.errors import UserError
from umamba.intake.problems import DATASET, Problem
from umamba.intake.segnrrd import SEG_SUFFIX

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")
LABEL_SUFFIXES = ("_segmentation", "_labels", "_label", "_seg", "_mask", "-seg", "-label", "-mask")
# Words that name "the image" rather than a channel: `brain1_image.nrrd` is the single channel of case brain1.
IMAGE_WORDS = ("image", "img", "volume", "vol", "scan")
IMAGE_DIRS = ("images", "imagesTr", "image", "imgs", "volumes")
LABEL_DIRS = ("labels", "labelsTr", "label", "masks", "segmentations", "segs")
LABEL_NAMES_FILE = "labels.json"


@dataclass
class CaseFiles:
    case_id: str
    channels: dict[str, Path] = field(default_factory=dict)   # channel key ("" for a single channel) -> file
    label: Path | None = None


@dataclass
class Detected:
    layout: str
    source: Path
    cases: list[CaseFiles]
    channel_keys: list[str]
    channel_names: list[str]
    label_names: dict[int, str]           # value -> name, from dataset.json or labels.json (may be empty)
    problems: list[Problem]
    ignored: list[str] = field(default_factory=list)
    nnunet_labels: dict | None = None     # dataset.json "labels" of an nnU-Net source (regions kept as given)


DICOM_HINT = ("convert each DICOM series to one NIfTI or NRRD file first: in 3D Slicer load it with the DICOM module "
              "and save the volume as .nrrd, or run `dcm2niix -z y -o OUTPUT_FOLDER DICOM_FOLDER`")


def is_dicom_file(path: Path) -> bool:
    """Ends with .dcm, or has DICOM's 'DICM' marker at byte 128."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder: Path, limit: int = 50) -> list[Path]:
    """DICOM files in `folder` and its subfolders (among the first `limit` files looked at)."""
    files = (p for p in Path(folder).rglob("*") if p.is_file())
    return [p for _, p in zip(range(limit), files) if is_dicom_file(p)]


def split_name(name: str) -> tuple[str, str] | None:
    """`case.seg.nrrd` -> ("case", ".seg.nrrd"); None for files that are not images."""
    low = name.lower()
    for ext in (SEG_SUFFIX,) + IMAGE_EXTENSIONS:
        if low.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def strip_label_suffix(stem: str) -> tuple[str, bool]:
    low = stem.lower()
    for suffix in LABEL_SUFFIXES:
        if low.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], True
    return stem, False


def detect(source: Path) -> Detected:
    source = Path(source).expanduser()
    if not source.is_dir():
        raise UserError(f"{source} is not a folder",
                        "give the folder that holds your images and labels")
    if (source / "dataset.json").is_file() and (source / "imagesTr").is_dir():
        return _detect_nnunet(source)
    image_dir = _first_dir(source, IMAGE_DIRS)
    label_dir = _first_dir(source, LABEL_DIRS)
    if image_dir and label_dir:
        return _detect_pairs(source, "folders", _files(image_dir), _files(label_dir), labels_are_all=True)
    files = _files(source)
    if not any(split_name(p.name) for p in files) and dicom_files(source):
        raise UserError(f"{source} holds DICOM files; import-dataset reads images as NIfTI, NRRD or MHA files",
                        DICOM_HINT + "; then put images and labels side by side (CASE.nii.gz, CASE_seg.nii.gz)")
    if not files:
        raise UserError(f"no images found in {source}",
                        "expected an nnU-Net raw dataset (dataset.json, imagesTr, labelsTr), a folder with images/ "
                        "and labels/ subfolders, or files CASE.nii.gz next to CASE_seg.nii.gz (or CASE.seg.nrrd); "
                        f"image types: {', '.join(IMAGE_EXTENSIONS)}")
    return _detect_pairs(source, "side-by-side", files, files, labels_are_all=False)


def _first_dir(source: Path, names: tuple[str, ...]) -> Path | None:
    by_lower = {p.name.lower(): p for p in source.iterdir() if p.is_dir()}
    for name in names:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    return None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _detect_pairs(source: Path, layout: str, image_files: list[Path], label_files: list[Path],
                  labels_are_all: bool) -> Detected:
    problems: list[Problem] = []
    ignored = []
    labels: dict[str, Path] = {}
    label_paths = set()
    for path in label_files:
        parts = split_name(path.name)
        if parts is None:
            if labels_are_all:
                ignored.append(_rel(source, path))
            continue
        stem, ext = parts
        case_id, had_suffix = strip_label_suffix(stem)
        if not (labels_are_all or had_suffix or ext == SEG_SUFFIX):
            continue
        label_paths.add(path)
        if case_id in labels:
            problems.append(Problem(case_id, f"two label files for one case: {labels[case_id].name} and {path.name}",
                                    _rel(source, path)))
            continue
        labels[case_id] = path
    cases = {cid: CaseFiles(cid, label=p) for cid, p in labels.items()}
    orphans: dict[str, dict[str, Path]] = {}
    for path in image_files:
        if path in label_paths:
            continue
        parts = split_name(path.name)
        if parts is None:
            if path.name != LABEL_NAMES_FILE:
                ignored.append(_rel(source, path))
            continue
        stem, ext = parts
        if ext == SEG_SUFFIX:
            continue
        case_id, key = _match_case(stem, cases)
        target = cases[case_id].channels if case_id in cases else orphans.setdefault(case_id, {})
        if key in target:
            problems.append(Problem(case_id, f"two files for channel '{key or 'image'}': {target[key].name} and "
                                             f"{path.name}", _rel(source, path)))
            continue
        target[key] = path
    for case_id, channels in sorted(orphans.items()):
        names = ", ".join(p.name for p in channels.values())
        problems.append(Problem(case_id, f"image without a label file ({names}); expected "
                                         + ("a file of the same name in the labels folder" if labels_are_all else
                                            f"{case_id}_seg{_ext_of(channels)} or {case_id}{SEG_SUFFIX} next to it"),
                                _rel(source, next(iter(channels.values())))))
    for case in cases.values():
        if not case.channels:
            problems.append(Problem(case.case_id, f"label file {case.label.name} has no image",
                                    _rel(source, case.label)))
    keys = _channel_keys([c for c in cases.values() if c.channels])
    names = [_channel_name(k, i) for i, k in enumerate(keys)]
    label_names, name_problems = _label_names_file(source, layout)
    return Detected(layout, source, sorted(cases.values(), key=lambda c: c.case_id), keys, names, label_names,
                    problems + name_problems, ignored)


def _match_case(stem: str, cases: dict[str, CaseFiles]) -> tuple[str, str]:
    """(case id, channel key) of an image stem: the longest case id the stem starts with."""
    if stem in cases:
        return stem, ""
    best = None
    for cid in cases:
        if len(stem) > len(cid) + 1 and stem.startswith(cid) and stem[len(cid)] in "_-":
            if best is None or len(cid) > len(best):
                best = cid
    if best is None:
        numbered = re.fullmatch(r"(.+)_(\d{4})", stem)  # CASE_0000 without a label: name the case, not the file
        return (numbered.group(1), numbered.group(2)) if numbered else (stem, "")
    key = stem[len(best) + 1:]
    return best, ("" if key.lower() in IMAGE_WORDS else key)


def _channel_keys(cases: list[CaseFiles]) -> list[str]:
    """The channel keys most cases use, in channel order (numbers numerically, names as first seen sorted)."""
    counts: dict[tuple[str, ...], int] = {}
    for c in cases:
        k = tuple(sorted(c.channels))
        counts[k] = counts.get(k, 0) + 1
    if not counts:
        return []
    keys = list(max(counts, key=lambda k: (counts[k], len(k))))
    if all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def _channel_name(key: str, index: int) -> str:
    if key == "":
        return "image"
    if key.isdigit():
        return f"channel{int(key)}"
    return "CT" if key.lower() == "ct" else key


def _ext_of(channels: dict[str, Path]) -> str:
    parts = split_name(next(iter(channels.values())).name)
    return parts[1] if parts else ".nii.gz"


def _rel(source: Path, path: Path) -> str:
    try:
        return str(path.relative_to(source))
    except ValueError:
        return str(path)


def _label_names_file(source: Path, layout: str) -> tuple[dict[int, str], list[Problem]]:
    """Optional `labels.json` beside the files: {"tumor": 1, ...} (nnU-Net style) or {"1": "tumor", ...}."""
    path = source / LABEL_NAMES_FILE
    if not path.is_file():
        return {}, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return {}, [Problem(DATASET, f"{LABEL_NAMES_FILE} is not valid JSON ({exc})", LABEL_NAMES_FILE)]
    names: dict[int, str] = {}
    problems = []
    seen: dict[str, int] = {}
    for key, value in data.items():
        if key.strip().lstrip("-").isdigit() and isinstance(value, str):
            val, name = int(key), value
        elif isinstance(value, int) and not isinstance(value, bool):
            val, name = value, key
        else:
            problems.append(Problem(DATASET, f"{LABEL_NAMES_FILE}: entry {key!r}: {value!r} is neither "
                                             "name -> value nor value -> name", LABEL_NAMES_FILE))
            continue
        if name in seen and seen[name] != val:
            problems.append(Problem(DATASET, f"{LABEL_NAMES_FILE}: label name '{name}' is mapped to two values "
                                             f"({seen[name]} and {val}); each name needs exactly one value",
                                    LABEL_NAMES_FILE))
            continue
        seen[name] = val
        if val != 0:
            names[val] = name
    return names, problems


def _detect_nnunet(source: Path) -> Detected:
    problems: list[Problem] = []
    try:
        meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
        channel_names = meta.get("channel_names") or meta.get("modality")
        labels = meta["labels"]
        if not isinstance(channel_names, dict) or not isinstance(labels, dict):
            raise ValueError("channel_names and labels must be objects")
    except (ValueError, KeyError) as exc:
        raise UserError(f"{source / 'dataset.json'} is not a valid nnU-Net dataset.json ({exc})",
                        "it needs 'channel_names' and 'labels' objects (see nnU-Net's dataset format)") from None
    label_dir = source / "labelsTr"
    detected = _detect_pairs(source, "nnunet", _files(source / "imagesTr"),
                             _files(label_dir) if label_dir.is_dir() else [], labels_are_all=True)
    expected = [f"{int(k):04d}" for k in sorted(channel_names, key=int)]
    for case in detected.cases:
        if case.channels and sorted(case.channels) != expected:
            problems.append(Problem(case.case_id, f"channel files {sorted(case.channels)} do not match dataset.json's "
                                                  f"channels {expected}"))
    names = {}
    for name, value in labels.items():
        if isinstance(value, int) and value != 0:
            names[value] = name
    detected.layout = "nnunet"
    detected.channel_keys = expected
    detected.channel_names = [str(channel_names[k]) for k in sorted(channel_names, key=int)]
    detected.label_names = names
    detected.problems += problems
    detected.nnunet_labels = labels if any(isinstance(v, list) for v in labels.values()) else None
    return detected
