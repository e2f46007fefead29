"""The `umamba` command line: one dispatcher, one module per sub-command.

Each sub-command lives in `umamba.cli.<module>` and defines
    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace, reporter: umamba.progress.Reporter) -> int
Modules are imported only when their command runs, so `umamba --help` and `umamba doctor` stay fast and work
without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from umamba import __version__
from umamba.errors import UserError
from umamba.progress import Reporter

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("plan", "fingerprint, plan and preprocess an nnU-Net raw dataset"),
    "train": ("train", "train a U-Mamba model (Bot or Enc) on a planned dataset"),
    "predict": ("predict", "segment images with a trained model"),
    "import-dataset": ("import_dataset", "turn a folder of images and labels into an nnU-Net raw dataset"),
    "import-model": ("import_model", "add a results folder or zip to the local model store"),
    "models": ("models", "list the models in the local model store (or a server's: --server URL)"),
    "serve": ("serve", "run a server that predicts and trains for remote clients (HTTP, FastAPI)"),
    "doctor": ("doctor", "show what is installed and which Mamba backend will run"),
    "install": ("install", "install the dependencies that fit this machine"),
    "build-kernels": ("build_kernels", "build mamba-ssm's CUDA scan kernel for the local GPU"),
    "demo": ("demo", "train a small model on a phantom and segment a held-out volume"),
    "bench": ("bench", "benchmarks: scan, layer, train-step, train-epoch, predict"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="umamba", description="U-Mamba segmentation on stock nnU-Net v2")
    parser.add_argument("--version", action="version", version=f"umamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (_module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--progress-json", action="store_true",
                       help="write one JSON event per line on stdout (for programs such as the Slicer module)")
        subparsers[name] = p
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    # Only the chosen command's module is imported (and may add its own arguments).
    name = next((a for a in argv if not a.startswith("-")), None)
    module = None
    if name in COMMANDS:
        try:
            module = importlib.import_module(f"umamba.cli.{COMMANDS[name][0]}")
        except ModuleNotFoundError as exc:
            if exc.name != f"umamba.cli.{COMMANDS[name][0]}":
                raise
            parser.exit(2, f"umamba {name}: this command is not available in this version\n")
        module.add_arguments(subparsers[name])
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 0 if args.command is None else 2
    args.argv = argv  # a command may run itself again as a watched child process (umamba.cli.watched)
    reporter = Reporter(json_mode=getattr(args, "progress_json", False))
    try:
        return int(module.run(args, reporter) or 0)
    except UserError as exc:
        reporter.error(exc.message, exc.hint, **getattr(exc, "fields", {}))
        return 2
    except KeyboardInterrupt:
        reporter.error("interrupted", None)
        return 130
    except Exception as exc:  # an unexpected failure: still one event, the traceback on stderr
        traceback.print_exc(file=sys.stderr)
        reporter.error(f"{type(exc).__name__}: {exc}",
                       "this looks like a bug in umamba; the traceback above was written to stderr")
        return 1
