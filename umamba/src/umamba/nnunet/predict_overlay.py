"""A PNG a person can look at: one slice of the image with ground truth and prediction side by side."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np


def dice(prediction: np.ndarray, truth: np.ndarray, label: int = 1) -> float:
    """Dice = 2 |P ∩ T| / (|P| + |T|) for one label (1.0 when both are empty)."""
    p, t = prediction == label, truth == label
    denominator = int(p.sum()) + int(t.sum())
    return 1.0 if denominator == 0 else 2.0 * int(np.logical_and(p, t).sum()) / denominator


def best_slice(truth: np.ndarray, prediction: np.ndarray) -> int:
    """The axial slice (first numpy axis) where truth and prediction together cover the most voxels."""
    area = (truth > 0).reshape(truth.shape[0], -1).sum(1) + (prediction > 0).reshape(truth.shape[0], -1).sum(1)
    return int(np.argmax(area)) if area.any() else truth.shape[0] // 2


def write_overlay_png(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, spacing_zyx, path: Path,
                      title: str) -> Path:
    """image / truth / prediction: (z, y, x) arrays on one grid. Written atomically (temp file + rename)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    z = best_slice(truth, prediction)
    lo, hi = np.percentile(image, [1, 99])
    aspect = float(spacing_zyx[1]) / float(spacing_zyx[2])  # row spacing / column spacing
    colours = ListedColormap(["none", "#ff3b30", "#34c759", "#007aff", "#ffcc00"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), dpi=100)
    fig.patch.set_facecolor("white")
    axes[0].imshow(image[z], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
    axes[0].set_title(f"image (slice {z})", fontsize=11)
    axes[0].axis("off")
    for ax, labels, name in ((axes[1], truth, "ground truth"), (axes[2], prediction, "U-Mamba prediction")):
        ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        masked = np.ma.masked_where(labels[z] == 0, labels[z])
        ax.imshow(masked, cmap=colours, vmin=0, vmax=4, alpha=0.45, aspect=aspect, interpolation="nearest")
        if (labels[z] > 0).any():
            ax.contour(labels[z] > 0, levels=[0.5], colors="yellow", linewidths=1.0)
        ax.set_title(f"{name} (slice {z})", fontsize=11)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path
