"""Every path that reads a checkpoint (predict, import-model, train --pretrained, train --continue) goes through
umamba.checkpoint's loader: a file whose unpickling would run code is refused, with a message naming
--trust-checkpoint, and the code never runs; with --trust-checkpoint it loads. Bad checkpoints get clear messages.
The Slicer panel's Resume (`umamba train --continue` as the panel builds it) is in Testing/test_slicer_resume_trust.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from conftest import TINY_DATASET, run_umamba
from test_nets_weights import make
from umamba.checkpoint import compare_weights, load_checkpoint, load_pretrained_weights
from umamba.errors import UserError

MODEL_NAME = "nnUNetTrainerUMambaBot__nnUNetPlans__3d_fullres"


class RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): a stand-in for any code a malicious checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_evil_checkpoint(source: Path, target: Path, marker: Path, classes: int | None = None) -> None:
    """The trained checkpoint plus a code-running payload (and, with `classes`, segmentation heads for that many)."""
    ckpt = load_checkpoint(source)
    ckpt["payload"] = RunsCodeWhenUnpickled(marker)
    if classes is not None:
        for key, value in list(ckpt["network_weights"].items()):
            if ".seg_layers." in key:
                ckpt["network_weights"][key] = torch.zeros((classes, *value.shape[1:]))
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, target)


@pytest.fixture(scope="module")
def evil_workspace(tiny_workspace, trained_tiny_model, tmp_path_factory) -> Path:
    """A copy of the tiny workspace whose trained model's checkpoint_final.pth carries the payload."""
    ws = tmp_path_factory.mktemp("evil_workspace")
    for sub in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(tiny_workspace / sub, ws / sub)
    model = ws / "nnUNet_results" / TINY_DATASET / MODEL_NAME
    shutil.copytree(trained_tiny_model, model)
    write_evil_checkpoint(trained_tiny_model / "fold_all" / "checkpoint_final.pth",
                          model / "fold_all" / "checkpoint_final.pth", ws / "code_ran")
    return ws


def refused(proc, marker: Path) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "--trust-checkpoint" in out and "arbitrary code" in out, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    assert not marker.exists()
    return out


def loaded(proc, marker: Path) -> None:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert marker.exists()
    marker.unlink()


def test_predict_refuses_then_trusts(evil_workspace, tmp_path):
    marker = evil_workspace / "code_ran"
    model = evil_workspace / "nnUNet_results" / TINY_DATASET / MODEL_NAME
    image = next((evil_workspace / "nnUNet_raw" / TINY_DATASET / "imagesTs").glob("*_0000.*"))
    args = ["predict", "-i", str(image), "-o", str(tmp_path / "out.nii.gz"), "-m", str(model), "--device", "cpu",
            "--disable-tta"]
    refused(run_umamba(args, evil_workspace), marker)
    assert not (tmp_path / "out.nii.gz").exists()
    loaded(run_umamba(args + ["--trust-checkpoint"], evil_workspace), marker)
    assert sitk.ReadImage(str(tmp_path / "out.nii.gz")).GetSize() == sitk.ReadImage(str(image)).GetSize()


def test_import_model_refuses_then_trusts(evil_workspace, tmp_path):
    marker = evil_workspace / "code_ran"
    model = evil_workspace / "nnUNet_results" / TINY_DATASET / MODEL_NAME
    store = tmp_path / "store"
    args = ["import-model", str(model), "--store", str(store), "--name", "evil"]
    out = refused(run_umamba(args, evil_workspace), marker)
    assert str(model / "fold_all" / "checkpoint_final.pth") in out  # the source's file, not the staging copy
    assert not (store / "evil").exists() and not [p for p in store.glob(".staging-*")]
    loaded(run_umamba(args + ["--trust-checkpoint"], evil_workspace), marker)
    assert (store / "evil" / "fold_all" / "checkpoint_final.pth").is_file()


def test_train_continue_refuses_then_trusts(evil_workspace):
    marker = evil_workspace / "code_ran"
    # The checkpoint is at the end of its single epoch: a trusted --continue loads it and has nothing left to train.
    args = ["train", "990", "3d_fullres", "all", "-tr", "bot", "--continue", "--epochs", "1", "--device", "cpu",
            "--no-final-validation"]
    refused(run_umamba(args, evil_workspace), marker)
    loaded(run_umamba(args + ["--trust-checkpoint"], evil_workspace), marker)


@pytest.mark.slow
def test_train_pretrained_refuses_then_trusts_and_skips_heads(evil_workspace, trained_tiny_model, tmp_path):
    marker = tmp_path / "code_ran"
    pretrained = tmp_path / "three_classes.pth"  # as if from another dataset: 3 output classes instead of 2
    write_evil_checkpoint(trained_tiny_model / "fold_all" / "checkpoint_final.pth", pretrained, marker, classes=3)
    ws = tmp_path / "ws"  # a fresh results folder: --pretrained starts a new training
    for sub in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(evil_workspace / sub, ws / sub)
    args = ["train", "990", "3d_fullres", "all", "-tr", "bot", "--pretrained", str(pretrained), "--epochs", "1",
            "--iterations-per-epoch", "1", "--val-iterations", "1", "--device", "cpu", "--no-final-validation"]
    refused(run_umamba(args, ws), marker)
    proc = run_umamba(args + ["--trust-checkpoint"], ws)
    loaded(proc, marker)
    out = proc.stdout + proc.stderr
    assert "segmentation heads not loaded" in out and "decoder.seg_layers.0.weight" in out, out[-3000:]


# -- bad checkpoints, in-process -------------------------------------------------------------------------------------
def test_not_a_checkpoint_at_all(tmp_path):
    (tmp_path / "notes.pth").write_bytes(b"these are not weights\n" * 10)
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint") as err:
        load_checkpoint(tmp_path / "notes.pth")
    assert "truncated or not a checkpoint" in err.value.hint


def test_pretrained_of_another_architecture_names_first_key(tmp_path):
    enc = make("enc").state_dict()
    with pytest.raises(UserError) as err:
        load_pretrained_weights(make("bot"), {"network_weights": enc}, "enc.pth")
    message = err.value.message
    first = compare_weights(make("bot").state_dict(), enc, skip=lambda k: ".seg_layers." in k).first_mismatch()
    assert first and first in message and "enc.pth" in message
    assert "tensor(" not in message


def test_pretrained_with_other_class_count_loads_all_but_heads():
    donor, net = make("bot", num_classes=5), make("bot", num_classes=3)
    fresh_heads = {k: v.clone() for k, v in net.state_dict().items() if ".seg_layers." in k}
    skipped = load_pretrained_weights(net, {"network_weights": donor.state_dict()}, "donor.pth")
    assert sorted(skipped) == sorted(fresh_heads)
    for key, value in net.state_dict().items():
        expected = fresh_heads[key] if key in fresh_heads else donor.state_dict()[key]
        assert torch.equal(value, expected), key
