"""Reading images and label maps with SimpleITK, and comparing their geometry.

Every reader returns either a value or a `Problem`; nothing here raises on bad files, so intake can list them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from umamba.intake.integrity import integrity_problem

# Geometry tolerances: spacing relative, origin in voxels of the smallest spacing, direction cosines absolute.
SPACING_RTOL = 1e-3
ORIGIN_VOXELS = 1e-2
DIRECTION_ATOL = 1e-3


@dataclass(frozen=True)
class Geometry:
    size: tuple[int, ...]          # x, y, z (ITK order)
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]   # row-major dim x dim
    components: int = 1

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()), image.GetNumberOfComponentsPerPixel())

    @property
    def dim(self) -> int:
        return len(self.size)


def read_image(path: Path) -> sitk.Image | str:
    """The image, or a one-line reason why it cannot be read (a truncated or corrupt file is refused: ITK would
    read it with the missing voxels set to zero)."""
    problem = integrity_problem(path)
    if problem:
        return f"the file {problem}; copy or export it again"
    try:
        return sitk.ReadImage(str(path))
    except Exception as exc:  # SimpleITK raises RuntimeError with a multi-line ITK message
        return _first_line(exc)


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    # ITK messages start with a source file and line; the useful part follows "Description:" (or "ERROR:")
    for marker in ("Description:", "ERROR:"):
        if marker in text:
            text = text.split(marker, 1)[1].strip()
    return "not a readable image (" + (text[:160] or type(exc).__name__) + ")"


def geometry_difference(a: Geometry, b: Geometry) -> str | None:
    """None when `b` lies on `a`'s voxel grid within tolerance, else what differs."""
    if a.dim != b.dim:
        return f"{a.dim}D vs {b.dim}D"
    if a.size != b.size:
        return f"size {'x'.join(map(str, a.size))} vs {'x'.join(map(str, b.size))}"
    sa, sb = np.array(a.spacing), np.array(b.spacing)
    if np.any(np.abs(sa - sb) > SPACING_RTOL * np.maximum(np.abs(sa), np.abs(sb))):
        return f"spacing {_vec(sa)} vs {_vec(sb)}"
    if np.any(np.abs(np.array(a.direction) - np.array(b.direction)) > DIRECTION_ATOL):
        return "orientation (direction cosines) differ"
    oa, ob = np.array(a.origin), np.array(b.origin)
    if np.any(np.abs(oa - ob) > ORIGIN_VOXELS * sa.min()):
        return f"origin {_vec(oa)} vs {_vec(ob)}"
    return None


def axes_onto_grid(grid: Geometry, other: Geometry) -> tuple[tuple[int, ...], tuple[bool, ...]] | None:
    """How `other`'s voxels lie on `grid`'s when they are the same voxels stored with flipped or permuted axes.

    Returns (perm, flip) with grid axis a = other's axis perm[a], reversed where flip[a] (ITK axis order), or None
    when the two grids do not cover the same voxels that way. Index maps: grid index j = A i + b with
    A = S_g^-1 D_g^T D_o S_o and b = S_g^-1 D_g^T (o_o - o_g); A must be a signed permutation and b put index 0
    of a reversed axis on the grid's last voxel.
    """
    if grid.dim != other.dim:
        return None
    n = grid.dim
    dg, do = (np.array(g.direction).reshape(n, n) for g in (grid, other))
    sg, so = np.array(grid.spacing), np.array(other.spacing)
    a = np.diag(1 / sg) @ dg.T @ do @ np.diag(so)
    b = np.diag(1 / sg) @ dg.T @ (np.array(other.origin) - np.array(grid.origin))
    rounded = np.round(a)
    if np.any(np.abs(a - rounded) > SPACING_RTOL * 10) or not np.array_equal(np.abs(rounded).sum(0), np.ones(n)) \
            or not np.array_equal(np.abs(rounded).sum(1), np.ones(n)):
        return None
    perm = tuple(int(np.flatnonzero(rounded[i])[0]) for i in range(n))
    flip = tuple(bool(rounded[i, perm[i]] < 0) for i in range(n))
    for i in range(n):
        start = grid.size[i] - 1 if flip[i] else 0
        if other.size[perm[i]] != grid.size[i] or abs(b[i] - start) > ORIGIN_VOXELS * 10:
            return None
    return perm, flip


def onto_grid(array: np.ndarray, perm: tuple[int, ...], flip: tuple[bool, ...]) -> np.ndarray:
    """A (z, y, x) array of the other grid, rearranged onto the grid of `axes_onto_grid` (exact: no interpolation)."""
    itk = array.T.transpose(perm)   # ITK order (x, y, z): grid axis a <- other axis perm[a]
    itk = np.flip(itk, [a for a, f in enumerate(flip) if f]) if any(flip) else itk
    return np.ascontiguousarray(itk.T)


def offset_on_grid(grid: Geometry, box: Geometry) -> tuple[int, ...] | str:
    """Index (x, y, z) of `box`'s first voxel inside `grid`, when `box` is a sub-block of the same voxel grid.

    Slicer stores segmentations cropped to the extent that holds segments, so a `.seg.nrrd` is usually a
    sub-block of its image's grid. Returns a reason string when it is not.
    """
    if grid.dim != box.dim:
        return f"{grid.dim}D image vs {box.dim}D segmentation"
    sg, sb = np.array(grid.spacing), np.array(box.spacing)
    if np.any(np.abs(sg - sb) > SPACING_RTOL * np.maximum(sg, sb)):
        return f"spacing {_vec(sg)} vs {_vec(sb)}"
    d = np.array(grid.direction).reshape(grid.dim, grid.dim)
    if np.any(np.abs(d - np.array(box.direction).reshape(grid.dim, grid.dim)) > DIRECTION_ATOL):
        return "orientation (direction cosines) differ"
    # physical = origin + D @ (spacing * index)  =>  index = (D^T (o_box - o_grid)) / spacing
    idx = d.T @ (np.array(box.origin) - np.array(grid.origin)) / sg
    rounded = np.round(idx)
    if np.any(np.abs(idx - rounded) > ORIGIN_VOXELS * 10):
        return f"origin {_vec(np.array(box.origin))} is not on the image's voxel grid (origin {_vec(np.array(grid.origin))})"
    start = rounded.astype(int)
    end = start + np.array(box.size)
    if np.any(start < 0) or np.any(end > np.array(grid.size)):
        return (f"segmentation extent (voxels {tuple(start)}..{tuple(end - 1)}) reaches outside the image "
                f"({'x'.join(map(str, grid.size))})")
    return tuple(int(v) for v in start)


def _vec(v) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


def integer_values(array: np.ndarray) -> np.ndarray | str:
    """The sorted distinct values of a label array, or why they are not usable class numbers."""
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            return "label map contains NaN or infinite values"
        frac = array[array != np.round(array)]
        if frac.size:
            shown = ", ".join(f"{v:g}" for v in np.unique(frac)[:3])
            return (f"label map has non-integer values ({shown}, ...): labels must be whole class numbers; "
                    "was it resampled with linear interpolation? Save it as an integer label map")
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        return f"label map has pixel type {array.dtype}, expected integers"
    if array.dtype in (np.uint8, np.uint16, bool):
        # Counting is linear in the voxels; np.unique sorts them (seconds for a large CT label map).
        return np.flatnonzero(np.bincount(np.asarray(array).ravel().astype(np.intp, copy=False))).astype(np.int64)
    values = np.unique(array)
    if values.size and values[0] < 0:
        return f"label map has negative values ({values[0]}): labels must be 0 (background) or positive"
    return values.astype(np.int64)
