"""`umamba bench train-epoch`: `umamba train` itself for N iterations (nnU-Net's training loop with its data
loading and augmentation, run through the CLI's code path, umamba.nnunet.runner.train) on one planned dataset,
each arm side by side: iterations/s, peak memory and the loss of every iteration.

Arms, each in its own process (its own peak memory and data-loading workers), same plan, seed and iterations:
    umamba    our trainer, nnUNetTrainerUMambaBot/Enc, with the default kernels
    original  the same trainer with every Mamba layer replaced by mamba-ssm's own Mamba module (same weights):
              the original U-Mamba's layer; skipped with a message when mamba_ssm does not import
    plain     nnU-Net's nnUNetTrainer (the U-Net without Mamba layers)

DATASET is a dataset id or name planned in the workspace, a raw nnU-Net dataset folder (copied into the
workspace and planned with `umamba plan` when it is not yet), or `synthetic` (a phantom of --synthetic-size³
voxels, written and planned once). Iterations/s counts the --iterations after --warmup; with --num-gpus N the
global batch (the plan's, or --batch-size) is split over N processes by nnU-Net's DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from umamba.errors import UserError

ARM_NAMES = ("umamba", "original", "plain")
SYNTHETIC_ID = 980


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET",
                        help="dataset id/name planned in the workspace, a raw nnU-Net dataset folder, or 'synthetic'")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("--variant", choices=("bot", "enc"), default="enc", help="U-Mamba Bot or Enc (default enc)")
    parser.add_argument("--arms", default=",".join(ARM_NAMES), help="comma-separated: umamba, original, plain")
    parser.add_argument("--iterations", type=int, default=30, help="measured training iterations per arm")
    parser.add_argument("--warmup", type=int, default=5, help="iterations before the measured ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--num-gpus", type=int, default=1, help="nnU-Net's DDP over N GPUs (default 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch size instead of the plan's (split over --num-gpus)")
    parser.add_argument("--compile", action="store_true", help="torch.compile in every arm (default: none)")
    parser.add_argument("--synthetic-size", type=int, default=128, help="edge of the synthetic cases (voxels)")
    parser.add_argument("--synthetic-cases", type=int, default=4)
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="folder holding nnUNet_raw and nnUNet_preprocessed (as for umamba plan/train)")
    parser.add_argument("--arm-process", default=None, help=argparse.SUPPRESS)  # one arm, in a child process


def run(args, reporter=None) -> int:
    if args.iterations < 1 or args.warmup < 1:
        raise UserError("--iterations and --warmup must be at least 1",
                        "the first iterations include data-loader start-up and are never timed")
    from umamba.paths import resolve_workspace

    workspace = resolve_workspace(args.workspace)
    workspace.export_to_environment()
    if args.arm_process:
        return _run_arm(args, workspace)
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARM_NAMES))
    if unknown:
        raise UserError(f"unknown arm(s): {', '.join(unknown)}", f"use some of {', '.join(ARM_NAMES)}")
    from umamba.nnunet.runner import TrainRequest, check_request

    # --device/--num-gpus problems before anything is written or planned
    check_request(TrainRequest(args.dataset, args.configuration, "all", device=args.device, num_gpus=args.num_gpus))
    dataset = prepare_dataset(args, workspace, reporter)

    import torch

    from umamba.bench import harness

    harness.emit(harness.machine(args.device or ("cuda" if torch.cuda.is_available() else "cpu")))
    rows = []
    with tempfile.TemporaryDirectory(prefix="umamba-bench-train-") as tmp:
        for arm in arms:
            reason = arm_unavailable(arm, args)
            row = {"kind": "train_epoch", "arm": arm, "variant": args.variant, "dataset": dataset,
                   "configuration": args.configuration, "num_gpus": args.num_gpus}
            if reason:
                row["skipped"] = reason
                print(f"umamba bench train-epoch: arm {arm} skipped: {reason}", file=sys.stderr, flush=True)
            else:
                row.update(_run_arm_process(arm, dataset, args, Path(tmp)))
            rows.append(row)
    add_ratios(rows)
    for row in rows:
        harness.emit(row)
    device = next((r["device_name"] for r in rows if r.get("device_name")), harness.device_name())
    harness.table(rows, ["arm", "trainer", "block", "global_batch", "iterations_per_s", "ms_per_iteration",
                         "vs_original", "vs_plain", "peak_gib", "loss_first", "loss_last", "skipped"],
                  title=f"umamba train, {args.variant} {args.configuration} on {dataset}, {args.iterations} "
                        f"iterations after {args.warmup}, seed {args.seed}, {args.num_gpus} process(es), "
                        f"device: {device}")
    return 1 if any("error" in r for r in rows) else 0


# -- the dataset ------------------------------------------------------------------------------------------------------
def prepare_dataset(args, workspace, reporter) -> str:
    """The dataset's folder name, planned and preprocessed for args.configuration in the workspace."""
    from umamba.nnunet.datasets import find_dataset_folder

    name = args.dataset
    if name == "synthetic":
        from umamba.synthetic import dataset_folder_name, make_phantom_dataset

        name = dataset_folder_name(SYNTHETIC_ID, f"BenchPhantom{args.synthetic_size}")
        others = [p.name for p in workspace.raw.glob(f"Dataset{SYNTHETIC_ID:03d}_*") if p.name != name]
        if others:
            raise UserError(f"{workspace.raw} already holds {others[0]}, which has the synthetic set's id",
                            "use another --workspace, or remove that dataset")
        if not (workspace.raw / name).is_dir():
            size = args.synthetic_size
            make_phantom_dataset(workspace.raw, SYNTHETIC_ID, f"BenchPhantom{size}", n_cases=args.synthetic_cases,
                                 shape=(size, size, size), seed=args.seed)
    elif Path(name).is_dir() and (Path(name) / "dataset.json").is_file():
        source = Path(name).resolve()
        name = source.name
        if not (workspace.raw / name).exists():
            shutil.copytree(source, workspace.raw / name)
    try:
        from umamba.nnunet.runner import TrainRequest, _load_plans

        folder, _plans, _ = _load_plans(workspace.preprocessed, TrainRequest(name, args.configuration, "all"))
        return folder.name
    except UserError:
        pass
    from umamba.nnunet.planning import plan_dataset

    print(f"umamba bench train-epoch: planning {name} ({args.configuration})", file=sys.stderr, flush=True)
    plan_dataset(name, workspace.raw, workspace.preprocessed, configurations=(args.configuration,),
                 reporter=reporter)
    return find_dataset_folder(workspace.preprocessed, name, "nnUNet_preprocessed", "").name


