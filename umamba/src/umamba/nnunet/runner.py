"""`umamba train`: instantiate our trainer classes ourselves and drive nnU-Net's training loop.

Mirrors nnU-Net's run_training (continue / pretrained weights / final validation / DDP via its setup_ddp) but never
looks trainers up by name inside nnunetv2, so nothing has to be installed into nnU-Net's package.

Call `prepare_process(device)` before nnunetv2 is first imported: nnU-Net reads its worker counts at import.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from umamba.devices import pick_device
from umamba.errors import UserError
from umamba.nnunet import compat
from umamba.nnunet.datasets import find_dataset_folder
from umamba.nnunet.plans_check import check_plan_names
from umamba.nnunet.process_safety import die_with, die_with_parent
from umamba.nnunet.trainer_names import TRAINER_ALIASES, TRAINER_NAMES, model_folder_name
from umamba.progress import Reporter

SETTINGS_FILE = "umamba_train_settings.json"


@dataclass
class TrainRequest:
    dataset: str
    configuration: str
    fold: str
    trainer: str = "bot"
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations: int | None = None
    continue_training: bool = False
    device: str | None = None
    pretrained: str | None = None
    trust_checkpoint: bool = False
    num_gpus: int = 1
    compile: bool = False
    final_validation: bool = True
    plans: str = "nnUNetPlans"
    memory_limit_gb: float | None = None
    trainer_class: type | None = None  # a subclass of one of ours (or of nnUNetTrainer) to run instead: benchmarks


def resolve_trainer_name(name: str) -> str:
    key = name.strip()
    if key.lower() in TRAINER_ALIASES:
        return TRAINER_ALIASES[key.lower()]
    if key in TRAINER_NAMES:
        return key
    raise UserError(f"unknown trainer {name!r}",
                    f"use one of {', '.join(TRAINER_ALIASES)} or a full name: {', '.join(TRAINER_NAMES)}")


def parse_fold(fold) -> int | str:
    text = str(fold).strip()
    if text == "all":
        return "all"
    if text.isdigit():
        return int(text)
    raise UserError(f"fold must be 'all' or a number (0-4 for nnU-Net's 5-fold split), got {fold!r}")


def prepare_process(device: str) -> None:
    """Worker counts and thread settings for this device, set before nnunetv2 is imported."""
    cpus = os.cpu_count() or 2
    if device != "cuda":
        # nnU-Net sizes its augmentation workers for GPU servers (12 per GPU); on CPU they compete with training.
        os.environ.setdefault("nnUNet_n_proc_DA", str(max(0, min(2, cpus // 2 - 1))))
        os.environ.setdefault("nnUNet_def_n_proc", str(max(1, min(4, cpus // 2))))
    die_with_parent()


def check_request(req: TrainRequest) -> None:
    if req.epochs is not None and req.epochs < 1:
        raise UserError("--epochs must be at least 1")
    for name in ("iterations_per_epoch", "val_iterations"):
        value = getattr(req, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if req.continue_training and req.pretrained:
        raise UserError("--continue and --pretrained cannot be combined",
                        "pretrained weights only initialise a new training; --continue resumes an existing one")
    if req.pretrained and not Path(req.pretrained).is_file():
        raise UserError(f"pretrained checkpoint {req.pretrained} does not exist")
    if req.num_gpus < 1:
        raise UserError("--num-gpus must be at least 1")
    if req.num_gpus > 1:
        if req.device not in (None, "cuda"):
            raise UserError(f"--num-gpus {req.num_gpus} needs CUDA GPUs, but --device {req.device} was given",
                            "multi-GPU training uses nnU-Net's DDP path, which only runs on CUDA")
        import torch

        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available < req.num_gpus:
            raise UserError(f"--num-gpus {req.num_gpus} needs {req.num_gpus} CUDA GPUs, but torch sees {available}",
                            "lower --num-gpus, or run on a machine with more GPUs (CUDA_VISIBLE_DEVICES selects them)")


def _load_plans(preprocessed_root: Path, req: TrainRequest) -> tuple[Path, dict, dict]:
    folder = find_dataset_folder(preprocessed_root, req.dataset, "nnUNet_preprocessed",
                                 f"plan it first: umamba plan {req.dataset}")
    plans_file = folder / f"{req.plans}.json"
    if not plans_file.is_file():
        raise UserError(f"{plans_file} does not exist", f"plan the dataset first: umamba plan {req.dataset}")
    plans = json.loads(plans_file.read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    configs = plans.get("configurations", {})
    if req.configuration not in configs:
        raise UserError(f"configuration {req.configuration!r} is not in {plans_file.name} "
                        f"(available: {', '.join(configs)})", "choose one of the available configurations")
    data_identifier = configs[req.configuration].get("data_identifier") or f"{req.plans}_{req.configuration}"
    if not (folder / data_identifier).is_dir():
        raise UserError(f"configuration {req.configuration} of {folder.name} is planned but not preprocessed",
                        f"run: umamba plan {folder.name} -c {req.configuration}")
    fold = parse_fold(req.fold)
    n_cases = len(list((folder / data_identifier).glob("*.pkl")))
    if fold != "all" and not (folder / "splits_final.json").is_file() and n_cases < 5:
        raise UserError(f"fold {fold} needs nnU-Net's 5-fold split, which needs at least 5 training cases; "
                        f"{folder.name} has {n_cases}",
                        "train fold 'all' (all cases, validation on the training cases) or write your own "
                        f"{folder / 'splits_final.json'}")
    return folder, plans, dataset_json


def check_training_memory(req: TrainRequest, preprocessed_root: Path, device: str, reporter: Reporter | None):
    """The memory one training step needs vs what the device has free: refused before anything is built."""
    from umamba.memory import check_memory, estimate_training
    from umamba.nets.plan_spec import resolve_configuration, spec_from_plans

    _folder, plans, dataset_json = _load_plans(preprocessed_root, req)
    config = resolve_configuration(plans, req.configuration)
    spec = spec_from_plans(plans, req.configuration)
    variant = "enc" if "Enc" in resolve_trainer_name(req.trainer) else "bot"
    labels = dataset_json.get("labels", {})
    estimate = estimate_training(spec, variant, config["patch_size"], int(config.get("batch_size", 2)),
                                 len(dataset_json.get("channel_names") or dataset_json.get("modality") or {}) or 1,
                                 max(len(labels), 2), device)
    return check_memory(estimate, reporter, req.memory_limit_gb)


def _settings(output_folder: Path) -> dict:
    try:
        return json.loads((output_folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_settings(output_folder: Path, settings: dict) -> None:
    output_folder.mkdir(parents=True, exist_ok=True)
    tmp = output_folder / f".{SETTINGS_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(settings, indent=2))
    os.replace(tmp, output_folder / SETTINGS_FILE)


def build_trainer(req: TrainRequest, preprocessed_root: Path, device: str, reporter: Reporter | None):
    """Our trainer instance, configured from the request (and, with --continue, the run's saved settings)."""
    import torch

    from umamba.nnunet.trainers import TRAINER_CLASSES

    _folder, plans, dataset_json = _load_plans(preprocessed_root, req)
    cls = req.trainer_class or TRAINER_CLASSES[resolve_trainer_name(req.trainer)]
    torch_device = torch.device(device)
    with contextlib.redirect_stdout(sys.stderr):
        trainer = cls(plans=compat.trainer_plans(plans, req.continue_training), configuration=req.configuration,
                      fold=parse_fold(req.fold), dataset_json=dataset_json, device=torch_device)
    trainer.reporter = reporter
    trainer.trust_checkpoint = req.trust_checkpoint
    saved = _settings(Path(trainer.output_folder)) if req.continue_training else {}
    epochs = req.epochs or saved.get("epochs") or trainer.num_epochs
    iterations = req.iterations_per_epoch or saved.get("iterations_per_epoch") or trainer.num_iterations_per_epoch
    val_iterations = req.val_iterations or saved.get("val_iterations") or trainer.num_val_iterations_per_epoch
    trainer.num_epochs, trainer.num_iterations_per_epoch = int(epochs), int(iterations)
    trainer.num_val_iterations_per_epoch = int(val_iterations)
    return trainer


def _existing_checkpoint(output_folder: Path) -> Path | None:
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"):
        if (output_folder / name).is_file():
            return output_folder / name
    return None


def _remove_orphaned_temporaries(output_folder: Path) -> None:
    """Checkpoint temporaries of a killed run (checkpoint_*.pth.tmp-PID whose process is gone)."""
    for tmp in output_folder.glob("checkpoint_*.pth.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and int(pid) != os.getpid():
            tmp.unlink(missing_ok=True)


def _train_one_process(req: TrainRequest, preprocessed_root: Path, device: str, reporter: Reporter | None,
                       rank: int = 0) -> Path:
    model_folder = _model_folder(req, preprocessed_root)
    created = not model_folder.exists()
    try:
        return _train(req, preprocessed_root, device, reporter, rank)
    except BaseException:
        # a run that failed before its first checkpoint leaves no model folder behind (a later run would find it
        # and look half-trained); folders that hold a checkpoint are kept for --continue
        if rank == 0 and created and model_folder.is_dir() and not any(model_folder.rglob("checkpoint_*.pth")):
            shutil.rmtree(model_folder, ignore_errors=True)
        raise


def _model_folder(req: TrainRequest, preprocessed_root: Path) -> Path:
    folder, plans, _ = _load_plans(preprocessed_root, req)
    return Path(os.environ["nnUNet_results"]) / folder.name / trainer_folder_name(req, plans)


def _train(req: TrainRequest, preprocessed_root: Path, device: str, reporter: Reporter | None, rank: int) -> Path:
    import torch

    trainer = build_trainer(req, preprocessed_root, device, reporter)
    output_folder = Path(trainer.output_folder)
    cont = req.continue_training
    if cont:
        ckpt = _existing_checkpoint(output_folder)
        if ckpt is None:
            if reporter:
                reporter.log(f"--continue: no checkpoint in {output_folder}; starting a new training",
                             level="warning")
            cont = False
        elif reporter:
            reporter.log(f"continuing from {ckpt}")
    if rank == 0:
        if sys.platform.startswith("linux"):
            _remove_orphaned_temporaries(output_folder)
        _write_settings(output_folder, {"trainer": type(trainer).__name__, "epochs": trainer.num_epochs,
                                        "iterations_per_epoch": trainer.num_iterations_per_epoch,
                                        "val_iterations": trainer.num_val_iterations_per_epoch})
    if device == "cpu":
        # a CPU DDP run's processes share the cores: more threads than cores only makes them wait for each other
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // req.num_gpus))
    with contextlib.redirect_stdout(sys.stderr):
        # Not nnU-Net's maybe_load_checkpoint: its torch.load runs pickled code (umamba.checkpoint does not).
        if cont:
            trainer.load_checkpoint(str(ckpt))
        elif req.pretrained:
            skipped = trainer.load_pretrained(req.pretrained)
            if reporter:
                reporter.log(f"pretrained weights from {req.pretrained}; segmentation heads not loaded (nnU-Net's "
                             f"rule, the number of classes may differ): {', '.join(skipped) or 'none'}")
        if torch.cuda.is_available() and device == "cuda":
            torch.backends.cudnn.deterministic = False
            torch.backends.cudnn.benchmark = True
        if reporter:
            reporter.stage("train", f"training {type(trainer).__name__} {req.configuration} fold {req.fold} on "
                                    f"{device}: epochs {trainer.current_epoch + 1}..{trainer.num_epochs} of "
                                    f"{trainer.num_iterations_per_epoch} iterations")
        trainer.run_training()
        if req.final_validation:
            if reporter:
                reporter.stage("validation", "final validation: sliding-window prediction of the validation cases")
            trainer.perform_actual_validation(False)
    return Path(trainer.output_folder_base)


# -- multi-GPU: nnU-Net's DDP path (its setup_ddp/cleanup_ddp and the trainer's DDP code), our trainer classes ---
class _QueueReporter(Reporter):
    """Rank 0's reporter in a DDP worker: events travel to the parent, which writes them."""

    def __init__(self, queue):
        super().__init__(json_mode=True, stream=sys.stderr)
        self._queue = queue

    def emit(self, event, **fields):
        self._queue.put((event, fields))


def _ddp_worker(rank: int, req_dict: dict, preprocessed_root: str, world_size: int, queue,
                device: str = "cuda", parent_pid: int | None = None) -> None:
    import torch
    import torch.distributed as dist

    from nnunetv2.run.run_training import cleanup_ddp, setup_ddp

    if parent_pid is not None:
        die_with(parent_pid)  # a killed `umamba train` must not leave its ranks training (and holding the GPUs)
    die_with_parent()  # this worker's own augmentation workers must not outlive it
    if device == "cuda":
        setup_ddp(rank, world_size)  # nnU-Net's: NCCL
        torch.cuda.set_device(torch.device("cuda", dist.get_rank()))
    else:
        # nnUNetTrainer moves a DDP run to CUDA itself (its __init__ and initialize); a CPU process group is only
        # usable with a trainer class that keeps the CPU (the tests of this DDP plumbing)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    reporter = _QueueReporter(queue) if rank == 0 else None
    try:
        _train_one_process(TrainRequest(**req_dict), Path(preprocessed_root), device, reporter, rank)
    finally:
        cleanup_ddp()


def trainer_folder_name(req: TrainRequest, plans: dict) -> str:
    """The model folder's name (TRAINER__PLANS__CONFIGURATION), which nnU-Net derives from the trainer class."""
    name = req.trainer_class.__name__ if req.trainer_class else resolve_trainer_name(req.trainer)
    return model_folder_name(name, plans.get("plans_name", req.plans), req.configuration)


def _train_ddp(req: TrainRequest, preprocessed_root: Path, reporter: Reporter, device: str = "cuda") -> Path:
    import torch.multiprocessing as mp

    from nnunetv2.run.run_training import find_free_network_port

    os.environ["MASTER_ADDR"] = "localhost"
    os.environ.setdefault("MASTER_PORT", str(find_free_network_port()))
    queue = mp.get_context("spawn").SimpleQueue()

    def forward_events():
        while True:
            item = queue.get()
            if item is None:
                return
            reporter.emit(item[0], **item[1])

    forwarder = threading.Thread(target=forward_events, daemon=True)
    forwarder.start()
    try:
        mp.spawn(_ddp_worker, args=(asdict(req), str(preprocessed_root), req.num_gpus, queue, device, os.getpid()),
                 nprocs=req.num_gpus, join=True)
    finally:
        queue.put(None)
        forwarder.join(timeout=10)
    return _model_folder(req, preprocessed_root)


def train(req: TrainRequest, preprocessed_root: Path, reporter: Reporter) -> Path:
    """Run one training; returns the model folder (with dataset.json, plans.json, fold_X/checkpoint_*.pth)."""
    compat.require_supported_nnunet()
    check_request(req)
    resolve_trainer_name(req.trainer)
    folder, plans, _ = _load_plans(preprocessed_root, req)  # dataset, configuration and fold problems, first
    check_plan_names(plans, req.configuration, folder / f"{req.plans}.json")
    device = pick_device(req.device if req.num_gpus == 1 else "cuda")
    check_training_memory(req, preprocessed_root, device, reporter)
    if req.compile:
        os.environ["nnUNet_compile"] = "1"
    prepare_process(device)
    if req.num_gpus > 1:
        return _train_ddp(req, preprocessed_root, reporter)
    return _train_one_process(req, preprocessed_root, device, reporter)
