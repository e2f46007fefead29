"""Synthetic phantom datasets in nnU-Net's raw layout: an easy, learnable object on a noisy background.

Used by tests, `umamba demo` and the Slicer tests. Every case is one ellipsoid (label 1) at a random position, with
an optional inner core (label 2), brighter than the background and blurred by Gaussian noise. A small U-Net learns
it in a few hundred iterations, which makes it a fair end-to-end check that training really learns something.

Conventions: `shape` and `spacing` are in numpy order (z, y, x), the order nnU-Net's arrays use.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

# Contrast of the object against the background, per channel (channel c uses _CONTRAST[c % len]).
_CONTRAST = (1.0, -0.8, 0.6, -0.5)
_NOISE_STD = 0.3


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset_id must be 1..999, got {dataset_id}")
    return f"Dataset{int(dataset_id):03d}_{name}"


def phantom_case(shape: Sequence[int], rng: np.random.Generator, n_channels: int = 1,
                 n_labels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One case: images (C, *shape) float32 and its label (*shape) uint8."""
    shape = tuple(int(s) for s in shape)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    # Radii between 20 % and 30 % of each extent (at least 2 voxels), centre far enough from the border.
    radii = [max(2.0, s * rng.uniform(0.2, 0.3)) for s in shape]
    centre = [rng.uniform(r + 1, max(r + 1, s - r - 2)) for s, r in zip(shape, radii)]
    # r2 = sum_i ((x_i - c_i) / r_i)^2 ; inside the ellipsoid where r2 <= 1
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    label = (r2 <= 1.0).astype(np.uint8)
    if n_labels >= 2:
        label[r2 <= 0.3] = 2
    images = np.empty((n_channels, *shape), dtype=np.float32)
    for c in range(n_channels):
        contrast = _CONTRAST[c % len(_CONTRAST)]
        images[c] = contrast * (label > 0) + 0.5 * contrast * (label > 1)
        images[c] += rng.normal(0.0, _NOISE_STD, size=shape).astype(np.float32)
        images[c] = images[c] * 100.0 + 200.0  # an MR-like intensity range
    return images, label


def _write_image(array: np.ndarray, spacing_zyx: Sequence[float], path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in reversed(tuple(spacing_zyx))])  # SimpleITK wants (x, y, z)
    sitk.WriteImage(image, str(path), useCompression=True)


def make_phantom_dataset(raw_dir: str | os.PathLike, dataset_id: int, name: str, n_cases: int,
                         shape: Sequence[int] = (32, 32, 32), n_channels: int = 1, seed: int = 0,
                         n_test: int = 0, spacing: Sequence[float] = (1.0, 1.0, 1.0), n_labels: int = 1,
                         file_ending: str = ".nii.gz", overwrite: bool = False) -> Path:
    """Write `raw_dir/DatasetXXX_name` (imagesTr, labelsTr, dataset.json; imagesTs/labelsTs when n_test > 0).

    The folder is built next to its destination and renamed into place, so it is either complete or absent.
    Returns the dataset folder.
    """
    if n_cases < 1:
        raise ValueError("n_cases must be at least 1")
    if n_channels < 1 or n_labels not in (1, 2):
        raise ValueError("n_channels must be >= 1 and n_labels 1 or 2")
    if len(shape) != len(spacing) or len(shape) not in (2, 3):
        raise ValueError("shape and spacing must both have 2 or 3 entries (numpy order)")
    raw_dir = Path(raw_dir)
    target = raw_dir / dataset_folder_name(dataset_id, name)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    raw_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=raw_dir))
    try:
        for split, count, offset in (("Tr", n_cases, 0), ("Ts", n_test, n_cases)):
            if count == 0:
                continue
            (staging / f"images{split}").mkdir()
            (staging / f"labels{split}").mkdir()
            for i in range(count):
                case = f"phantom_{offset + i:03d}"
                images, label = phantom_case(shape, rng, n_channels, n_labels)
                for c in range(n_channels):
                    _write_image(images[c], spacing, staging / f"images{split}" / f"{case}_{c:04d}{file_ending}")
                _write_image(label, spacing, staging / f"labels{split}" / f"{case}{file_ending}")
        labels = {"background": 0, "object": 1}
        if n_labels == 2:
            labels["core"] = 2
        dataset_json = {
            "channel_names": {str(c): f"phantom{c}" for c in range(n_channels)},
            "labels": labels,
            "numTraining": n_cases,
            "file_ending": file_ending,
            "description": "SYNTHETIC phantom (umamba.synthetic): ellipsoids on Gaussian noise, not real images",
        }
        (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
