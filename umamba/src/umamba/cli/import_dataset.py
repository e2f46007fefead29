"""`umamba import-dataset SOURCE`: a folder of images and labels -> a new nnU-Net raw dataset.

Every file is read and checked before anything is written; problems come back as one list (an `error` event
with a `problems` field under --progress-json). With --dry-run nothing is written at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from umamba.errors import UserError
from umamba.intake import IntakeError, inspect_source, write_dataset
from umamba.intake.writer import DATASET_DIR, used_ids
from umamba.paths import resolve_workspace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="folder: nnU-Net raw dataset, images/ + labels/, or CASE + CASE_seg files")
    parser.add_argument("--name", help="dataset name (default: the source folder's name)")
    parser.add_argument("--id", type=int, dest="dataset_id", help="dataset id (default: the next free one from 501)")
    parser.add_argument("--workspace", metavar="DIR",
                        help="workspace folder; the dataset goes into DIR/nnUNet_raw (when given, it is used even "
                             "if the nnUNet_* environment variables are set; without it: nnUNet_raw etc. when all "
                             "three are set, else a per-user folder)")
    parser.add_argument("--channel-names", help="comma-separated channel names, e.g. CT or T1,T2 "
                                                "('CT' selects nnU-Net's CT intensity normalisation)")
    parser.add_argument("--dry-run", action="store_true", help="check and describe the folder; write nothing")


def run(args: argparse.Namespace, reporter) -> int:
    source = Path(args.source).expanduser().resolve()
    channel_names = [c.strip() for c in args.channel_names.split(",")] if args.channel_names else None
    reporter.stage("scan", f"reading {source}")
    try:
        plan = inspect_source(source, channel_names,
                              progress=lambda i, n, case: reporter.progress("case", i, n, case=case))
    except IntakeError as exc:
        reporter.emit("error", message=exc.message, hint=exc.hint, problems=[p.to_dict() for p in exc.problems])
        return 2
    summary = plan.summary()
    if not reporter.json_mode:
        reporter.log(f"layout: {plan.layout}; {len(plan.cases)} cases; channels: {', '.join(plan.channel_names)}; "
                     f"labels: {', '.join(f'{n}={v}' for n, v in summary['labels'].items())}")
        for warning in plan.warnings:
            reporter.log(warning, "warning")
    if args.dry_run:
        reporter.done([], dry_run=True, **summary)
        return 0
    workspace = resolve_workspace(args.workspace)
    if args.dataset_id is not None and args.dataset_id < 1:
        raise UserError(f"dataset id {args.dataset_id} is out of range", "use a number from 1 to 999")
    reporter.stage("write", f"writing the dataset into {workspace.raw}")
    name, dataset_id = args.name or source.name, args.dataset_id
    existing = DATASET_DIR.match(source.name)
    if existing:  # Dataset501_BraTSmini stays Dataset501_BraTSmini (not Dataset501_Dataset501_BraTSmini)
        name = args.name or source.name[existing.end():] or source.name
        wanted = int(existing.group(1))
        if dataset_id is None and 1 <= wanted <= 999:
            if wanted in used_ids(workspace.raw, workspace.preprocessed, workspace.results):
                reporter.log(f"dataset id {wanted} of {source.name} is already used in {workspace.raw} (or its "
                             "preprocessed/results folders); the next free id is used instead", "warning")
            else:
                dataset_id = wanted
    folder = write_dataset(plan, workspace.raw, name, dataset_id,
                           other_roots=(workspace.preprocessed, workspace.results),
                           progress=lambda i, n, case: reporter.progress("case", i, n, case=case))
    dataset_id = int(folder.name[len("Dataset"):len("Dataset") + 3])
    reporter.done([str(folder.resolve())], dataset=folder.name, dataset_id=dataset_id, dry_run=False, **summary)
    return 0
