"""Bearer tokens: one generated on first start (stored 0600), or per-user tokens from a file.

Token file format (`--token-file`): one token per line, either `TOKEN` (user "default") or `USER:TOKEN`;
blank lines and lines starting with '#' are ignored. With per-user tokens a client sees only its own jobs.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import stat
import sys
from pathlib import Path

from umamba.errors import UserError

_USER_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def generated_token(path: Path) -> str:
    """The token in `path`, made (32 random bytes as hex: never starts with '-', which a command line would take
    for an option) with mode 0600 when the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    return path.read_text().strip()


def read_tokens(path: Path) -> dict[str, str]:
    """{token: user} from a token file; refuses an empty file and warns when others may read it."""
    if not path.is_file():
        raise UserError(f"token file {path} does not exist", "create it with one TOKEN or USER:TOKEN per line")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        sys.stderr.write(f"warning: {path} can be read by other users; run `chmod 600 {path}`\n")
    tokens: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, _, token = line.rpartition(":") if ":" in line else ("default", "", line)
        if not _USER_RE.match(user) or len(token) < 16:
            raise UserError(f"{path} line {n}: expected TOKEN or USER:TOKEN with a token of 16+ characters",
                            "make tokens with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        tokens[token] = user
    if not tokens:
        raise UserError(f"token file {path} holds no token", "add one TOKEN or USER:TOKEN per line")
    return tokens


def user_for(header: str | None, tokens: dict[str, str]) -> str | None:
    """The user whose token is in the `Authorization: Bearer TOKEN` header, else None. Every stored token is
    compared in constant time, so the time taken says nothing about which token (or how much of it) matched."""
    if not header or not header.startswith("Bearer "):
        return None
    offered = header[len("Bearer "):].strip().encode()
    found = None
    for token, user in tokens.items():
        if hmac.compare_digest(offered, token.encode()):
            found = user
    return found
