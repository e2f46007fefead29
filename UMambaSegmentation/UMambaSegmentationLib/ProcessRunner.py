"""Runs one `umamba` command as a background process and turns its output into events (Qt-free).

This is the one process runner of the module: segmentation, model import and training (TrainingLogic) all use
it. The GUI thread calls `poll()` from a timer; reader threads fill a queue, so the GUI never blocks on a pipe.

Events are dicts. Lines on stdout that parse as `--progress-json` events (umamba/progress.py) are passed on as
they are; two kinds are added here, with names umamba never uses:
- `{"event": "output", "message": line}`    one line the process wrote on stderr (nnU-Net, torch, tracebacks)
- `{"event": "process_exit", "returncode": rc, "cancelled": bool}`    always the last event
When the process ends unsuccessfully without an `error` or `done` event of its own (killed by the system, e.g. the
out-of-memory killer's SIGKILL), an `error` event saying so is added before `process_exit`.

Cancel stops the whole process tree: nnU-Net starts worker processes (multiprocessing pools for preprocessing
and export), so killing only the direct child would leave orphans holding memory and files. The child is started
as the leader of a new session (POSIX) or a new process group (Windows); cancel signals the whole group, then any
descendant that left the group, and finally waits for them.
"""

import atexit
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque

IS_WINDOWS = sys.platform == "win32"

# Runners still alive when the interpreter exits (Slicer closing mid-run) are cancelled, so nothing outlives us.
_liveRunners = weakref.WeakSet()


def _cancelLiveRunners():
    for runner in list(_liveRunners):
        runner.cancel(graceSeconds=1.0)


atexit.register(_cancelLiveRunners)


