"""No leftovers and no surprises: stale staging folders, the home folder, dataset names, --workspace, hints.

(A failed --pretrained run leaving no model folder is in test_prechecks.py.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from conftest import run_umamba, umamba_env
from intake_cases import case_arrays, write_image
from umamba.cli import build_parser, main
from umamba.paths import resolve_workspace


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_plan_removes_staging_folders_of_killed_plans(tmp_path):
    pre = tmp_path / "nnUNet_preprocessed"
    dead = pre / f".umamba-staging-{_dead_pid()}"
    (dead / "Dataset990_X").mkdir(parents=True)
    (dead / "Dataset990_X" / "nnUNetPlans.json").write_text("{}")
    swapped = pre / "Dataset990_X" / f".nnUNetPlans_2d.old-{_dead_pid()}"
    swapped.mkdir(parents=True)
    running = pre / f".umamba-staging-{os.getpid()}"  # a plan that is still running keeps its folder
    running.mkdir()
    proc = run_umamba(["plan", "123", "--progress-json"], tmp_path, timeout=120)
    assert proc.returncode == 2  # no such dataset: the plan fails, but it cleans up first
    assert not dead.exists() and not swapped.exists() and running.is_dir()


def test_a_failing_command_creates_nothing_in_the_home_folder(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in umamba_env().items() if k not in ("UMAMBA_HOME", "XDG_DATA_HOME", "UMAMBA_MODEL_STORE")}
    env["HOME"] = str(home)
    for args in (["train", "555", "3d_fullres", "all", "--device", "cpu"], ["plan", "555"]):
        proc = subprocess.run([sys.executable, "-m", "umamba", *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2 and "555" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert sorted(home.rglob("*")) == [], args


def _source(folder: Path) -> Path:
    folder.mkdir()
    for i in range(2):
        image, label = case_arrays(i)
        write_image(folder / f"case{i}.nii.gz", image)
        write_image(folder / f"case{i}_seg.nii.gz", label)
    return folder


def test_import_dataset_keeps_an_existing_dataset_name(tmp_path, capsys):
    source = _source(tmp_path / "Dataset601_Mini")
    workspace = tmp_path / "ws"
    assert main(["import-dataset", str(source), "--workspace", str(workspace)]) == 0
    assert main(["import-dataset", str(source), "--workspace", str(workspace)]) == 0  # 601 is taken now
    out = capsys.readouterr()
    assert sorted(p.name for p in (workspace / "nnUNet_raw").iterdir()) == ["Dataset501_Mini", "Dataset601_Mini"]
    assert "dataset id 601" in out.out + out.err


def test_an_explicit_workspace_wins_over_the_environment_and_the_help_says_so(tmp_path, monkeypatch):
    env_root = tmp_path / "env"
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(env_root / var))
    assert resolve_workspace(tmp_path / "typed").raw == tmp_path / "typed" / "nnUNet_raw"
    assert resolve_workspace(None).raw == env_root / "nnUNet_raw"
    assert not (tmp_path / "typed").exists()  # resolving creates nothing
    parser, subparsers = build_parser()
    for command in ("plan", "train", "import-dataset"):
        module = __import__(f"umamba.cli.{command.replace('-', '_')}", fromlist=["add_arguments"])
        module.add_arguments(subparsers[command])
        text = " ".join(subparsers[command].format_help().split())
        assert "used even if the nnUNet_* environment variables are set" in text, command


def test_import_model_hints_name_only_options_it_has(tmp_path, trained_tiny_model, capsys):
    """A model folder not named Trainer__Plans__Configuration is identified from its checkpoint; one with pickled
    objects is not loaded, and the hint must not tell the user to pass an option import-model lacks."""
    import shutil

    import torch

    model = tmp_path / "my_model"
    (model / "fold_all").mkdir(parents=True)
    for name in ("dataset.json", "plans.json"):
        shutil.copy(trained_tiny_model / name, model / name)
    torch.save({"network_weights": {}, "extra": argparse.Namespace(a=1)}, model / "fold_all" / "checkpoint_final.pth")
    rc = main(["import-model", str(model), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    # refused either for the pickled objects (checked first) or, when trusted, for the unknown folder name
    assert rc == 2 and ("not loaded" in err or "Trainer__Plans__Configuration" in err), err
    parser, subparsers = build_parser()
    from umamba.cli import import_model

    import_model.add_arguments(subparsers["import-model"])
    accepted = {o for a in subparsers["import-model"]._actions for o in a.option_strings}
    hint = err.split("->", 1)[1]
    suggested = {w.strip("`,;.()") for w in hint.split() if w.startswith(("--", "`--"))}
    named_elsewhere = {"--trust-checkpoint"} if "umamba predict --trust-checkpoint" in hint else set()
    assert suggested - named_elsewhere <= accepted, (suggested, hint)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
