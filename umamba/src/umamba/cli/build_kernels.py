"""`umamba build-kernels`: compile mamba-ssm's scan kernel for this machine's GPU only (explicit request only)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sdist", metavar="PATH",
                        help="mamba_ssm-*.tar.gz from PyPI (default: download mamba-ssm 2.3.2.post1's source)")
    parser.add_argument("--arch", metavar="sm_XY", help="GPU architecture (default: the first GPU's, e.g. sm_90)")
    parser.add_argument("--jobs", type=int, metavar="N", help="parallel compile jobs (default: all cores)")
    parser.add_argument("--no-index", action="store_true", help="never contact a package index (offline)")


def run(args: argparse.Namespace, reporter) -> int:
    from umamba.install.build import build_mamba_kernel

    result = build_mamba_kernel(args.arch or "", args.sdist, reporter, jobs=args.jobs, offline=args.no_index)
    reporter.log(f"built selective_scan_cuda for {result['arch']} in {result['seconds']} s "
                 f"(nvcc {result['nvcc']}, torch CUDA {result['torch_cuda']}); it loads")
    reporter.done([], **result)
    return 0