def parseEventLine(line):
    """One stdout line -> event dict, or None for anything that is not an event (same rule as umamba.progress)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("event"), str) else None


def _processTable():
    """[(pid, ppid, pgid, state)] of every process, read from /proc (Linux); None where /proc does not exist."""
    if not os.path.isdir("/proc/self"):
        return None
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # The command name (field 2) may contain spaces and parentheses: state, ppid, pgid follow the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2:
            table.append((int(entry), int(fields[1]), int(fields[2]), fields[0]))
    return table


def descendantPids(rootPid):
    """Living (non-zombie) descendants of rootPid; an empty list where /proc does not exist."""
    table = _processTable() or []
    children = {}
    for pid, ppid, _pgid, state in table:
        if state != "Z":
            children.setdefault(ppid, []).append(pid)
    found, todo = [], [rootPid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def groupPids(pgid):
    """Living (non-zombie) members of process group pgid. Without /proc: [pgid] while the group answers."""
    table = _processTable()
    if table is None:
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    return [pid for pid, _ppid, group, state in table if group == pgid and state != "Z"]


class ProcessRunner:
    """Start a command, read its events without blocking, cancel it with its whole process tree."""

    def __init__(self, command, env=None, cwd=None, logLines=400):
        self.command = [str(c) for c in command]
        self.env = env
        self.cwd = cwd
        self.returncode = None
        self.cancelled = False
        self.stderrTail = deque(maxlen=logLines)  # the last lines of stderr, for error details
        self._process = None
        self._queue = queue.Queue()
        self._threads = []
        self._exitReported = False
        self._sawFinalEvent = False

    # -- start -----------------------------------------------------------------------------------------------------
    def start(self):
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")  # events must arrive while the process runs, not at its end
        env.setdefault("PYTHONIOENCODING", "utf-8")
        kwargs = {}
        if IS_WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # own session and process group: cancel can signal all of it
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=self.cwd, **kwargs)
        _liveRunners.add(self)
        for stream, handler in ((self._process.stdout, self._onStdout), (self._process.stderr, self._onStderr)):
            thread = threading.Thread(target=self._readLines, args=(stream, handler), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def pid(self):
        return self._process.pid if self._process else None

    def isRunning(self):
        return self._process is not None and self._process.poll() is None

    # -- reading ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _readLines(stream, handler):
        with stream:
            for raw in iter(stream.readline, b""):
                handler(raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    def _onStdout(self, line):
        event = parseEventLine(line)
        if event is not None:
            self._sawFinalEvent = self._sawFinalEvent or event["event"] in ("done", "error")
            self._queue.put(event)
        elif line.strip():  # stray text on stdout: still worth showing in the log
            self._queue.put({"event": "output", "message": line})

    def _onStderr(self, line):
        self.stderrTail.append(line)
        self._queue.put({"event": "output", "message": line})

    def poll(self):
        """Events that arrived since the last call; the last one is `process_exit` once the process has ended
        and all its output has been read."""
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not self._exitReported and self._process is not None and self._process.poll() is not None:
            # The process ended: wait for the readers so no line written just before the exit is lost.
            for thread in self._threads:
                thread.join(timeout=5.0)
            while True:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self.returncode = self._process.returncode
            self._exitReported = True
            _liveRunners.discard(self)
            if self.returncode != 0 and not self.cancelled and not self._sawFinalEvent:
                events.append(self._exitError(self.returncode, self.stderrTail))
            events.append({"event": "process_exit", "returncode": self.returncode, "cancelled": self.cancelled})
        return events

    @staticmethod
    def _exitError(returncode, stderrTail=()):
        """The `error` event of a process that could not write its own (a signal ended it, a crash, or a Python
        without umamba, which fails before umamba can report anything)."""
        missing = next((m.group(1) for line in stderrTail
                        for m in [re.search(r"No module named '?(umamba|torch|nnunetv2)\b", line)] if m), None)
        if missing:
            return {"event": "error", "message": f"{missing} is not installed in the Python that runs umamba.",
                    "hint": "Install the dependencies first (Dependencies > Install dependencies...)."}
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            cause = " (the system stops a process this way when memory runs out)" if name == "SIGKILL" else ""
            return {"event": "error", "message": f"The umamba process was stopped by {name}{cause}.",
                    "hint": "If memory ran out, use a smaller patch, a 2d configuration or a GPU.", "signal": name}
        return {"event": "error", "message": f"The umamba process ended with exit code {returncode} without a message.",
                "hint": "The log shows its last output."}

    def wait(self, timeout=None):
        """Block until the process ends (tests, command-line use); returns all events."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = []
        while not self._exitReported:
            events.extend(self.poll())
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.command[:4]} did not finish within {timeout} s")
            time.sleep(0.05)
        return events + self.poll()

    # -- cancel ----------------------------------------------------------------------------------------------------
    def cancel(self, graceSeconds=3.0):
        """Stop the process and every process it started. Returns when they are gone (or after 2 x grace)."""
        if self._process is None or self._exitReported and not self._treeAlive():
            return
        self.cancelled = True
        if IS_WINDOWS:
            self._cancelWindows()
        else:
            self._cancelPosix(graceSeconds)
        try:
            self._process.wait(timeout=graceSeconds)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=graceSeconds)

    def _treeAlive(self):
        return self.isRunning() or bool(descendantPids(self._process.pid))

    def _cancelWindows(self):
        # taskkill /T walks the child tree that Windows records; /F because nnU-Net workers ignore CTRL_BREAK.
        subprocess.run(["taskkill", "/PID", str(self._process.pid), "/T", "/F"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def _cancelPosix(self, graceSeconds):
        pgid = self._process.pid  # leader of its own session, so its pid is the group id
        # Descendants that made their own group would escape killpg: remember them before anything dies.
        stragglers = set(descendantPids(self._process.pid))
        self._signalGroup(pgid, signal.SIGTERM)
        for pid in stragglers:
            self._signalPid(pid, signal.SIGTERM)
        deadline = time.monotonic() + graceSeconds
        while time.monotonic() < deadline:
            if not self.isRunning() and not any(self._pidAlive(p) for p in stragglers) \
                    and not groupPids(pgid):
                return
            time.sleep(0.05)
        # SIGTERM was not enough (a worker stuck in C code): no more asking.
        stragglers.update(descendantPids(self._process.pid))
        self._signalGroup(pgid, signal.SIGKILL)
        for pid in stragglers:
            self._signalPid(pid, signal.SIGKILL)

    @staticmethod
    def _signalGroup(pgid, sig):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _signalPid(pid, sig):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _pidAlive(pid):
        table = _processTable()
        if table is not None:
            return any(p == pid and state != "Z" for p, _pp, _g, state in table)
        try:
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
