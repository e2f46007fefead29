"""`umamba serve`: run prediction and training jobs for remote clients (`umamba predict --server URL`, Slicer)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from umamba.errors import UserError
from umamba.paths import user_data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface, best behind "
                             "TLS: --ssl-certfile/--ssl-keyfile or a reverse proxy)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help=f"jobs, job database, model store and token (default {user_data_dir() / 'server'})")
    parser.add_argument("--gpus", default="auto", metavar="auto|none|0,1,...",
                        help="GPUs to run jobs on, one job per GPU (default auto: every GPU nvidia-smi lists; "
                             "none or no GPU: one job at a time)")
    parser.add_argument("--max-queue", type=int, default=16, metavar="N",
                        help="jobs waiting at most; more are answered 503 with Retry-After (default 16)")
    parser.add_argument("--max-upload-mb", type=int, default=4096, metavar="MB",
                        help="largest request body (default 4096); an unpacked dataset may be 4x this")
    parser.add_argument("--token-file", default=None, metavar="FILE",
                        help="tokens, one TOKEN or USER:TOKEN per line (per-user: each sees only their jobs); "
                             "default: DATA_DIR/token, made on first start")
    parser.add_argument("--ssl-certfile", default=None, metavar="PEM", help="TLS certificate (serve https)")
    parser.add_argument("--ssl-keyfile", default=None, metavar="PEM", help="TLS private key")


def parse_gpus(spec: str) -> list[str]:
    spec = spec.strip().lower()
    if spec in ("none", "cpu", ""):
        return []
    if spec == "auto":
        from umamba.install.probe import query_nvidia_smi

        return [str(g.index) for g in query_nvidia_smi()[0]]
    ids = [s.strip() for s in spec.split(",")]
    if not all(re.fullmatch(r"\d+", i) for i in ids) or len(set(ids)) != len(ids):
        raise UserError(f"--gpus {spec}: expected auto, none or distinct GPU numbers such as 0,1")
    return ids


def run(args: argparse.Namespace, reporter) -> int:
    try:
        import uvicorn

        from umamba.server.app import ServerConfig, create_app
    except ModuleNotFoundError as exc:
        raise UserError(f"umamba serve needs {exc.name}, which is not installed",
                        "pip install 'umamba[server]'") from None
    from umamba.server.auth import generated_token, read_tokens

    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise UserError("--ssl-certfile and --ssl-keyfile go together")
    if args.max_queue < 1 or args.max_upload_mb < 1:
        raise UserError("--max-queue and --max-upload-mb must be at least 1")
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else user_data_dir() / "server"
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)  # patients' images and the token live here
    if args.token_file:
        tokens = read_tokens(Path(args.token_file).expanduser())
        token_note = f"tokens from {args.token_file} ({len(tokens)})"
    else:
        token_path = data_dir / "token"
        tokens = {generated_token(token_path): "default"}
        token_note = f"token in {token_path} (give it to clients: --token or UMAMBA_TOKEN)"
    gpus = parse_gpus(args.gpus)
    config = ServerConfig(data_dir=data_dir, gpus=gpus, tokens=tokens, max_queue=args.max_queue,
                          max_upload_bytes=args.max_upload_mb << 20)
    app = create_app(config)
    scheme = "https" if args.ssl_certfile else "http"
    sys.stderr.write(f"umamba serve on {scheme}://{args.host}:{args.port}\n  data: {data_dir}\n  {token_note}\n"
                     f"  slots: {', '.join('GPU ' + g for g in gpus) if gpus else 'one job at a time (no GPU)'}\n")
    sys.stderr.flush()
    uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                log_level="warning", timeout_graceful_shutdown=10)
    return 0
