"""`umamba bench BENCHMARK [options]`: benchmarks, one module each in umamba.bench.

    scan        selective scan per backend at U-Mamba's shapes (umamba.bench.scan)
    layer       one Mamba layer forward+backward (umamba.bench.layer)
    train-step  one nnU-Net training step of the U-Mamba networks (umamba.bench.train_step)
    predict     sliding-window inference (umamba.bench.predict)
    remote      local vs `umamba serve` prediction over loopback (umamba.bench.remote)
    train-epoch `umamba train` for N iterations, data loading included (umamba.bench.train_epoch)

Each module defines add_arguments(parser) and run(args, reporter) and shares umamba.bench.harness (timing, the
side-by-side loop, output). A new benchmark is one module and one line in BENCHMARKS. Only the chosen module is
imported, so a benchmark that is missing from this version (or whose module fails to import) says so and the
others still run. Developer tools (kernel sweeps, profiles) are not shipped: umamba/benchmarks/ in the repository.
"""

from __future__ import annotations

import argparse
import importlib

from umamba.errors import UserError

BENCHMARKS: dict[str, tuple[str, str]] = {
    "scan": ("scan", "selective scan per backend at U-Mamba's shapes (time, state updates/s)"),
    "layer": ("layer", "one Mamba layer forward+backward per scan backend"),
    "train-step": ("train_step", "one training step of the U-Mamba networks"),
    "predict": ("predict", "sliding-window inference of the U-Mamba networks"),
    "remote": ("remote", "umamba predict locally vs through umamba serve over loopback; server memory"),
    "train-epoch": ("train_epoch", "umamba train itself against the original U-Mamba layer and plain nnU-Net"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), metavar="BENCHMARK",
                        help="one of: " + ", ".join(f"{k} ({v[1]})" for k, v in BENCHMARKS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="options of that benchmark (umamba bench BENCHMARK --help)")


def load(name: str):
    """The benchmark's module, or a UserError saying it is not available."""
    module_name = f"umamba.bench.{BENCHMARKS[name][0]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise UserError(f"umamba bench {name}: not available here ({exc.name} is not installed)") from exc
        raise UserError(f"umamba bench {name}: not available in this version") from exc
    if not (hasattr(module, "add_arguments") and hasattr(module, "run")):
        raise UserError(f"umamba bench {name}: not available in this version")
    return module


def run(args: argparse.Namespace, reporter) -> int:
    module = load(args.benchmark)
    parser = argparse.ArgumentParser(prog=f"umamba bench {args.benchmark}",
                                     description=BENCHMARKS[args.benchmark][1])
    module.add_arguments(parser)
    if not any("--progress-json" in a.option_strings for a in parser._actions):
        parser.add_argument("--progress-json", action="store_true", help=argparse.SUPPRESS)
    sub_args = parser.parse_args(args.options)
    return int(module.run(sub_args, reporter) or 0)
