"""The model store: import from folders and nnU-Net export zips, cards, listing, and refusing unsafe archives.

These tests use model folders with placeholder checkpoint files: the store never unpickles them (it is torch-free);
prediction from an imported model is covered in test_predict_cli.py with a trained model.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from umamba.errors import UserError
from umamba.model_store import CARD_FILE, delete_model, import_model, list_models, read_card, resolve_model

DATASET_JSON = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "cord": 1, "lesion": 2},
                "numTraining": 5, "file_ending": ".nii.gz"}


def write_checkpoint(path: Path, fold: str) -> None:
    """A small checkpoint (import reads every checkpoint with the safe loader), told apart by its fold."""
    import torch

    torch.save({"network_weights": {"w": torch.zeros(2)}, "fold": fold}, path)


def checkpoint_fold(path: Path) -> str:
    from umamba.checkpoint import load_checkpoint

    return load_checkpoint(path)["fold"]


def make_model_folder(results: Path, trainer="nnUNetTrainerUMambaBot", configuration="3d_fullres",
                      folds=("0", "1"), dataset="Dataset503_SpinalCord") -> Path:
    folder = results / dataset / f"{trainer}__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True)
    plans = {"dataset_name": dataset, "plans_name": "nnUNetPlans",
             "configurations": {"2d": {"patch_size": [64, 64]}, "3d_fullres": {"patch_size": [32, 64, 64]}}}
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    (folder / "dataset_fingerprint.json").write_text("{}")
    for f in folds:
        (folder / f"fold_{f}" / "validation").mkdir(parents=True)
        write_checkpoint(folder / f"fold_{f}" / "checkpoint_final.pth", f)
        (folder / f"fold_{f}" / "debug.json").write_text("{}")
        (folder / f"fold_{f}" / "validation" / "case_000.nii.gz").write_bytes(b"big prediction, not copied")
    return folder


def zip_folder(results: Path, zip_path: Path) -> Path:
    """The layout nnUNetv2_export_model_to_zip writes: DatasetXXX/Trainer__Plans__Config/..."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(results.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(results).as_posix())
    return zip_path


def store_entries(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir()) if store.exists() else []


def test_import_folder_round_trip(tmp_path):
    folder = make_model_folder(tmp_path / "results")
    store = tmp_path / "store"
    [card] = import_model(folder, store)
    name = "Dataset503_SpinalCord_UMambaBot_3d_fullres"
    assert card["name"] == name and store_entries(store) == [name]
    assert card["labels"] == {"background": 0, "cord": 1, "lesion": 2}
    assert card["channel_names"] == ["T2", "ADC"]
    assert (card["trainer"], card["variant"], card["configuration"]) == ("nnUNetTrainerUMambaBot", "bot", "3d_fullres")
    assert card["folds"] == ["0", "1"] and card["checkpoints"] == {"0": ["checkpoint_final.pth"],
                                                                   "1": ["checkpoint_final.pth"]}
    assert card["source"] == str(folder.resolve()) and card["dataset"] == "Dataset503_SpinalCord"
    model = store / name
    assert read_card(model) == card == list_models(store)[0]
    assert checkpoint_fold(model / "fold_1" / "checkpoint_final.pth") == "1"
    assert not (model / "fold_0" / "validation" / "case_000.nii.gz").exists()  # predictions are left behind
    assert resolve_model(name, store) == model
    with pytest.raises(UserError, match="already has a model"):
        import_model(folder, store)
    import_model(folder, store, force=True)
    delete_model(store, name)
    assert store_entries(store) == []


