"""The client side of `umamba serve`: `umamba predict/train/models --server URL`.

Nothing here imports torch, numpy or nnunetv2: a laptop that only sends work to a server needs the `umamba`
package alone (`pip install --no-deps umamba`), on the standard library.
"""

from __future__ import annotations

import argparse
import os

TOKEN_ENV = "UMAMBA_TOKEN"


def add_remote_arguments(parser: argparse.ArgumentParser, job: bool = True) -> None:
    group = parser.add_argument_group("remote (run on a `umamba serve` server)")
    group.add_argument("--server", default=None, metavar="URL",
                       help="run on this umamba server instead of this computer, e.g. https://gpu-box:8765")
    group.add_argument("--token", default=None, metavar="TOKEN",
                       help=f"the server's token (default: ${TOKEN_ENV})")
    if job:
        group.add_argument("--job", default=None, metavar="ID",
                           help="with --server: follow this job (started earlier) and fetch its result")


def token_from(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get(TOKEN_ENV) or None