# -- the arms -------------------------------------------------------------------------------------------------------
def arm_unavailable(arm: str, args) -> str | None:
    """Why an arm cannot run here, or None."""
    if arm != "original":
        return None
    import torch

    from umamba.bench import arms

    if arms.original_mamba_class() is None:
        return ("mamba_ssm does not import here; install it (umamba build-kernels, or pip install mamba-ssm "
                "causal-conv1d) to compare against the original U-Mamba's Mamba layer")
    if args.device == "cpu" or not torch.cuda.is_available():
        return "mamba-ssm's Mamba module runs only on CUDA GPUs"
    return None


def _arm_argv(arm: str, dataset: str, args) -> list[str]:
    argv = [sys.executable, "-m", "umamba", "bench", "train-epoch", dataset, "--arm-process", arm,
            "-c", args.configuration, "--variant", args.variant, "--iterations", str(args.iterations),
            "--warmup", str(args.warmup), "--seed", str(args.seed), "--num-gpus", str(args.num_gpus)]
    for flag, value in (("--device", args.device), ("--batch-size", args.batch_size)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["--compile"] if args.compile else [])


def _run_arm_process(arm: str, dataset: str, args, tmp: Path) -> dict:
    result, log = tmp / f"{arm}.json", tmp / f"{arm}.log"
    env = dict(os.environ, UMAMBA_BENCH_RESULT=str(result), nnUNet_results=str(tmp / f"results_{arm}"))
    print(f"umamba bench train-epoch: arm {arm} ...", file=sys.stderr, flush=True)
    with open(log, "w") as out:
        proc = subprocess.run(_arm_argv(arm, dataset, args), env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not result.is_file():
        tail = log.read_text(errors="replace")[-2000:]
        print(f"umamba bench train-epoch: arm {arm} failed ({proc.returncode}):\n{tail}", file=sys.stderr)
        lines = [ln for ln in tail.splitlines() if ln.startswith("error:")] or tail.strip().splitlines() or [""]
        return {"error": f"exit {proc.returncode}: {lines[-1]}"[:300]}
    return summarize(json.loads(result.read_text()), args.warmup, args.num_gpus)


def summarize(record: dict, warmup: int, num_gpus: int) -> dict:
    """Iterations/s over the iterations after `warmup` (the end of iteration `warmup` starts the clock)."""
    times, losses = record["iteration_end_s"], record["loss"]
    measured = len(times) - warmup
    elapsed = times[-1] - times[warmup - 1]
    tail = max(1, min(5, measured // 3))
    return {"trainer": record["trainer"], "block": record["mamba_block"] or "-", "device": record["device"],
            "device_name": record.get("device_name"),
            "patch_size": record["patch_size"], "global_batch": record["batch_size_per_process"] * num_gpus,
            "iterations": measured, "iterations_per_s": measured / elapsed,
            "ms_per_iteration": elapsed / measured * 1e3,
            "peak_gib": record["peak_gib"], "peak_kind": record["peak_kind"],
            "loss_first": sum(losses[:tail]) / tail, "loss_last": sum(losses[-tail:]) / tail, "loss": losses}


def add_ratios(rows: list[dict]) -> None:
    """Speed relative to the original's and plain nnU-Net's arms (>1: faster than that arm)."""
    by_arm = {r["arm"]: r for r in rows if "iterations_per_s" in r}
    for row in by_arm.values():
        for ref in ("original", "plain"):
            if ref in by_arm and ref != row["arm"]:
                row[f"vs_{ref}"] = row["iterations_per_s"] / by_arm[ref]["iterations_per_s"]


def _run_arm(args, workspace) -> int:
    """One arm, in this (child) process: `umamba train`'s code path with the arm's trainer class."""
    from umamba.nnunet import runner

    device = runner.pick_device(args.device if args.num_gpus == 1 else "cuda")
    runner.prepare_process(device)  # before nnunetv2 is imported (the arms' module imports it)
    os.environ.setdefault("nnUNet_compile", "1" if args.compile else "0")
    os.environ["UMAMBA_BENCH_SEED"] = str(args.seed)
    if args.batch_size:
        os.environ["UMAMBA_BENCH_BATCH_SIZE"] = str(args.batch_size)
    seed_everything(args.seed)
    from umamba.bench.train_epoch_arms import ARMS
    from umamba.progress import Reporter

    req = runner.TrainRequest(dataset=args.dataset, configuration=args.configuration, fold="all",
                              trainer=args.variant, epochs=1, iterations_per_epoch=args.warmup + args.iterations,
                              val_iterations=1, device=args.device, num_gpus=args.num_gpus, compile=args.compile,
                              final_validation=False, trainer_class=ARMS[(args.arm_process, args.variant)])
    runner.train(req, workspace.preprocessed, Reporter(json_mode=False, stream=sys.stderr))
    return 0


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
