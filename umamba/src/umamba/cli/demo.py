"""`umamba demo`: the whole job on a SYNTHETIC phantom, small enough for a 2-core CPU in a few minutes.

Builds a phantom dataset (umamba.synthetic), plans and preprocesses it, trains U-Mamba Bot briefly (the same code
path as `umamba plan` / `umamba train`), segments a held-out volume with `umamba predict`'s code path, prints its
Dice and writes the label file plus a PNG overlay. Everything lives under --output (a workspace of its own, so
the user's nnU-Net folders are never touched).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from umamba.progress import Reporter

DATASET_ID = 987
DATASET_NAME = "DemoPhantom"


@dataclass(frozen=True)
class DemoSize:
    n_train: int
    shape: tuple[int, int, int]
    epochs: int
    iterations_per_epoch: int
    val_iterations: int


FULL = DemoSize(n_train=4, shape=(24, 32, 32), epochs=2, iterations_per_epoch=10, val_iterations=1)
QUICK = DemoSize(n_train=3, shape=(24, 32, 32), epochs=1, iterations_per_epoch=2, val_iterations=1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo_output", metavar="DIR",
                        help="folder for the demo's workspace, label file and PNG (default ./demo_output)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--quick", action="store_true",
                        help="a few iterations only: checks the pipeline, the Dice will be poor")
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {FULL.epochs})")
    parser.add_argument("--iterations-per-epoch", type=int, default=None,
                        help=f"training iterations per epoch (default {FULL.iterations_per_epoch})")


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    started = time.time()
    size = QUICK if args.quick else FULL
    epochs = args.epochs or size.epochs
    iterations = args.iterations_per_epoch or size.iterations_per_epoch
    out = Path(args.output).expanduser().resolve()
    workspace_root = out / "workspace"
    reporter.stage("demo", f"umamba demo: SYNTHETIC phantom data (ellipsoids in noise, not real images), "
                           f"output in {out}")

    from umamba.paths import Workspace

    workspace = Workspace(workspace_root / "nnUNet_raw", workspace_root / "nnUNet_preprocessed",
                          workspace_root / "nnUNet_results")
    workspace.export_to_environment()  # before nnunetv2 is imported: the demo never touches the user's folders
    for stale in (workspace.preprocessed, workspace.results):  # a previous demo run: start clean
        shutil.rmtree(stale, ignore_errors=True)
        stale.mkdir(parents=True)

    from umamba.synthetic import make_phantom_dataset

    reporter.stage("data", f"building a SYNTHETIC phantom dataset: {size.n_train} training + 1 held-out volume "
                           f"of {size.shape[0]}x{size.shape[1]}x{size.shape[2]} voxels")
    raw_folder = make_phantom_dataset(workspace.raw, DATASET_ID, DATASET_NAME, n_cases=size.n_train,
                                      shape=size.shape, n_test=1, seed=7, spacing=(1.5, 1.0, 1.0), overwrite=True)

    from umamba.nnunet.planning import plan_dataset

    plan_dataset(str(DATASET_ID), workspace.raw, workspace.preprocessed, configurations=("3d_fullres",),
                 num_processes=1, reporter=reporter)

    from umamba.devices import pick_device
    from umamba.nnunet.runner import TrainRequest, train

    device = pick_device(args.device)
    reporter.stage("train", f"training U-Mamba Bot 3d_fullres for {epochs} epoch(s) x {iterations} iteration(s) "
                            f"on {device}")
    request = TrainRequest(dataset=str(DATASET_ID), configuration="3d_fullres", fold="all", trainer="bot",
                           epochs=epochs, iterations_per_epoch=iterations, val_iterations=size.val_iterations,
                           device=device, final_validation=False)
    model_folder = train(request, workspace.preprocessed, reporter)

    from umamba.nnunet.predict_inputs import resolve_cases
    from umamba.nnunet.predictor import load_predictor, predict_cases

    test_image = sorted((raw_folder / "imagesTs").glob("*_0000.nii.gz"))[0]
    truth_file = raw_folder / "labelsTs" / test_image.name.replace("_0000.nii.gz", ".nii.gz")
    label_file = out / "prediction.nii.gz"
    reporter.stage("predict", f"segmenting the held-out volume {test_image.name}")
    loaded = load_predictor(model_folder, folds=["all"], device=device, use_mirroring=False)
    cases = resolve_cases([str(test_image)], str(label_file), loaded.channels, loaded.supported_endings)
    predict_cases(loaded, cases, reporter)

    import SimpleITK as sitk

    from umamba.nnunet.predict_overlay import dice, write_overlay_png

    image = sitk.ReadImage(str(test_image))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(truth_file)))
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(label_file)))
    score = dice(prediction, truth)
    spacing_zyx = tuple(reversed(image.GetSpacing()))
    png = write_overlay_png(sitk.GetArrayFromImage(image), truth, prediction, spacing_zyx, out / "overlay.png",
                            f"umamba demo on a SYNTHETIC phantom - held-out volume, Dice {score:.3f} "
                            f"({epochs} epochs x {iterations} iterations)")
    elapsed = time.time() - started
    summary = {"dice": round(score, 4), "synthetic": True, "epochs": epochs, "iterations_per_epoch": iterations,
               "device": device, "seconds": round(elapsed, 1), "model_folder": str(model_folder),
               "label_file": str(label_file), "overlay_png": str(png)}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    reporter.log(f"Dice on the held-out SYNTHETIC volume: {score:.3f} (label file {label_file}, "
                 f"overlay {png}, {elapsed:.0f} s)")
    reporter.done([str(label_file), str(png)], **summary)
    return 0
