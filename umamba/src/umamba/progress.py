"""The one progress-event format of the `umamba` command line.

With `--progress-json` every long command writes one JSON object per line on stdout, and nothing else goes to
stdout: whatever nnU-Net, torch or worker processes print is sent to stderr (file descriptor 1 is pointed at 2,
so C-level output and child processes follow). Every object has `"event"` and `"time"` (Unix seconds).

Events (fields beyond `event`/`time`):
- `stage`      stage (short name: "plan", "preprocess", "train", "predict", ...), message
- `progress`   what ("case", "tile", "iteration", ...), current, total, optional case / message
- `epoch_end`  epoch (1-based, finished), of, train_loss, val_loss, pseudo_dice (list, one per foreground
               label), labels (names, same order), epoch_time_s, eta_s
- `checkpoint` path, epoch
- `log`        message, level ("info" | "warning")
- `done`       outputs (list of paths) and command-specific fields
- `error`      message, hint (what to do; may be null); a refused memory estimate adds `memory` (estimate_gb,
               free_gb, limit_gb, patch_size, ...)

Without `--progress-json` the same calls print short human-readable lines and a progress bar on stderr.
Readers (the Slicer module) must ignore lines that do not parse and events they do not know.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

EVENTS = ("stage", "progress", "epoch_end", "checkpoint", "log", "done", "error")


def parse_event(line: str) -> dict | None:
    """One line of `--progress-json` output -> the event dict, or None for anything that is not an event."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("event"), str) else None


def _jsonable(value: Any) -> Any:
    # numpy / torch scalars and paths appear in fields; keep the writer tolerant of them.
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None  # NaN/inf are not JSON
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


class Reporter:
    """Writes events either as JSON lines (machine mode) or as human-readable text."""

    def __init__(self, json_mode: bool = False, stream: IO[str] | None = None):
        self.json_mode = json_mode
        self._bar_open = False
        if stream is not None:
            self._out = stream
        elif json_mode:
            self._out = self._claim_stdout()
        else:
            self._out = sys.stdout

    @staticmethod
    def _claim_stdout() -> IO[str]:
        """Keep the real stdout for events and send everything else that writes to fd 1 to stderr."""
        sys.stdout.flush()
        try:
            real = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
            os.dup2(2, 1)
        except OSError:  # no real file descriptors (embedded interpreters): keep what we have
            return sys.stdout
        sys.stdout = sys.stderr
        return real

    # -- the one writer ------------------------------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        if self.json_mode:
            record = {"event": event, "time": round(time.time(), 3), **_jsonable(fields)}
            self._out.write(json.dumps(record) + "\n")
            self._out.flush()
            return
        self._human(event, fields)

    def passthrough(self, line: str) -> None:
        """A line another umamba process wrote (already an event in JSON mode), passed on unchanged."""
        self._end_bar()
        self._out.write(line + "\n")
        self._out.flush()

    # -- conveniences ----------------------------------------------------------------------------------------------
    def stage(self, stage: str, message: str = "") -> None:
        self.emit("stage", stage=stage, message=message or stage)

    def progress(self, what: str, current: int, total: int, **fields: Any) -> None:
        self.emit("progress", what=what, current=int(current), total=int(total), **fields)

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", message=message, level=level)

    def done(self, outputs: list[str] | None = None, **fields: Any) -> None:
        self.emit("done", outputs=[str(o) for o in (outputs or [])], **fields)

    def error(self, message: str, hint: str | None = None, **fields: Any) -> None:
        self.emit("error", message=message, hint=hint, **fields)

    # -- human output ----------------------------------------------------------------------------------------------
    def _end_bar(self) -> None:
        if self._bar_open:
            sys.stderr.write("\n")
            self._bar_open = False

    def _human(self, event: str, f: dict) -> None:
        if event == "progress":
            total = max(int(f.get("total") or 0), 1)
            cur = min(int(f.get("current") or 0), total)
            width = 30
            filled = int(width * cur / total)
            label = f.get("case") or f.get("message") or f.get("what", "")
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {cur}/{total} {label}"[:120].ljust(60))
            sys.stderr.flush()
            self._bar_open = cur < total
            if not self._bar_open:
                sys.stderr.write("\n")
            return
        self._end_bar()
        if event == "stage":
            text = f"== {f.get('message') or f.get('stage')}"
        elif event == "epoch_end":
            dice = ", ".join(f"{d:.3f}" if isinstance(d, (int, float)) else "-" for d in f.get("pseudo_dice") or [])
            text = (f"epoch {f.get('epoch')}/{f.get('of')}: train loss {_fmt(f.get('train_loss'))}, "
                    f"val loss {_fmt(f.get('val_loss'))}, pseudo Dice [{dice}], "
                    f"{_fmt(f.get('epoch_time_s'), 1)} s, ETA {_fmt_eta(f.get('eta_s'))}")
        elif event == "checkpoint":
            text = f"checkpoint saved: {f.get('path')}"
        elif event == "done":
            outs = f.get("outputs") or []
            text = "done" + (": " + ", ".join(outs) if outs else "")
        elif event == "error":
            text = f"error: {f.get('message')}" + (f"\n  -> {f['hint']}" if f.get("hint") else "")
            sys.stderr.write(text + "\n")
            return
        elif event == "log":
            text = f.get("message", "")
        else:
            text = f"{event}: {f}"
        self._out.write(text + "\n")
        self._out.flush()


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "-"


def _fmt_eta(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
