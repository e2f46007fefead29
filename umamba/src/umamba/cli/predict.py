"""`umamba predict`: segment images with a trained U-Mamba model folder or a model from the store."""

from __future__ import annotations

import argparse

from umamba.paths import default_model_store
from umamba.progress import Reporter
from umamba.remote import add_remote_arguments

FAST_STEP_SIZE = 0.75      # --fast: the sliding-window step (nnU-Net's default is 0.5)


def sliding_window_settings(args: argparse.Namespace) -> tuple[float, bool]:
    """(step size, mirroring) from --fast / --step-size / --disable-tta: --fast turns mirroring off and sets the
    step to FAST_STEP_SIZE unless --step-size is given too."""
    step = args.step_size if args.step_size is not None else (FAST_STEP_SIZE if args.fast else 0.5)
    return step, not (args.disable_tta or args.fast)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="INPUT",
                        help="an image file, the channel files of one case in channel order, or a folder in "
                             "nnU-Net layout (CASE_0000.nii.gz, CASE_0001.nii.gz, ...)")
    parser.add_argument("-o", "--output", required=True,
                        help="the label file (one case) or a folder (one CASE<ending> per case)")
    parser.add_argument("-m", "--model", required=True, metavar="MODEL_DIR",
                        help="an nnU-Net model folder (dataset.json, plans.json, fold_X/) or a name from "
                             "`umamba models` (with --server: a model on the server)")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to ensemble (default: every numbered fold with a checkpoint, else 'all')")
    parser.add_argument("--disable-tta", "--disable_tta", action="store_true", dest="disable_tta",
                        help="no mirroring test-time augmentation (about 8x faster in 3D)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--step-size", type=float, default=None,
                        help="sliding-window step as a fraction of the patch size (default 0.5; "
                             f"{FAST_STEP_SIZE} with --fast)")
    parser.add_argument("--fast", action="store_true",
                        help=f"faster, slightly less accurate: no mirroring test-time augmentation and step size "
                             f"{FAST_STEP_SIZE} instead of 0.5 (fewer, less overlapping windows); README.md gives "
                             "its measured time and Dice change")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"],
                        help="CPU only: auto = float32; bf16 = bfloat16 convolutions, about 2x faster, only on CPUs "
                             "with native bf16 (AVX512-BF16/AMX); labels may differ slightly (the Mamba layers "
                             "always run in float32)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: every core available; more than that is clamped)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth",
                        help="checkpoint file name inside each fold folder")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow checkpoints that contain arbitrary pickled objects (runs their code: only for "
                             "files from a source you trust)")
    parser.add_argument("--memory-limit-gb", type=float, default=None, metavar="GB",
                        help="refuse to start when the estimated memory exceeds this (default: the free memory; "
                             "also UMAMBA_MEMORY_LIMIT_GB)")
    parser.add_argument("--store", default=None, help=f"model store folder (default {default_model_store()})")
    add_remote_arguments(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    if args.server:  # before anything that imports torch: a client machine may have none
        from umamba.remote.jobs import predict as remote_predict

        return remote_predict(args, reporter)
    from umamba.model_store import channel_names, inspect_model_folder, resolve_model
    from umamba.nnunet.predict_inputs import (check_case_images, check_endings, check_output_locations,
                                              check_outputs, resolve_cases)

    from umamba.errors import UserError

    # Everything that can be checked without torch is checked first, so bad input fails in a second.
    step_size, use_mirroring = sliding_window_settings(args)
    if not 0 < step_size <= 1:
        raise UserError(f"--step-size must be in (0, 1], got {step_size}", "0.5 is nnU-Net's default")
    model_dir = resolve_model(args.model, args.store or default_model_store())
    folder = inspect_model_folder(model_dir, args.checkpoint)
    cases = resolve_cases(args.input, args.output, channel_names(folder.dataset_json))
    check_outputs(cases)
    check_output_locations(cases)
    for case in cases:
        check_case_images(case)
    from umamba.devices import pick_device
    from umamba.memory import check_prediction_memory

    device = pick_device(args.device)  # `--device cuda` without CUDA fails here, before the model loads
    check_prediction_memory(model_dir, folder, cases, device, reporter, args.memory_limit_gb)
    reporter.stage("load", f"loading model {model_dir}")
    from umamba.nnunet.predictor import load_predictor, predict_cases

    loaded = load_predictor(model_dir, folds=args.folds, checkpoint_name=args.checkpoint, device=args.device,
                            step_size=step_size, use_mirroring=use_mirroring,
                            trust_checkpoint=args.trust_checkpoint, precision=args.precision,
                            threads=args.threads)
    check_endings(cases, loaded.supported_endings)
    reporter.stage("predict", f"predicting {len(cases)} case(s) with {loaded.trainer} {loaded.configuration}, "
                              f"fold(s) {', '.join(loaded.folds)} on {loaded.predictor.device}")
    outputs = predict_cases(loaded, cases, reporter)
    reporter.done([str(o) for o in outputs], cases=[c.case_id for c in cases], model=str(model_dir),
                  trainer=loaded.trainer, configuration=loaded.configuration, folds=loaded.folds)
    return 0
