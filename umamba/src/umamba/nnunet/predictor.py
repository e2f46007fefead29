"""Inference with nnU-Net's own predictor, initialised with our U-Mamba network.

`load_predictor` validates a model folder, loads its checkpoints safely (umamba.checkpoint), builds the network
named by the checkpoint's `trainer_name` from the plans (old or current plans format), loads the weights strictly
and hands everything to `nnUNetPredictor.manual_initialization`. `predict_cases` then runs one case at a time
(preprocess -> sliding window -> resample back -> write), in this process: no worker processes are started, so
none can outlive the command. Progress per case and per tile goes to a `Reporter`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from umamba.checkpoint import load_checkpoint
from umamba.devices import pick_device
from umamba.errors import UserError
from umamba.model_store import ModelFolder, channel_names, inspect_model_folder, trainer_variant
from umamba.nnunet.lean_export import segmentation_from_logits
from umamba.nnunet.plans_check import check_plan_names
from umamba.nnunet.predict_inputs import Case, check_case_images
from umamba.progress import Reporter

with contextlib.redirect_stdout(sys.stderr):  # nnunetv2.paths prints warnings about unset variables on import
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


class UMambaPredictor(nnUNetPredictor):
    """nnU-Net's predictor plus a callback after every sliding-window tile (all folds, mirrors included)."""

    def __init__(self, *args, on_tile: Callable[[int, int], None] | None = None, cpu_bf16: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_tile = on_tile
        self.cpu_bf16 = cpu_bf16    # bf16 autocast around the network on the CPU (nnU-Net autocasts only on CUDA)
        self.tiles_done = 0
        self.tiles_total = 0

    def reset_tile_count(self) -> None:
        self.tiles_done = self.tiles_total = 0

    def _internal_get_sliding_window_slicers(self, image_size):
        slicers = super()._internal_get_sliding_window_slicers(image_size)
        if self.tiles_total == 0:  # first fold of this case: every fold walks the same tiles
            self.tiles_total = len(slicers) * max(len(self.list_of_parameters or []), 1)
        return slicers

    def _internal_maybe_mirror_and_predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.cpu_bf16 and x.device.type == "cpu":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                prediction = super()._internal_maybe_mirror_and_predict(x).float()
        else:
            prediction = super()._internal_maybe_mirror_and_predict(x)
        self.tiles_done += 1
        if self.on_tile is not None:
            # a retry on CPU after running out of device memory walks the tiles again: keep current <= total
            self.on_tile(min(self.tiles_done, self.tiles_total), self.tiles_total)
        return prediction


@dataclass
class LoadedModel:
    predictor: UMambaPredictor
    folder: ModelFolder
    trainer: str
    configuration: str
    folds: list[str]
    channels: list[str]
    supported_endings: list[str]


def _choose_folds(model: ModelFolder, folds: list[str] | None) -> list[str]:
    if not folds:
        numbered = [f for f in model.folds if f != "all"]
        return numbered or ["all"]
    folds = [str(f) for f in folds]
    missing = [f for f in folds if f not in model.checkpoints]
    if missing:
        raise UserError(f"{model.path} has no checkpoint for fold(s) {', '.join(missing)}",
                        f"folds with a checkpoint: {', '.join(model.folds)}")
    return folds


def load_weights_into(network: torch.nn.Module, weights: dict, source: Path) -> dict:
    """Strict load (clear messages, DDP/compile prefixes stripped); returns a copy of the state dict
    in the network's own key names, which is what nnU-Net's predictor reloads for each fold."""
    from umamba.nets import load_network_weights

    try:
        load_network_weights(network, weights)
    except UserError as exc:
        raise UserError(f"{source}: {exc.message}", exc.hint) from None
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def load_predictor(model_dir: str | os.PathLike, folds: list[str] | None = None,
                   checkpoint_name: str = "checkpoint_final.pth", device: str = "auto", step_size: float = 0.5,
                   use_mirroring: bool = True, trust_checkpoint: bool = False,
                   on_tile: Callable[[int, int], None] | None = None, precision: str = "auto",
                   threads: int | None = None) -> LoadedModel:
    """precision and threads apply to CPU inference (umamba.nnunet.cpu_speed): auto = float32, bf16 = bf16
    convolutions (native-bf16 CPUs only); threads default to every core available."""
    if not 0 < step_size <= 1:
        raise UserError(f"--step-size must be in (0, 1], got {step_size}", "0.5 is nnU-Net's default")
    model = inspect_model_folder(model_dir, checkpoint_name)
    use_folds = _choose_folds(model, folds)
    checkpoints = [load_checkpoint(Path(model.path) / f"fold_{f}" / checkpoint_name, trust=trust_checkpoint)
                   for f in use_folds]
    trainer = str(checkpoints[0].get("trainer_name") or model.trainer)
    variant = trainer_variant(trainer)
    if variant is None:
        raise UserError(f"{model.path} was trained with {trainer}, which is not a U-Mamba trainer",
                        "umamba predicts with models of nnUNetTrainerUMambaBot/Enc(NoAMP)")
    init_args = checkpoints[0].get("init_args") or {}
    configuration = str(init_args.get("configuration") or model.configuration)

    import json
    with open(Path(model.path) / "plans.json", encoding="utf-8") as f:
        plans = json.load(f)
    dataset_json = model.dataset_json
    plans_manager = PlansManager(plans)
    if configuration not in plans_manager.available_configurations:
        raise UserError(f"{model.path}/plans.json has no configuration '{configuration}'",
                        "the checkpoint and plans.json must come from the same training run")
    check_plan_names(plans, configuration, Path(model.path) / "plans.json")
    with contextlib.redirect_stdout(sys.stderr):  # the old-format conversion warns on stdout
        configuration_manager = plans_manager.get_configuration(configuration)
    if configuration_manager.previous_stage_name is not None:
        raise UserError(f"configuration {configuration} is a cascade stage", "umamba predicts single-stage models")
    num_inputs = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    label_manager = plans_manager.get_label_manager(dataset_json)

    from umamba.nets import build_network

    network = build_network(variant, plans, configuration, num_inputs, label_manager.num_segmentation_heads,
                            deep_supervision=False)
    parameters = [load_weights_into(network, c["network_weights"], model.path / f"fold_{f}" / checkpoint_name)
                  for c, f in zip(checkpoints, use_folds)]
    network.load_state_dict(parameters[0])
    mirror_axes = checkpoints[0].get("inference_allowed_mirroring_axes")

    dev = torch.device(pick_device(device))
    cpu_bf16 = False
    if dev.type == "cpu":
        from umamba.nnunet.cpu_speed import resolve_precision, set_threads

        cpu_bf16 = resolve_precision(precision) == "bf16"
        set_threads(threads)
    with contextlib.redirect_stdout(sys.stderr):  # "perform_everything_on_device ... only for cuda" on CPU
        predictor = UMambaPredictor(tile_step_size=step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                    perform_everything_on_device=dev.type == "cuda", device=dev, verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False, on_tile=on_tile,
                                    cpu_bf16=cpu_bf16)
        predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                        trainer, tuple(mirror_axes) if mirror_axes is not None else None)
    endings = list(plans_manager.image_reader_writer_class.supported_file_endings)
    return LoadedModel(predictor, model, trainer, configuration, use_folds, channel_names(dataset_json), endings)


