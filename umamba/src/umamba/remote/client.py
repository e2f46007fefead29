"""HTTP client for `umamba serve`, on the standard library only (urllib).

Every request but /healthz carries `Authorization: Bearer TOKEN`. A 503 answer (queue full) is retried after the
server's Retry-After; a lost connection (server restarting) is retried for `reconnect_s` seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from umamba import __version__
from umamba.errors import UserError
from umamba.server import API_VERSION

_RETRYABLE_NET = (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError)


class ServerError(UserError):
    """An answer of the server that says no: status code, message and hint from its JSON body."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.status = status


class _Multipart:
    """multipart/form-data body streamed from files (never held in memory whole), with its exact length."""

    def __init__(self, fields: dict[str, str], files: list[tuple[str, Path]]):
        self.boundary = "umamba-" + secrets.token_hex(12)
        self.parts: list[bytes | Path] = []
        for name, value in fields.items():
            self.parts.append(self._head(name) + b"\r\n" + value.encode() + b"\r\n")
        for name, path in files:
            filename = path.name.replace('"', "_")
            self.parts += [self._head(name, f'; filename="{filename}"') +
                           b"Content-Type: application/octet-stream\r\n\r\n", Path(path), b"\r\n"]
        self.parts.append(f"--{self.boundary}--\r\n".encode())
        self.length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self.parts)

    def _head(self, name: str, extra: str = "") -> bytes:
        return f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n'.encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, Path):
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 20):
                        yield chunk
            else:
                yield part


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 120, reconnect_s: float = 300,
                 log: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep):
        parsed = urllib.parse.urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UserError(f"'{url}' is not a server URL", "e.g. http://127.0.0.1:8765 or https://gpu-box:8765")
        self.url = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.token = token
        self.timeout = timeout
        self.reconnect_s = reconnect_s
        self.log = log or (lambda message: None)
        self.sleep = sleep
        self.limit_mb: int | None = None  # the server's upload limit, known after health()

    # -- one request -------------------------------------------------------------------------------------------------
    def _open(self, method: str, path: str, body=None, headers: dict | None = None, auth: bool = True):
        headers = dict(headers or {})
        if auth:
            if not self.token:
                raise UserError(f"no token for {self.url}",
                                "pass --token TOKEN or set UMAMBA_TOKEN (the server prints where its token is)")
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._problem(exc) from None

    def _problem(self, exc: urllib.error.HTTPError) -> ServerError:
        raw = exc.read()
        try:
            detail = json.loads(raw).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if isinstance(detail, dict):
            message, hint = str(detail.get("message")), detail.get("hint")
        else:
            message, hint = f"{self.url} answered {exc.code} {exc.reason}", None
        if exc.code == 401:
            hint = hint or "check --token"
        error = ServerError(exc.code, message, hint)
        error.retry_after = exc.headers.get("Retry-After")
        return error

    def call(self, method: str, path: str, body=None, headers: dict | None = None, auth: bool = True,
             retry_busy: bool = False):
        """One request, retried while the server is unreachable (up to reconnect_s) or, with retry_busy, while it
        answers 503 (after its Retry-After). `body` may be a callable making a fresh body for each attempt."""
        lost_since = None
        while True:
            try:
                data = body() if callable(body) else body
                return self._open(method, path, data, headers, auth)
            except ServerError as exc:
                if not (retry_busy and exc.status == 503):
                    raise
                wait = _seconds(exc.retry_after, 2)
                self.log(f"the server's queue is full; trying again in {wait:g} s")
                self.sleep(wait)
            except _RETRYABLE_NET as exc:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > self.reconnect_s:
                    raise UserError(f"cannot reach {self.url} ({_reason(exc)})",
                                    "check the URL and that `umamba serve` runs there") from None
                self.log(f"no answer from {self.url} ({_reason(exc)}); trying again")
                self.sleep(2)

    def json(self, method: str, path: str, **kw) -> dict:
        with self.call(method, path, **kw) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise UserError(f"{self.url} is not a umamba server (its answer to {path} is not JSON)",
                            "check the URL and port") from None

    # -- the API -----------------------------------------------------------------------------------------------------
    def health(self) -> dict:
        """/healthz, checked: a umamba server speaking this client's API version."""
        try:
            with self._open("GET", "/healthz", auth=False) as response:
                raw = response.read()
        except ServerError as exc:
            raise UserError(f"{self.url} is not a umamba server (/healthz answered {exc.status})",
                            "check the URL and port of `umamba serve`") from None
        except _RETRYABLE_NET as exc:
            raise UserError(f"cannot reach {self.url} ({_reason(exc)})",
                            "check the URL, and that `umamba serve` runs there and the firewall lets you in") from None
        try:
            health = json.loads(raw)
        except ValueError:
            health = None
        check_compatible(self.url, health)
        self.limit_mb = health.get("max_upload_mb")
        return health

    def models(self) -> list[dict]:
        return self.json("GET", "/models")["models"]

    def submit(self, kind: str, options: dict, files: list[tuple[str, Path]]) -> dict:
        probe = _Multipart({"options": json.dumps(options)}, files)
        limit_mb = self.limit_mb
        if limit_mb is not None and probe.length > limit_mb << 20:
            # the server would answer 413 after reading the headers; say it before sending anything
            raise UserError(f"the upload ({probe.length / (1 << 20):.1f} MB) is larger than the server's limit of "
                            f"{limit_mb} MB", "ask the server's administrator to raise --max-upload-mb")
        headers = {"Content-Type": probe.content_type, "Content-Length": str(probe.length)}

        def fresh():  # the boundary must stay the one in the headers
            return iter(probe)
        return self.json("POST", f"/jobs/{kind}", body=fresh, headers=headers, retry_busy=True)

    def job(self, job_id: str) -> dict:
        return self.json("GET", f"/jobs/{_quote(job_id)}")

    def events(self, job_id: str, since: int, wait: float = 10) -> dict:
        return self.json("GET", f"/jobs/{_quote(job_id)}/events?since={int(since)}&wait={wait:g}")

    def cancel(self, job_id: str) -> dict:
        return self.json("POST", f"/jobs/{_quote(job_id)}/cancel")

    def download(self, path: str, target: Path) -> Path:
        """GET `path` into `target`, atomically (a temporary beside it, renamed at the end)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
        try:
            with self.call("GET", path) as response, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target


def check_compatible(url: str, health) -> None:
    if not isinstance(health, dict) or health.get("service") != "umamba":
        raise UserError(f"{url} is not a umamba server", "check the URL and port of `umamba serve`")
    if health.get("api") != API_VERSION:
        raise UserError(f"the server at {url} runs umamba {health.get('version')} (API {health.get('api')}), this "
                        f"client umamba {__version__} (API {API_VERSION}); they cannot work together",
                        "install the same umamba version on the client and the server")


def _seconds(value, default: float) -> float:
    try:
        return max(0.1, min(300.0, float(value)))
    except (TypeError, ValueError):
        return default


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)


def _quote(job_id: str) -> str:
    return urllib.parse.quote(job_id, safe="")
