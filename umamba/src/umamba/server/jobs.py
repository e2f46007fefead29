"""The job model and the store interface. SQLite implements it (store_sqlite.py); a shared database can too.

A job is a list of steps, each one `umamba` command line (arguments after `python -m umamba`, paths inside the
job's folder or the server's store, never a path a client sent). The scheduler runs the steps in order; every
`--progress-json` event of every step is appended to the job's event list, which clients read by index.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass
class Job:
    id: str
    user: str
    kind: str                      # "predict" | "train"
    steps: list[list[str]]         # umamba argument lists, run in order
    gpus_needed: int = 1
    state: str = QUEUED
    step: int = 0                  # index of the step running (or to run next)
    resume: bool = False           # the next run of the training step adds --continue
    gpus: list[str] = field(default_factory=list)
    pid: int | None = None
    returncode: int | None = None
    message: str | None = None     # why it failed or was cancelled
    result: str | None = None      # what the client downloads: a file name inside the job folder or a model name
    options: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    restarts: int = 0

    def public(self) -> dict:
        """What a client sees: everything but the command lines (they hold server paths)."""
        d = asdict(self)
        for private in ("steps", "pid"):
            d.pop(private)
        d["n_steps"] = len(self.steps)
        return d


class JobStore(Protocol):
    def add(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def save(self, job: Job) -> None: ...
    def list(self, user: str | None = None, states: tuple[str, ...] | None = None) -> list[Job]: ...
    def count(self, state: str) -> int: ...
    def append_event(self, job_id: str, event: dict) -> int: ...
    def events(self, job_id: str, since: int = 0) -> list[dict]: ...
