"""The real spinal-cord MRI dataset (../shared/data/Dataset503_SpinalCord): plan, brief 2d training on CPU,
prediction of its imagesTs with the trained model (geometry of every output equals its input's)."""

from __future__ import annotations

import shutil

import pytest
import SimpleITK as sitk

from conftest import run_umamba
from umamba.progress import parse_event

pytestmark = pytest.mark.shared_data


def test_spinal_cord_plans_trains_and_predicts(shared_data, tmp_path):
    source = shared_data / "Dataset503_SpinalCord"
    if not source.is_dir():
        pytest.skip(f"{source} is not present")
    raw = tmp_path / "nnUNet_raw" / source.name
    shutil.copytree(source, raw)

    plan = run_umamba(["plan", "503", "-c", "2d", "--progress-json"], tmp_path)
    assert plan.returncode == 0, plan.stderr[-4000:]
    assert parse_event(plan.stdout.splitlines()[-1])["configurations"] == ["2d"]

    train = run_umamba(["train", "Dataset503_SpinalCord", "2d", "all", "-tr", "bot", "--epochs", "1",
                        "--iterations-per-epoch", "2", "--val-iterations", "1", "--no-final-validation",
                        "--device", "cpu", "--progress-json"], tmp_path)
    assert train.returncode == 0, train.stderr[-4000:]
    events = [e for e in map(parse_event, train.stdout.splitlines()) if e]
    (epoch_end,) = [e for e in events if e["event"] == "epoch_end"]
    assert epoch_end["labels"] == ["spinal_cord"] and isinstance(epoch_end["train_loss"], float)
    model = events[-1]["model_folder"]
    assert (tmp_path / "nnUNet_results").as_posix() in model

    out = tmp_path / "pred"
    predict = run_umamba(["predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-m", model, "--disable-tta",
                          "--step-size", "1.0", "--device", "cpu"], tmp_path)
    assert predict.returncode == 0, predict.stderr[-4000:]
    images = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))
    assert len(images) == 2
    for image_file in images:
        image = sitk.ReadImage(str(image_file))
        label = sitk.ReadImage(str(out / image_file.name.replace("_0000.nii.gz", ".nii.gz")))
        assert label.GetSize() == image.GetSize()
        assert label.GetSpacing() == pytest.approx(image.GetSpacing(), rel=1e-5)
        assert label.GetOrigin() == pytest.approx(image.GetOrigin(), abs=1e-3)
        assert label.GetDirection() == pytest.approx(image.GetDirection(), abs=1e-5)