def predict_cases(loaded: LoadedModel, cases: list[Case], reporter: Reporter) -> list[Path]:
    """Predict every case and write its label file atomically; returns the written paths."""
    for case in cases:  # header checks for all cases before the first (slow) prediction
        check_case_images(case)
    p = loaded.predictor
    preprocessor = p.configuration_manager.preprocessor_class(verbose=False)
    writer = p.plans_manager.image_reader_writer_class()
    written = []
    for i, case in enumerate(cases):
        reporter.progress("case", i, len(cases), case=case.case_id, message=f"case {case.case_id}: preprocessing")
        with contextlib.redirect_stdout(sys.stderr):
            data, _seg, properties = preprocessor.run_case([str(f) for f in case.files], None, p.plans_manager,
                                                           p.configuration_manager, p.dataset_json)
        p.reset_tile_count()
        p.on_tile = lambda cur, tot, cid=case.case_id: reporter.progress("tile", cur, tot, case=cid)
        with contextlib.redirect_stdout(sys.stderr):
            logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(np.ascontiguousarray(data))).cpu()
            del data
            segmentation = segmentation_from_logits(logits, p.plans_manager, p.configuration_manager,
                                                    p.label_manager, properties)
        del logits
        write_label_atomically(writer, segmentation, properties, case.output)
        written.append(case.output)
        reporter.progress("case", i + 1, len(cases), case=case.case_id, message=f"case {case.case_id}: written")
    return written


def write_label_atomically(writer, segmentation: np.ndarray, properties: dict, output: Path) -> None:
    """Write to a hidden file beside the target (same ending, so the writer picks the format), then rename."""
    from umamba.nnunet.predict_inputs import image_ending

    output.parent.mkdir(parents=True, exist_ok=True)
    ending = image_ending(output) or ""
    tmp = output.parent / f".{output.name[: len(output.name) - len(ending)]}.tmp-{uuid.uuid4().hex[:8]}{ending}"
    try:
        writer.write_seg(segmentation, str(tmp), properties)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
