"""`umamba plan`: validate a raw dataset, then fingerprint, plan and preprocess it with nnU-Net's Python API.

The raw dataset is checked completely first (umamba.nnunet.dataset_check), so bad input writes nothing. nnU-Net
then works in a staging folder (nnUNet_preprocessed pointed at `<preprocessed>/.umamba-staging-<pid>`); each
finished item (fingerprint, plans, one folder per configuration, gt_segmentations) is renamed into the real
dataset folder only when everything succeeded. A custom splits_final.json already there is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from umamba.errors import UserError
from umamba.nnunet import compat
from umamba.nnunet.dataset_check import validate_raw_dataset
from umamba.nnunet.datasets import find_dataset_folder, parse_dataset_id
from umamba.nnunet.process_safety import pid_alive
from umamba.progress import Reporter

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres")  # the ones U-Mamba trains
PLANS_IDENTIFIER = "nnUNetPlans"
STAGING_PREFIX = ".umamba-staging-"


@dataclass
class PlanResult:
    preprocessed_folder: Path
    plans_file: Path
    configurations: list[str]


def default_num_processes() -> int:
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@contextlib.contextmanager
def _environment(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _replace(src: Path, dst: Path) -> None:
    """Move src over dst; a folder dst is renamed away first and deleted after the swap."""
    if dst.is_dir() and not dst.is_symlink():
        trash = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def remove_abandoned_staging(preprocessed_root: Path) -> list[Path]:
    """Staging folders of plans that were killed (their process is gone) cannot clean up after themselves: the next
    plan removes them, and the renamed-away items of an interrupted swap (`DatasetXXX/.NAME.old-PID`)."""
    if not preprocessed_root.is_dir():
        return []
    candidates = [(p, p.name[len(STAGING_PREFIX):]) for p in preprocessed_root.glob(STAGING_PREFIX + "*")]
    candidates += [(p, p.name.rsplit(".old-", 1)[1]) for p in preprocessed_root.glob("Dataset*/.*.old-*")]
    removed = []
    for path, pid in candidates:
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def plan_dataset(dataset: str, raw_root: Path, preprocessed_root: Path, configurations=DEFAULT_CONFIGURATIONS,
                 num_processes: int | None = None, verify: bool = False,
                 reporter: Reporter | None = None) -> PlanResult:
    reporter = reporter or Reporter(json_mode=False)
    compat.require_supported_nnunet()
    bad = [c for c in configurations if c not in CONFIGURATIONS]
    if bad or not configurations:
        raise UserError(f"unknown configuration(s) {', '.join(bad) or '(none)'}",
                        f"choose from {', '.join(CONFIGURATIONS)}")
    remove_abandoned_staging(preprocessed_root)
    raw_folder = find_dataset_folder(raw_root, dataset, "nnUNet_raw",
                                     "put the dataset into that folder in nnU-Net's layout (or use "
                                     "`umamba import-dataset`), or point --workspace / nnUNet_raw elsewhere")
    dataset_id = parse_dataset_id(raw_folder.name)
    np_ = num_processes or default_num_processes()

    reporter.stage("validate", f"checking {raw_folder.name}")
    ds = validate_raw_dataset(raw_folder)
    reporter.log(f"{raw_folder.name}: {len(ds.cases)} training case(s), {ds.num_channels} channel(s): OK")

    preprocessed_root.mkdir(parents=True, exist_ok=True)
    staged = compat.nnunet_paths_follow_environment()
    staging_root = preprocessed_root / f"{STAGING_PREFIX}{os.getpid()}" if staged else preprocessed_root
    target = preprocessed_root / raw_folder.name
    try:
        # The planner calls torch.set_num_threads(nnUNet_n_proc_DA), which must then be positive.
        n_da = os.environ.get("nnUNet_n_proc_DA", "")
        n_da = n_da if n_da.isdigit() and int(n_da) > 0 else str(np_)
        with _environment(nnUNet_preprocessed=str(staging_root), nnUNet_n_proc_DA=n_da), \
                contextlib.redirect_stdout(sys.stderr):
            from nnunetv2.experiment_planning.plan_and_preprocess_api import (
                extract_fingerprints, plan_experiments, preprocess)

            reporter.stage("fingerprint", f"extracting the dataset fingerprint ({np_} process(es))")
            compat.call_with_supported_kwargs(extract_fingerprints, [dataset_id], "DatasetFingerprintExtractor",
                                              num_processes=np_, check_dataset_integrity=verify, clean=True,
                                              verbose=False, show_progress_bar=False)
            reporter.stage("plan", "planning the experiment (patch size, network topology)")
            plans_identifier = plan_experiments([dataset_id], "ExperimentPlanner") or PLANS_IDENTIFIER
            staged_folder = staging_root / raw_folder.name
            plans_file = staged_folder / f"{plans_identifier}.json"
            available = list(json.loads(plans_file.read_text())["configurations"])
            wanted = [c for c in configurations if c in available]
            for c in configurations:
                if c not in available:
                    reporter.log(f"nnU-Net planned no {c} configuration for this dataset (images too small or "
                                 f"not 3D); skipped", level="warning")
            if not wanted:
                raise UserError(f"none of the configurations {', '.join(configurations)} exists for "
                                f"{raw_folder.name} (planned: {', '.join(available)})",
                                f"plan one of: {', '.join(c for c in available if c in CONFIGURATIONS)}")
            reporter.stage("preprocess", f"preprocessing {', '.join(wanted)} ({np_} process(es))")
            compat.call_with_supported_kwargs(preprocess, [dataset_id], plans_identifier, wanted,
                                              num_processes=[np_] * len(wanted), verbose=False,
                                              show_progress_bar=False)
        if staged:
            target.mkdir(exist_ok=True)
            for item in sorted(staged_folder.iterdir()):
                if item.name == "splits_final.json" and (target / item.name).exists():
                    continue  # keep a split the user (or an earlier run) defined
                _replace(item, target / item.name)
    finally:
        if staged:
            shutil.rmtree(staging_root, ignore_errors=True)
    return PlanResult(target, target / f"{plans_identifier}.json", wanted)
