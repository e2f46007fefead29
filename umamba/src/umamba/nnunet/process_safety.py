"""Worker processes that die with the training process.

nnU-Net's data-augmentation workers (batchgenerators, forked) poll their queues forever; when the training
process is killed (SIGKILL from a Cancel button, an OOM killer) nothing tells them to stop and they linger.
On Linux every process forked from here on asks the kernel for SIGKILL when its parent dies
(prctl PR_SET_PDEATHSIG), via the standard `os.register_at_fork` hook: nnU-Net's code is not touched.
Spawned workers (nnU-Net's export pools) exit when the pipe to their parent closes; spawned processes that never
read that pipe (the ranks of a DDP training) call `die_with(parent_pid)` themselves: the fork hook does not run
for them (multiprocessing's spawn starts them with fork+exec).
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_installed_for_pid: int | None = None


def _ask_kernel_to_kill_me_with(parent_pid: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os._exit(1)


def die_with(parent_pid: int) -> None:
    """Ask the kernel to kill this process when its parent (`parent_pid`, which started it) dies. Linux only."""
    if sys.platform.startswith("linux"):
        _ask_kernel_to_kill_me_with(parent_pid)


def die_with_parent() -> None:
    """Make children forked from this process (from now on) die when this process dies. Linux only; idempotent."""
    global _installed_for_pid
    if not sys.platform.startswith("linux") or not hasattr(os, "register_at_fork"):
        return
    if _installed_for_pid == os.getpid():
        return
    _installed_for_pid = parent = os.getpid()

    def after_fork_in_child() -> None:
        # Only direct children of the process that installed the hook: a worker's own forks are left alone.
        if os.getppid() == parent:
            _ask_kernel_to_kill_me_with(parent)

    os.register_at_fork(after_in_child=after_fork_in_child)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (True where that cannot be told: Windows, no permission)."""
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
