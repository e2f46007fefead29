"""Turn a trainer's state into `umamba.progress` events: epoch_end, checkpoint, per-iteration progress.

The trainer calls these helpers from its nnU-Net hooks; with no reporter attached (stock `nnUNetv2_train` using
our trainer classes) every call is a no-op.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from umamba.nnunet import compat

_ITERATION_EVENT_INTERVAL_S = 1.0


def foreground_label_names(dataset_json: dict) -> list[str]:
    """Names of the foreground labels/regions in the order nnU-Net reports pseudo Dice."""
    items = [(name, v) for name, v in dataset_json.get("labels", {}).items() if name != "ignore"]
    if any(isinstance(v, (list, tuple)) for _, v in items):  # region-based: dataset.json order
        return [name for name, v in items if v not in (0, [0], (0,))]
    return [name for name, v in sorted(items, key=lambda kv: kv[1]) if v != 0]


def _finite_or_none(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


class TrainingEvents:
    """Per-run bookkeeping for events: epoch timing, ETA, rate-limited iteration progress."""

    def __init__(self):
        self.reporter = None
        self._epoch_started = None
        self._epoch_times: list[float] = []
        self._last_iteration_event = 0.0

    def epoch_started(self) -> None:
        self._epoch_started = time.monotonic()

    def iteration_done(self, current: int, total: int, epoch: int) -> None:
        if self.reporter is None:
            return
        now = time.monotonic()
        if current < total and now - self._last_iteration_event < _ITERATION_EVENT_INTERVAL_S:
            return
        self._last_iteration_event = now
        self.reporter.progress("iteration", current, total, epoch=epoch)

    def epoch_finished(self, trainer) -> None:
        """Emit `epoch_end` for trainer.current_epoch (0-based, not yet incremented by nnU-Net)."""
        elapsed = time.monotonic() - self._epoch_started if self._epoch_started is not None else None
        if elapsed is not None:
            self._epoch_times.append(elapsed)
        if self.reporter is None:
            return
        epoch = trainer.current_epoch + 1
        remaining = max(0, trainer.num_epochs - epoch)
        eta = float(np.mean(self._epoch_times[-5:])) * remaining if self._epoch_times else None
        dice = compat.logged_value(trainer.logger, "dice_per_class_or_region") or []
        self.reporter.emit(
            "epoch_end",
            epoch=epoch,
            of=trainer.num_epochs,
            train_loss=_finite_or_none(compat.logged_value(trainer.logger, "train_losses")),
            val_loss=_finite_or_none(compat.logged_value(trainer.logger, "val_losses")),
            pseudo_dice=[_finite_or_none(d) for d in dice],
            labels=foreground_label_names(trainer.dataset_json),
            epoch_time_s=None if elapsed is None else round(elapsed, 3),
            eta_s=None if eta is None else round(eta, 1),
        )

    def checkpoint_saved(self, path: str, epoch: int) -> None:
        if self.reporter is not None:
            self.reporter.emit("checkpoint", path=str(path), epoch=int(epoch), kind=Path(path).stem.split("_")[-1])

    def warning(self, message: str) -> None:
        if self.reporter is not None:
            self.reporter.log(message, level="warning")
