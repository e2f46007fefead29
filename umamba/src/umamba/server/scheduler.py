"""Runs queued jobs as `umamba ... --progress-json` subprocesses, one per slot.

A slot is a GPU id (the job's process sees only its GPUs through CUDA_VISIBLE_DEVICES) or, on a server without
GPUs, the one CPU slot. A job asking for N GPUs (training with --num-gpus N) waits until N slots are free; jobs
start in submission order. Each job process leads its own process group, so cancel stops the whole tree (nnU-Net's
worker processes included), and the kernel kills it if the server dies (PR_SET_PDEATHSIG), so a restarted server
never finds a job still running without it.

On start, jobs the store still calls running (the server was killed) are put back in the queue: a prediction
starts again; a training resumes from its last checkpoint (`umamba train --continue`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from umamba.errors import UserError
from umamba.nnunet.process_safety import _ask_kernel_to_kill_me_with
from umamba.progress import parse_event
from umamba.server.commands import TRAIN_STEP, with_continue
from umamba.server.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobStore

MAIN_STEP = {"predict": 0, "train": TRAIN_STEP}  # the step whose `done` event the client sees
_PATH_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")  # each job names its own workspace


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Scheduler:
    def __init__(self, store: JobStore, jobs_dir: Path, gpus: list[str], max_queue: int,
                 python: str = sys.executable):
        self.store = store
        self.jobs_dir = Path(jobs_dir)
        self.gpus = list(gpus)
        self.slots = self.gpus or ["cpu"]
        self.max_queue = max_queue
        self.python = python
        self._free = list(self.slots)
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()
        self._durations: deque[float] = deque(maxlen=20)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the queue ---------------------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def slots_for(self, job: Job) -> int:
        return job.gpus_needed if self.gpus else 1

    def check_room(self, gpus_needed: int = 1) -> None:
        """Raise QueueFull when no job can be queued now, UserError when this one could never run here."""
        if self.gpus and gpus_needed > len(self.gpus):
            raise UserError(f"the job asks for {gpus_needed} GPUs; this server has {len(self.gpus)}",
                            f"use --num-gpus {len(self.gpus)} or fewer")
        if not self.gpus and gpus_needed > 1:
            raise UserError(f"the job asks for {gpus_needed} GPUs; this server has none", "use --num-gpus 1")
        if self.store.count(QUEUED) >= self.max_queue:
            raise QueueFull(self.retry_after())

    def retry_after(self) -> int:
        """Seconds until a queue place is likely free: the mean recent job time over the slots (1..60)."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 2.0
        return int(max(1, min(60, round(mean / len(self.slots)))))

    def submit(self, job: Job) -> None:
        with self._lock:
            self.check_room(job.gpus_needed)
            self.store.add(job)
        self.store.append_event(job.id, _event("log", message=f"job {job.id} queued", level="info", job=job.id))
        self._wake.set()

    def cancel(self, job: Job) -> Job:
        with self._lock:
            job = self.store.get(job.id)
            if job.state == QUEUED:
                job.state, job.message, job.finished = CANCELLED, "cancelled before it started", time.time()
                self.store.save(job)
                self.store.append_event(job.id, _event("error", message="cancelled", hint=None))
                return job
            if job.state != RUNNING:
                return job
            self._cancelled.add(job.id)
            proc = self._procs.get(job.id)
        if proc is not None:
            kill_tree(proc)
        return self.store.get(job.id)

    # -- the loop ------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="umamba-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Kill running jobs and leave them marked running: the next start re-queues (or resumes) them."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        self._wake.set()
        for proc in procs:
            kill_tree(proc, grace=2.0)

    def _loop(self) -> None:
        while not self._stopping:
            self._dispatch()
            self._wake.wait(0.5)
            self._wake.clear()

    def _dispatch(self) -> None:
        with self._lock:
            for job in self.store.list(states=(QUEUED,)):
                need = self.slots_for(job)
                if len(self._free) < need:
                    return  # first come, first served: a big job is not overtaken forever by small ones
                taken, self._free = self._free[:need], self._free[need:]
                job.state, job.started, job.pid = RUNNING, time.time(), None
                job.gpus = taken if self.gpus else []
                self.store.save(job)
                threading.Thread(target=self._run, args=(job, taken), name=f"job-{job.id}", daemon=True).start()

    def recover(self) -> None:
        for job in self.store.list(states=(RUNNING,)):
            _kill_leftover(job.pid)
            job.state, job.pid, job.gpus, job.restarts = QUEUED, None, [], job.restarts + 1
            if job.kind == "train" and job.step == TRAIN_STEP:
                job.resume = True
                note = "the server restarted: training resumes from its last checkpoint"
            elif job.kind == "train" and job.step < TRAIN_STEP:
                job.step = 0
                _remove_tree(self.job_dir(job.id) / "workspace")
                note = "the server restarted: the dataset is imported and planned again"
            else:
                note = "the server restarted: the job was queued again"
            self.store.save(job)
            self.store.append_event(job.id, _event("log", message=note, level="warning"))

    # -- one job -------------------------------------------------------------------------------------------------------
    def _run(self, job: Job, taken: list[str]) -> None:
        try:
            self._run_steps(job)
        except Exception as exc:  # a server-side failure (disk full, ...) fails this job, never the server
            self._finish(job, FAILED, 1, f"the server could not run the job: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._procs.pop(job.id, None)
                self._free = [s for s in self.slots if s in self._free or s in taken]
            self._wake.set()

    def _run_steps(self, job: Job) -> None:
        folder = self.job_dir(job.id)
        env = {k: v for k, v in os.environ.items() if k not in _PATH_VARS}
        env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", CUDA_VISIBLE_DEVICES=",".join(job.gpus))
        while job.step < len(job.steps):
            args = job.steps[job.step]
            if job.kind == "train" and job.step == TRAIN_STEP and job.resume:
                args = with_continue(args)
            with open(folder / "log.txt", "ab") as log, self._lock:
                if self._stopping:
                    return
                if job.id in self._cancelled:  # cancelled between two steps
                    self._cancelled.discard(job.id)
                    self.store.append_event(job.id, _event("error", message="cancelled", hint=None))
                    self._finish(job, CANCELLED, 130, "cancelled")
                    return
                proc = subprocess.Popen([self.python, "-m", "umamba", *args, "--progress-json"], cwd=folder,
                                        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                        start_new_session=True,
                                        preexec_fn=_dies_with(os.getpid()) if sys.platform.startswith("linux")
                                        else None)
                self._procs[job.id] = proc
            job.pid = proc.pid
            self.store.save(job)
            last_error = None
            for raw in proc.stdout:
                event = parse_event(raw.decode("utf-8", errors="replace"))
                if event is None or event["event"] == "done" and job.step != MAIN_STEP[job.kind]:
                    continue
                if event["event"] == "error":
                    last_error = event.get("message")
                self.store.append_event(job.id, event)
            rc = proc.wait()
            with self._lock:
                if self._stopping:
                    return  # left as running: the next start takes it up again
                if job.id in self._cancelled:
                    self._cancelled.discard(job.id)
                    self.store.append_event(job.id, _event("error", message="cancelled", hint=None))
                    self._finish(job, CANCELLED, 130, "cancelled")
                    return
            if rc != 0:
                if last_error is None:
                    tail = _tail(folder / "log.txt")
                    self.store.append_event(job.id, _event("error", message=f"umamba {args[0]} stopped with exit "
                                                           f"code {rc}", hint=tail or None))
                self._finish(job, FAILED, rc, last_error or f"umamba {args[0]} stopped with exit code {rc}")
                return
            job.step += 1
            job.resume = False
            self.store.save(job)
        self._finish(job, DONE, 0, None)

    def _finish(self, job: Job, state: str, returncode: int, message: str | None) -> None:
        job.state, job.returncode, job.message, job.finished, job.pid = state, returncode, message, time.time(), None
        self.store.save(job)
        if job.started:
            self._durations.append(job.finished - job.started)


def _event(name: str, **fields) -> dict:
    return {"event": name, "time": round(time.time(), 3), **fields}


def _dies_with(server_pid: int):
    return lambda: _ask_kernel_to_kill_me_with(server_pid)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM to the job's process group, SIGKILL after `grace` seconds."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)


def _kill_leftover(pid: int | None) -> None:
    """A job process of a previous server life that is somehow still there (not Linux: no PDEATHSIG)."""
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"umamba" in cmdline:
        _signal_group(pid, signal.SIGKILL)
