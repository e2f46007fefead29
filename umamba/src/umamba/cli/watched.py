"""Run a long command in a child process that this small process watches, so its end is always reported.

A process killed by the system (the out-of-memory killer sends SIGKILL) cannot write its own `error` event, and a
`--progress-json` reader (the Slicer module) would be left with a stream that just stops. So `umamba train` runs
the training in a child process (the same command line, marked by UMAMBA_WATCHED_CHILD=1) and stays as its
parent: it passes the child's stdout on line by line and, when the child ends by a signal or without a final
`done` / `error` event, writes that `error` event itself. The parent imports no torch and holds little memory,
so the system does not pick it. The child dies with the parent (Linux: PR_SET_PDEATHSIG), and SIGTERM sent to
the parent is passed on to the child (a stop that was asked for is not reported as an error).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from umamba.nnunet.process_safety import _ask_kernel_to_kill_me_with
from umamba.progress import parse_event

CHILD_VARIABLE = "UMAMBA_WATCHED_CHILD"
FINAL_EVENTS = ("done", "error")


def is_watched_child() -> bool:
    return os.environ.get(CHILD_VARIABLE) == "1"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_watched(argv: list[str], reporter, what: str) -> int:
    """Run `umamba ARGV` as a watched child; returns its exit code (128 + signal when a signal ended it)."""
    env = {**os.environ, CHILD_VARIABLE: "1", "PYTHONUNBUFFERED": "1"}
    parent = os.getpid()
    linux = sys.platform.startswith("linux")
    child = subprocess.Popen([sys.executable, "-m", "umamba", *argv], stdout=subprocess.PIPE, env=env,
                             preexec_fn=(lambda: _ask_kernel_to_kill_me_with(parent)) if linux else None)

    received = []

    def forward(signum, _frame):
        received.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, forward)
    # Ctrl-C reaches the child from the terminal itself (same process group): the child reports it.
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    last, memory = None, None
    try:
        for raw in child.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            event = parse_event(line)
            if event is not None:
                last = event["event"]
                memory = event.get("memory", memory)
            reporter.passthrough(line)
        rc = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if rc < 0:
        name = _signal_name(-rc)
        cause = (" (the system's out-of-memory killer stops processes this way when memory runs out; so does "
                 "`kill -9`)" if -rc == signal.SIGKILL else "")
        if -rc in received:  # stopped on request (a Cancel button, `kill`): no error of ours to add
            return 128 - rc
        if last not in FINAL_EVENTS or -rc == signal.SIGKILL:
            reporter.error(f"the {what} process was stopped by {name}{cause}",
                           "if memory ran out: use a smaller patch (plans file), a 2d configuration or a GPU; "
                           "`--continue` resumes from the last checkpoint",
                           **({"memory": memory} if memory else {}), signal=name)
        return 128 - rc
    if rc != 0 and last not in FINAL_EVENTS:
        reporter.error(f"the {what} process ended with exit code {rc} without saying why",
                       "the messages above (stderr) show what happened; this looks like a bug in umamba")
    return rc