def test_import_zip_with_two_configurations(tmp_path):
    results = tmp_path / "results"
    make_model_folder(results, configuration="3d_fullres")
    make_model_folder(results, trainer="nnUNetTrainerUMambaEnc", configuration="2d", folds=("all",))
    archive = zip_folder(results, tmp_path / "export.zip")
    store = tmp_path / "store"
    cards = import_model(archive, store, name="cord")
    assert sorted(c["name"] for c in cards) == ["cord_2d", "cord_3d_fullres"]
    enc = read_card(store / "cord_2d")
    assert (enc["trainer"], enc["variant"], enc["folds"]) == ("nnUNetTrainerUMambaEnc", "enc", ["all"])
    assert checkpoint_fold(store / "cord_3d_fullres" / "fold_0" / "checkpoint_final.pth") == "0"
    [only] = import_model(archive, tmp_path / "store2", configuration="2d")
    assert only["name"] == "Dataset503_SpinalCord_UMambaEnc_2d"
    with pytest.raises(UserError, match="no model with configuration '3d_lowres'"):
        import_model(archive, tmp_path / "store3", configuration="3d_lowres")


@pytest.mark.parametrize("member", ["../outside.txt", "Dataset503_X/../../outside.txt", "/tmp/absolute.txt",
                                    "C:/windows.txt", "..\\outside.txt"])
def test_zip_member_outside_target_is_refused(tmp_path, member):
    results = tmp_path / "results"
    make_model_folder(results)
    archive = zip_folder(results, tmp_path / "export.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(member, "escaped")
    store = tmp_path / "store" / "models"
    with pytest.raises(UserError, match="outside the target folder"):
        import_model(archive, store)
    assert store_entries(store) == []  # nothing half-written, no staging folder left
    assert not (tmp_path / "store" / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    results = tmp_path / "results"
    folder = make_model_folder(results)
    archive = zip_folder(results, tmp_path / "export.zip")
    link = zipfile.ZipInfo(f"Dataset503_SpinalCord/{folder.name}/fold_0/checkpoint_best.pth")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UserError, match="symbolic link"):
        import_model(archive, tmp_path / "store")
    assert store_entries(tmp_path / "store") == []


def test_invalid_model_folders(tmp_path):
    store = tmp_path / "store"
    no_plans = make_model_folder(tmp_path / "a")
    (no_plans / "plans.json").unlink()
    with pytest.raises(UserError, match="has no plans.json"):
        import_model(no_plans, store)
    no_ckpt = make_model_folder(tmp_path / "b")
    for f in no_ckpt.glob("fold_*/checkpoint_final.pth"):
        f.unlink()
    with pytest.raises(UserError, match="has no fold_X/checkpoint_final.pth"):
        import_model(no_ckpt, store)
    other = make_model_folder(tmp_path / "c", trainer="nnUNetTrainer")
    with pytest.raises(UserError, match="not a U-Mamba trainer"):
        import_model(other, store)
    with pytest.raises(UserError, match="invalid model name"):
        import_model(make_model_folder(tmp_path / "d"), store, name="../up")
    (tmp_path / "not_a_zip.zip").write_text("hello")
    with pytest.raises(UserError, match="neither a folder nor a zip"):
        import_model(tmp_path / "not_a_zip.zip", store)
    assert store_entries(store) == []


def test_cli_import_and_list_without_torch(tmp_path):
    folder = make_model_folder(tmp_path / "results")
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "umamba", "import-model", str(folder), "--store", str(store),
                          "--name", "cord", "--progress-json"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["outputs"] == [str(store / "cord")]
    assert events[-1]["cards"][0]["name"] == "cord"
    listed = subprocess.run([sys.executable, "-m", "umamba", "models", "--store", str(store), "--json"],
                            capture_output=True, text=True, env=env, check=True)
    assert [c["name"] for c in json.loads(listed.stdout)] == ["cord"]
    bad = subprocess.run([sys.executable, "-m", "umamba", "import-model", str(tmp_path / "nowhere"), "--store",
                          str(store), "--progress-json"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and json.loads(bad.stdout.splitlines()[-1])["event"] == "error"
    # The store side (used by the Slicer module too) never needs torch.
    probe = ("import sys, umamba.model_store as m; m.list_models(sys.argv[1]); "
             "m.import_model(sys.argv[2], sys.argv[1], name='again'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(store), str(folder)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert (store / "again" / CARD_FILE).is_file()
