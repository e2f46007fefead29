"""`umamba install`: install what fits this machine (torch advice, nnU-Net, Mamba kernel wheels), then verify."""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    parser.add_argument("--find-links", metavar="DIR", help="install from the wheel files in DIR")
    parser.add_argument("--no-index", action="store_true", help="never contact a package index (with --find-links)")
    parser.add_argument("--print-files", action="store_true",
                        help="print the files an offline machine needs (see --target) and exit")
    parser.add_argument("--target", metavar="SPEC", default="",
                        help="with --print-files: python=3.12,platform=linux_x86_64,torch=2.8.0+cu128,gpu=8.6")
    parser.add_argument("--build-kernels", action="store_true",
                        help="when no prebuilt kernel fits and nvcc matches torch's CUDA, build it for this GPU")
    parser.add_argument("--skip", default="", metavar="STEPS",
                        help="comma-separated steps to leave out: nnunetv2, kernels")


def run(args: argparse.Namespace, reporter) -> int:
    from umamba.cli.doctor import format_plan
    from umamba.errors import UserError
    from umamba.install import planner, runner
    from umamba.install.probe import probe, unmet_umamba_requirements

    if args.no_index and not args.find_links:
        raise UserError("--no-index needs --find-links DIR", "give the folder holding the wheel files")
    find_links = os.path.abspath(args.find_links) if args.find_links else None
    here = probe(deep=not args.print_files)  # a target listing needs no subprocess checks

    if args.print_files:
        from umamba.install.targets import files_to_fetch, parse_target
        target = parse_target(args.target, here)
        listing = files_to_fetch(target, args.find_links or "WHEELS")
        for line in listing["commands"]:
            reporter.log(line)
        for url in listing["urls"]:
            reporter.log(url)
        for note in listing["notes"]:
            reporter.log("# " + note)
        reporter.done([], **listing)
        return 0

    skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
    unknown = set(skip) - {"nnunetv2", "kernels"}
    if unknown:
        raise UserError(f"--skip {','.join(sorted(unknown))}: unknown step", "steps that can be skipped: "
                        "nnunetv2, kernels")
    options = planner.PlanOptions(find_links=find_links, no_index=args.no_index,
                                  folder_files=runner.folder_files(find_links), build_kernels=args.build_kernels,
                                  skip=skip, python=sys.executable)
    plan = planner.make_plan(here, options, unmet_umamba_requirements())
    for line in format_plan(plan):
        reporter.log(line)
    if args.dry_run:
        reporter.done([], plan=plan.to_dict(), backend=plan.backend, dry_run=True)
        return 0

    def build(step):
        from umamba.install.build import build_mamba_kernel
        build_mamba_kernel("", None, reporter, offline=args.no_index)

    result = runner.run_plan(plan, sys.executable, reporter, find_links, args.no_index, here.python_tag, build)
    check = result["verify"]
    if not check.get("ok"):
        reporter.error(f"installed, but verification failed: {check.get('error')}",
                       "run `umamba doctor --verify` and see README, Troubleshooting")
        return 1
    reporter.log(f"verified: Mamba forward+backward on {check['device']} with the {check['backend']} backend")
    if any(s.action == planner.PENDING for s in plan.steps):
        reporter.log("torch was installed in this run: run `umamba install` again to add a Mamba CUDA kernel "
                     "if one fits")
    reporter.done([], plan=plan.to_dict(), steps=result["steps"], verify=check, backend=check["backend"])
    return 0
