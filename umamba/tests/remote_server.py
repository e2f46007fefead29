"""A real `umamba serve` subprocess on a free 127.0.0.1 port, and `umamba` clients that cannot import torch.

Used by the server tests (test_server_*.py). Clients run `python -m umamba`-equivalent code in a subprocess
whose import system refuses torch, nnunetv2 and numpy, so every client test also shows the client needs none.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import umamba_env

BLOCKED = ("torch", "nnunetv2", "numpy")
_CLIENT = f"""
import sys
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ImportError(f'{{name}} is blocked: the umamba client must not need it')
sys.meta_path.insert(0, _Refuse())
from umamba.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, *args: str, port: int | None = None, token_file: Path | None = None):
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.port = port or free_port()
        self.token_file = token_file
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def start(self, timeout: float = 60) -> "Server":
        extra = ["--token-file", str(self.token_file)] if self.token_file else []
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}-server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "umamba", "serve", "--port", str(self.port),
                                      "--data-dir", str(self.data_dir), *extra, *self.args],
                                     env=umamba_env(), stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"umamba serve exited with {self.proc.returncode}: {self.read_log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if json.loads(r.read()).get("service") == "umamba":
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"umamba serve did not answer within {timeout} s: {self.read_log()[-3000:]}")

    def read_log(self) -> str:
        return (self.data_dir.parent / f"{self.data_dir.name}-server.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


def client_command(*args: str) -> list[str]:
    return [sys.executable, "-c", _CLIENT, *args]


def run_client(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`umamba ARGS` with torch, nnunetv2 and numpy refused; text output."""
    return subprocess.run(client_command(*args), env=umamba_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def start_client(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(client_command(*args), env=umamba_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def events(stdout: str) -> list[dict]:
    found = []
    for line in stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "event" in obj:
            found.append(obj)
    return found


def api(server: Server, method: str, path: str, token: str | None = None, body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One raw HTTP request: (status, headers with lower-case names, body)."""
    import urllib.error

    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server.url + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def wait_for(predicate, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def job_pid(data_dir: Path, job_id: str) -> int | None:
    """The pid the server's job store records for a running job (read-only)."""
    import sqlite3

    db = sqlite3.connect(f"file:{data_dir / 'jobs.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]).get("pid") if row else None

