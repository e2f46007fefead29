"""What `umamba predict` reads and writes: the list of cases, checked before any work starts.

INPUT may be one image file, the channel files of one case (in channel order), or a folder in nnU-Net layout
(CASE_0000.nii.gz, CASE_0001.nii.gz, ...). OUTPUT is a label file for a single case, else a folder that gets
one CASE<ending> per case. Every problem found here is a `UserError`, raised before anything is written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from umamba.errors import UserError
from umamba.intake.integrity import check_image_file
from umamba.intake.layouts import DICOM_HINT, dicom_files, is_dicom_file

# Longest first, so ".nii.gz" wins over ".gz".
IMAGE_ENDINGS = (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha", ".mhd", ".gipl", ".tif", ".tiff", ".png", ".bmp")


@dataclass
class Case:
    case_id: str
    files: list[Path]  # one per model input channel, in channel order
    output: Path


def image_ending(path: str | os.PathLike) -> str | None:
    name = str(path).lower()
    return next((e for e in IMAGE_ENDINGS if name.endswith(e)), None)


def _strip_ending(path: Path) -> str:
    ending = image_ending(path)
    return path.name[: -len(ending)] if ending else path.stem


def _channel_hint(channels: list[str]) -> str:
    listed = ", ".join(f"{i}: {c}" for i, c in enumerate(channels))
    return (f"the model takes {len(channels)} channel(s) ({listed}); pass one file per channel in this order "
            f"(-i {' '.join(f'CASE_{i:04d}.nii.gz' for i in range(len(channels)))}) or a folder in nnU-Net layout")


def resolve_cases(inputs: list[str], output: str, channels: list[str],
                  supported_endings: list[str] | None = None) -> list[Case]:
    """Turn the INPUT arguments and OUTPUT into cases; checks existence, endings and channel counts.

    `supported_endings`: what the model's image reader handles (None: any image ending; see `check_endings`).
    """
    supported_endings = list(supported_endings or IMAGE_ENDINGS)
    if not inputs:
        raise UserError("no input given", "pass -i IMAGE, -i CHANNEL_FILES..., or -i FOLDER")
    n = len(channels)
    paths = [Path(p).expanduser() for p in inputs]
    if len(paths) == 1 and paths[0].is_dir():
        if not any(image_ending(p) for p in paths[0].iterdir() if p.is_file()) and dicom_files(paths[0]):
            raise UserError(f"{paths[0]} holds a DICOM series; predict reads images as NIfTI, NRRD or MHA files",
                            DICOM_HINT)
        cases = _cases_from_folder(paths[0], channels, supported_endings)
        out = Path(output).expanduser()
        if image_ending(out):
            raise UserError(f"the input is a folder of {len(cases)} case(s) but the output {out} looks like a file",
                            "pass an output folder")
        for c in cases:
            c.output = out / f"{c.case_id}{image_ending(c.files[0])}"
        return cases
    for p in paths:
        if not p.exists():
            raise UserError(f"input file not found: {p}", _channel_hint(channels) if len(paths) > 1 else
                            "check the path")
        if p.is_dir():
            raise UserError(f"{p} is a folder; a folder must be the only input", "pass either files or one folder")
        _check_ending(p, supported_endings)
    if len(paths) != n:
        raise UserError(f"the input has {len(paths)} channel file(s) but the model expects {n}", _channel_hint(channels))
    case_id = re.sub(r"_\d{4}$", "", _strip_ending(paths[0]))
    out = Path(output).expanduser()
    if not image_ending(out):  # a folder
        out = out / f"{case_id}{image_ending(paths[0])}"
    else:
        _check_ending(out, supported_endings, what="output")
    return [Case(case_id, paths, out)]


def check_outputs(cases: list[Case]) -> None:
    """No output may overwrite an input image or another case's output."""
    inputs = {f.resolve() for c in cases for f in c.files}
    outputs = [c.output.resolve() for c in cases]
    for out in outputs:
        if out in inputs:
            raise UserError(f"the output {out} would overwrite an input image", "choose another output path")
    if len(set(outputs)) < len(outputs):
        raise UserError("two cases would be written to the same output file", "pass an output folder")


