"""umamba plan DATASET [--verify] [-c CONFIGS ...] [-np N] [--workspace W]

Checks the raw dataset (all problems at once, nothing written when any is found), then runs nnU-Net's
fingerprint extraction, experiment planning and preprocessing.
"""

from __future__ import annotations

import argparse

from umamba.paths import resolve_workspace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="dataset id (e.g. 4) or name (e.g. Dataset004_Hippocampus)")
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIG",
                        help="configurations to preprocess (default: 2d 3d_fullres; 3d_lowres also possible)")
    parser.add_argument("--verify", action="store_true",
                        help="also run nnU-Net's own verify_dataset_integrity (reads every image)")
    parser.add_argument("-np", "--num-processes", type=int, default=None, metavar="N",
                        help="worker processes for fingerprinting and preprocessing (default: half the CPU "
                             "cores, at most 4)")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="folder holding nnUNet_raw, nnUNet_preprocessed, nnUNet_results (when given, it is used even "
                             "if the nnUNet_* environment variables are set; without it: those variables when all "
                             "three are set, else a per-user folder)")


def run(args: argparse.Namespace, reporter) -> int:
    from umamba.errors import UserError

    if args.num_processes is not None and args.num_processes < 1:
        raise UserError("-np must be at least 1")
    workspace = resolve_workspace(args.workspace)
    workspace.export_to_environment()  # before nnunetv2 is imported

    from umamba.nnunet.planning import DEFAULT_CONFIGURATIONS, plan_dataset

    result = plan_dataset(args.dataset, workspace.raw, workspace.preprocessed,
                          configurations=tuple(args.configurations or DEFAULT_CONFIGURATIONS),
                          num_processes=args.num_processes, verify=args.verify, reporter=reporter)
    reporter.done([str(result.preprocessed_folder)], dataset=result.preprocessed_folder.name,
                  plans=str(result.plans_file), configurations=result.configurations)
    return 0
