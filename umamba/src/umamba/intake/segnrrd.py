"""Slicer segmentation files (`.seg.nrrd`): segment names, layers and label values from the NRRD header.

Slicer writes one `Segment{i}_*` group of header fields per segment. Since Slicer 4.11 segments share "layers":
the voxel array has one component per layer (a 4D NRRD whose first axis has kind `list`), and segment i is the
set of voxels of layer `Segment{i}_Layer` equal to `Segment{i}_LabelValue`. Older files have neither field: one
layer per segment, voxels != 0 inside. Slicer merges layers when it saves, so a file has several layers only
where segments overlap; a label map holds one label per voxel, so intake paints segments in list order (the later
one wins, as in Slicer's "Export to label map") and warns.

Label values are chosen per file by Slicer (the first segment of a layer gets 1, and so on), so the same name can
carry different values in different files. Intake matches segments by *name* and gives each name one value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

SEG_SUFFIX = ".seg.nrrd"


@dataclass(frozen=True)
class Segment:
    index: int     # i in Segment{i}_*
    name: str
    layer: int
    value: int


def segments_of(image: sitk.Image) -> list[Segment] | str:
    """The segments described in a `.seg.nrrd` header, or why the header is not a Slicer segmentation."""
    keys = set(image.GetMetaDataKeys())
    n_layers = image.GetNumberOfComponentsPerPixel()
    segments = []
    i = 0
    while f"Segment{i}_ID" in keys or f"Segment{i}_Name" in keys:
        def field(name, default=None):
            key = f"Segment{i}_{name}"
            return image.GetMetaData(key).strip() if key in keys else default
        name = field("Name") or field("ID")
        try:
            # Files older than Slicer 4.11: one layer per segment, nonzero voxels inside.
            layer = int(field("Layer", i if n_layers > 1 else 0))
            value = int(field("LabelValue", 1))
        except ValueError:
            return f"segment {i} ('{name}') has a malformed Layer or LabelValue field"
        if not 0 <= layer < n_layers:
            return f"segment '{name}' refers to layer {layer}, but the file has {n_layers} layer(s)"
        segments.append(Segment(i, name, layer, value))
        i += 1
    if not segments and not any(k.startswith("Segmentation_") for k in keys):
        return "no Segment fields in the NRRD header: not a Slicer segmentation file"
    return segments


def layer_arrays(image: sitk.Image) -> list[np.ndarray]:
    """One (z, y, x) array per layer."""
    array = sitk.GetArrayViewFromImage(image)
    if image.GetNumberOfComponentsPerPixel() == 1:
        return [array]
    return [array[..., k] for k in range(array.shape[-1])]


def segment_mask(layers: list[np.ndarray], segment: Segment, legacy_nonzero: bool) -> np.ndarray:
    layer = layers[segment.layer]
    return layer != 0 if legacy_nonzero else layer == segment.value


def is_legacy(image: sitk.Image) -> bool:
    """Pre-4.11 files: no LabelValue fields, a segment is every nonzero voxel of its own layer."""
    return "Segment0_LabelValue" not in set(image.GetMetaDataKeys())


def overlapping_segments(layers: list[np.ndarray], segments: list[Segment], legacy: bool) -> list[tuple[str, int]]:
    """Names of segments that share voxels with another segment, with the shared voxel count."""
    if len({s.layer for s in segments}) < 2:
        return []  # one layer cannot hold overlaps
    count = np.zeros(layers[0].shape, np.uint16)
    masks = []
    for s in segments:
        m = segment_mask(layers, s, legacy)
        masks.append(m)
        count += m
    shared = count > 1
    if not shared.any():
        return []
    return [(s.name, int(np.count_nonzero(m & shared))) for s, m in zip(segments, masks) if (m & shared).any()]