def check_output_locations(cases: list[Case]) -> None:
    """Every output can be written: its folder exists or can be made (the nearest existing parent is a writable
    folder), checked before the model loads."""
    for folder in sorted({c.output.parent for c in cases}):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UserError(f"the output folder {folder} cannot be made: {existing} is a file",
                            "choose an output path whose folders are folders")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"the output folder {folder} is not writable ({existing} does not allow writing)",
                            "choose an output folder you can write to")


def check_endings(cases: list[Case], supported_endings: list[str]) -> None:
    """Every input and output file has an ending the model's image reader / writer handles."""
    for case in cases:
        for f in case.files:
            _check_ending(f, supported_endings)
        _check_ending(case.output, supported_endings, what="output")


def _check_ending(path: Path, supported_endings: list[str], what: str = "input") -> None:
    ending = image_ending(path)
    if what == "input" and ending is None and path.is_file() and is_dicom_file(path):
        raise UserError(f"{path} is a DICOM file; predict reads a whole image as one NIfTI, NRRD or MHA file",
                        DICOM_HINT)
    if ending is None or not any(str(path).lower().endswith(e.lower()) for e in supported_endings):
        raise UserError(f"{what} {path} is not a file type this model's image reader handles",
                        f"use one of: {', '.join(supported_endings)}")


def _cases_from_folder(folder: Path, channels: list[str], supported_endings: list[str]) -> list[Case]:
    n = len(channels)
    by_case: dict[str, dict[int, Path]] = {}
    unsuffixed: list[Path] = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        ending = image_ending(p)
        if ending is None or not any(p.name.lower().endswith(e.lower()) for e in supported_endings):
            continue
        m = re.match(r"^(.+)_(\d{4})$", p.name[: -len(ending)])
        if m:
            by_case.setdefault(m.group(1), {})[int(m.group(2))] = p
        else:
            unsuffixed.append(p)
    if unsuffixed and n == 1 and not by_case:  # a plain folder of single-channel images
        return [Case(_strip_ending(p), [p], Path()) for p in unsuffixed]
    if not by_case:
        raise UserError(f"{folder} holds no images named CASE_XXXX{supported_endings[0]}",
                        _channel_hint(channels))
    cases = []
    for case_id, found in sorted(by_case.items()):
        extra = sorted(i for i in found if i >= n)
        if extra:
            raise UserError(f"case {case_id} in {folder} has {len(found)} channel files "
                            f"(up to _{max(found):04d}) but the model expects {n}", _channel_hint(channels))
        missing = [i for i in range(n) if i not in found]
        if missing:
            ending = image_ending(next(iter(found.values())))
            raise UserError(f"missing channel file {folder / f'{case_id}_{missing[0]:04d}{ending}'} "
                            f"(channel {missing[0]}: {channels[missing[0]]})", _channel_hint(channels))
        cases.append(Case(case_id, [found[i] for i in range(n)], Path()))
    return cases


def check_case_images(case: Case) -> None:
    """Read the image headers (not the voxels): each channel must be a 2D/3D scalar image of the same size."""
    import SimpleITK as sitk

    sizes = []
    for f in case.files:
        if image_ending(f) in (".png", ".bmp", ".tif", ".tiff"):
            continue  # nnU-Net's natural-image readers: nothing to check cheaply
        check_image_file(f)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise UserError(f"cannot read image {f}: {str(exc).strip().splitlines()[-1]}",
                            "check that the file is a complete medical image (NIfTI, NRRD, MHA, ...)") from None
        dim, comps = reader.GetDimension(), reader.GetNumberOfComponents()
        if dim == 4 or comps > 1:
            k = reader.GetSize()[3] if dim == 4 else comps
            raise UserError(f"{f} holds {k} volumes/components in one file; the model wants one channel per file",
                            "split it into CASE_0000, CASE_0001, ... files, one per channel")
        if dim not in (2, 3):
            raise UserError(f"{f} is a {dim}D image", "pass 2D or 3D images")
        sizes.append(tuple(reader.GetSize()))
    if len(set(sizes)) > 1:
        raise UserError(f"the channel files of case {case.case_id} differ in size ({sizes})",
                        "all channels of a case must be on the same voxel grid; resample them first")
