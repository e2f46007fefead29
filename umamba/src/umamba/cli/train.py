"""umamba train DATASET CONFIG FOLD -tr {bot,enc,bot-noamp,enc-noamp,FULL_NAME} [options]

Trains a U-Mamba model on a planned dataset (see `umamba plan`) with nnU-Net's training loop. The model folder
(dataset.json, plans.json, fold_X/checkpoint_final.pth) lands in nnUNet_results, as with nnUNetv2_train.
"""

from __future__ import annotations

import argparse

from umamba.paths import default_model_store, resolve_workspace
from umamba.remote import add_remote_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", nargs="?", help="dataset id or name (planned with umamba plan)")
    parser.add_argument("configuration", metavar="CONFIG", nargs="?", help="2d, 3d_fullres, ...")
    parser.add_argument("fold", metavar="FOLD", nargs="?", help="0-4 (nnU-Net's 5-fold split) or 'all'")
    parser.add_argument("-tr", "--trainer", default="bot", metavar="TRAINER",
                        help="bot, enc, bot-noamp, enc-noamp, or a full trainer class name (default: bot)")
    parser.add_argument("--epochs", type=int, default=None, metavar="N", help="number of epochs (nnU-Net: 1000)")
    parser.add_argument("--iterations-per-epoch", type=int, default=None, metavar="K",
                        help="training iterations per epoch (nnU-Net: 250)")
    parser.add_argument("--val-iterations", type=int, default=None, metavar="K",
                        help="validation iterations per epoch for the pseudo Dice (nnU-Net: 50)")
    parser.add_argument("--continue", dest="continue_training", action="store_true",
                        help="resume from the fold's last checkpoint (epochs and iterations as before unless given)")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="cpu, cuda or mps (default: cuda if available, else mps, else cpu)")
    parser.add_argument("--pretrained", default=None, metavar="CKPT",
                        help="initialise the network from this checkpoint (nnU-Net's -pretrained_weights)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load --pretrained / --continue checkpoints that need more than plain weights to unpickle "
                             "(this can run code stored in the file: only for files you trust)")
    parser.add_argument("--num-gpus", type=int, default=1, metavar="N",
                        help="train on N CUDA GPUs with nnU-Net's DDP (default 1)")
    parser.add_argument("--compile", action="store_true",
                        help="use torch.compile (off by default; also nnUNet_compile=1)")
    parser.add_argument("--no-final-validation", dest="final_validation", action="store_false",
                        help="skip nnU-Net's sliding-window validation after training")
    parser.add_argument("--memory-limit-gb", type=float, default=None, metavar="GB",
                        help="refuse to start when the estimated memory of a training step exceeds this (default: "
                             "the free memory of the device; also UMAMBA_MEMORY_LIMIT_GB)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("--workspace", default=None, metavar="DIR",
                        help="folder holding nnUNet_raw, nnUNet_preprocessed, nnUNet_results (when given, it is used even "
                             "if the nnUNet_* environment variables are set; without it: those variables when all "
                             "three are set, else a per-user folder)")
    parser.add_argument("--print-ext-trainer-path", action="store_true",
                        help="print the folder to put into nnUNet_extTrainer for stock nnUNetv2_train (>= 2.8) "
                             "and exit")
    add_remote_arguments(parser)
    parser.add_argument("--store", default=None,
                        help=f"with --server: the local model store that receives the trained model (default "
                             f"{default_model_store()}); DATASET may then also be a dataset folder")


def run(args: argparse.Namespace, reporter) -> int:
    from umamba.errors import UserError
    from umamba.nnunet.compat import EXT_TRAINER_DIR

    if args.server:  # before anything that imports torch: a client machine may have none
        from umamba.remote.jobs import train as remote_train

        return remote_train(args, reporter)
    if args.print_ext_trainer_path:
        print(EXT_TRAINER_DIR)
        return 0
    missing = [n for n in ("dataset", "configuration", "fold") if getattr(args, n) is None]
    if missing:
        raise UserError(f"missing argument(s): {' '.join(m.upper() for m in missing)}",
                        "usage: umamba train DATASET CONFIG FOLD -tr bot (e.g. umamba train 4 3d_fullres all)")
    from umamba.cli.watched import is_watched_child, run_watched

    if getattr(args, "argv", None) and not is_watched_child():
        return run_watched(args.argv, reporter, "training")  # its end is reported even if the system kills it
    workspace = resolve_workspace(args.workspace)
    workspace.export_to_environment()  # before nnunetv2 is imported

    from umamba.nnunet.runner import TrainRequest, train

    request = TrainRequest(dataset=args.dataset, configuration=args.configuration, fold=args.fold,
                           trainer=args.trainer, epochs=args.epochs, iterations_per_epoch=args.iterations_per_epoch,
                           val_iterations=args.val_iterations, continue_training=args.continue_training,
                           device=args.device, pretrained=args.pretrained,
                           trust_checkpoint=args.trust_checkpoint, num_gpus=args.num_gpus,
                           compile=args.compile, final_validation=args.final_validation, plans=args.plans,
                           memory_limit_gb=args.memory_limit_gb)
    model_folder = train(request, workspace.preprocessed, reporter)
    fold_dir = model_folder / f"fold_{request.fold}"
    final = fold_dir / "checkpoint_final.pth"
    reporter.done([str(model_folder)], model_folder=str(model_folder),
                  checkpoint=str(final) if final.is_file() else None, fold=str(request.fold),
                  configuration=request.configuration)
    return 0
