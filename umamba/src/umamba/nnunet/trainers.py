"""U-Mamba trainers on stock nnU-Net v2 (2.6 to 2.8).

The class names are those of the original U-Mamba, because checkpoints record `trainer_name` and nnU-Net's
inference looks the trainer up by that name:
    nnUNetTrainerUMambaBot, nnUNetTrainerUMambaEnc, nnUNetTrainerUMambaBotNoAMP, nnUNetTrainerUMambaEncNoAMP

What they add to nnUNetTrainer:
- the U-Mamba network (`build_network_architecture` accepts every supported nnU-Net calling convention);
- torch.compile only when asked for (nnUNet_compile=1), not by default;
- AMP safety: a non-finite loss skips its optimizer step (under DDP on every rank when it is non-finite on any);
  after `max_nonfinite_amp_steps` such steps under AMP the rest of the run trains and validates in float32
  (logged as a warning);
- checkpoints written atomically (temporary file + os.replace) and after every epoch, so a killed run resumes
  with `--continue` from its last finished epoch;
- progress events (umamba.progress) when a reporter is attached;
- checkpoints (`--continue`) and pretrained weights read by umamba.checkpoint's loader, which runs no pickled code
  unless `trust_checkpoint` is set (nnU-Net's own loading calls `torch.load(weights_only=False)`), and checked by
  key and shape before anything is loaded.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
import torch.distributed as dist
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from umamba.checkpoint import compare_weights, load_checkpoint, load_pretrained_weights, strip_wrappers
from umamba.errors import UserError
from umamba.nnunet import compat
from umamba.nnunet.precision import Float32Guard, autocast_dtype, innermost_module
from umamba.nnunet.progress_hooks import TrainingEvents
from umamba.nnunet.trainer_names import TRAINER_NAMES

_GRAD_CLIP_NORM = 12.0  # nnU-Net's value


def build_umamba_network(variant: str, args: compat.BuildArguments, patch_size=None) -> torch.nn.Module:
    """The U-Mamba network for one normalised `build_network_architecture` call."""
    from umamba.nets import build_network_from_arch_kwargs, build_network_from_configuration

    if args.configuration_manager is not None:
        return build_network_from_configuration(variant, args.configuration_manager.configuration,
                                                args.num_input_channels, args.num_output_channels,
                                                args.deep_supervision)
    return build_network_from_arch_kwargs(variant, args.arch_kwargs, patch_size, args.num_input_channels,
                                          args.num_output_channels, args.deep_supervision)


class _NetworkBuilder:
    """`build_network_architecture` for U-Mamba trainers.

    Looked up on the class (nnU-Net's predictor) it is a plain function; looked up on a trainer (nnU-Net's
    `initialize`) it also knows that trainer's patch size, which nnU-Net 2.6's argument list lacks.
    The visible signature starts with `plans_manager`, so nnU-Net 2.7+ use their current convention.
    """

    def __get__(self, trainer, owner):
        variant = owner.network_variant
        patch_size = getattr(getattr(trainer, "configuration_manager", None), "patch_size", None)

        def build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                       num_output_channels, *legacy, enable_deep_supervision=None):
            args = compat.split_build_arguments(plans_manager, configuration_manager, num_input_channels,
                                                num_output_channels, legacy, enable_deep_supervision)
            return build_umamba_network(variant, args, patch_size)

        return build_network_architecture


class UMambaTrainerBase(nnUNetTrainer):
    """Shared behaviour; subclasses choose the network variant and whether AMP is allowed."""

    network_variant = "bot"
    amp_allowed = True
    max_nonfinite_amp_steps = 3
    trust_checkpoint = False  # --trust-checkpoint: allow checkpoints that need more than weights to unpickle
    build_network_architecture = _NetworkBuilder()

    # The parameter names must equal nnUNetTrainer's: it records its init arguments by these names.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 1  # checkpoint_latest after every epoch: --continue loses at most one epoch
        self.events = TrainingEvents()
        self.amp_active = self.amp_allowed and self.device.type == "cuda"
        self.amp_dtype = autocast_dtype(self.device.type)
        if not self.amp_active:
            self.grad_scaler = None
        self.nonfinite_amp_steps = 0
        self.skipped_steps = 0
        self._float32_guard = None
        self._iteration = 0

    # -- reporter ------------------------------------------------------------------------------------------------------
    @property
    def reporter(self):
        return self.events.reporter

    @reporter.setter
    def reporter(self, reporter) -> None:
        self.events.reporter = reporter

    def warn(self, message: str) -> None:
        self.print_to_log_file(f"WARNING: {message}")
        self.events.warning(message)

    # -- network and precision -----------------------------------------------------------------------------------------
    def _do_i_compile(self) -> bool:
        # nnU-Net >= 2.5 compiles by default; U-Mamba's scan does not benefit reliably, so only on request.
        if not compat.env_flag("nnUNet_compile"):
            return False
        return super()._do_i_compile()

    def initialize(self):
        super().initialize()
        if not self.amp_active:
            self._run_network_in_float32()

    def _run_network_in_float32(self) -> None:
        # Also covers nnU-Net's own autocast regions (validation step, final validation's predictor).
        if self._float32_guard is None and self.network is not None and self.device.type in ("cuda", "cpu"):
            self._float32_guard = Float32Guard(innermost_module(self.network))

    def _autocast(self):
        if self.amp_active:
            return torch.autocast(self.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def switch_to_float32(self, reason: str) -> None:
        self.amp_active = False
        self.grad_scaler = None
        self._run_network_in_float32()
        self.warn(f"{reason}; the rest of this run trains and validates in float32 (mixed precision off)")

    def _skip_nonfinite_step(self, what: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        where = f"epoch {self.current_epoch + 1}, iteration {self._iteration}"
        if self.amp_active:
            self.nonfinite_amp_steps += 1
            if self.nonfinite_amp_steps >= self.max_nonfinite_amp_steps:
                self.switch_to_float32(f"{self.nonfinite_amp_steps} steps with a non-finite {what} under "
                                       f"mixed precision")
            else:
                self.warn(f"non-finite {what} under mixed precision at {where}: optimizer step skipped "
                          f"({self.nonfinite_amp_steps}/{self.max_nonfinite_amp_steps} before float32)")
        elif self.skipped_steps <= 10 or self.skipped_steps % 100 == 0:
            self.warn(f"non-finite {what} in float32 at {where}: optimizer step skipped "
                      f"({self.skipped_steps} so far; check the images for NaN/inf or extreme values)")

    # -- training step -------------------------------------------------------------------------------------------------
    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._iteration = 0

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            target = [t.to(self.device, non_blocking=True) for t in target]
        else:
            target = target.to(self.device, non_blocking=True)
        self._iteration += 1

        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            output = self.network(data)
            loss = self.loss(output, target)
        loss_value = loss.detach().float().cpu().numpy()

        if not self._finite_on_every_rank(loss_value):
            self._skip_nonfinite_step("loss")
        elif self.grad_scaler is not None:
            # The scaler skips steps whose gradients overflowed in float16 and lowers its scale: normal AMP.
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), _GRAD_CLIP_NORM)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), _GRAD_CLIP_NORM)
            if torch.isfinite(norm):
                self.optimizer.step()
            else:
                self._skip_nonfinite_step("gradient")
        self.events.iteration_done(self._iteration, self.num_iterations_per_epoch, self.current_epoch + 1)
        return {"loss": loss_value}

    def _finite_on_every_rank(self, loss_value) -> bool:
        """Whether the loss is finite here and, under DDP, on every other rank too. All ranks must take the same
        branch: a rank that skipped its backward pass would leave the others waiting in DDP's gradient
        all-reduce forever (and the replicas' weights would drift apart)."""
        finite = bool(np.all(np.isfinite(loss_value)))
        if not self.is_ddp:
            return finite
        flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
        dist.all_reduce(flag)
        return flag.item() == 0

    def on_train_epoch_end(self, train_outputs: list[dict]):
        # Skipped (non-finite) steps do not count towards the epoch's mean loss.
        finite = [o for o in train_outputs if np.all(np.isfinite(o["loss"]))]
        super().on_train_epoch_end(finite or train_outputs)

    # -- epochs, checkpoints, events -----------------------------------------------------------------------------------
    def on_epoch_start(self):
        super().on_epoch_start()
        self.events.epoch_started()

    def on_epoch_end(self):
        self.events.epoch_finished(self)
        super().on_epoch_end()

    _RESUME_KEYS = ("network_weights", "optimizer_state", "logging", "_best_ema", "current_epoch", "init_args")

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """Resume from a checkpoint file (read safely) or dict; the weights are checked against this network first."""
        if isinstance(filename_or_checkpoint, dict):
            checkpoint, source = filename_or_checkpoint, "the checkpoint"
        else:
            source = str(filename_or_checkpoint)
            checkpoint = load_checkpoint(source, trust=self.trust_checkpoint, map_location=self.device)
        lacking = [k for k in self._RESUME_KEYS if k not in checkpoint]
        if lacking:
            raise UserError(f"cannot resume from {source}: it lacks {', '.join(lacking)}",
                            "resume from a checkpoint written by an nnU-Net trainer, or start a new training")
        if not self.was_initialized:
            self.initialize()
        comparison = compare_weights(innermost_module(self.network).state_dict(), checkpoint["network_weights"])
        if not comparison.fits:
            raise UserError(f"cannot resume from {source}: its network does not fit this one: "
                            f"{comparison.first_mismatch()} ({comparison.counts()} in all)",
                            "the checkpoint comes from another trainer, configuration or plans; start a new training "
                            "(without --continue) or use --pretrained")
        # nnU-Net's load_checkpoint(dict) fails in 2.8.1 (its `checkpoint` is only bound for a file name), and
        # for a file it calls torch.load(weights_only=False): the same steps as nnU-Net 2.6-2.8's, done here.
        innermost_module(self.network).load_state_dict(
            {strip_wrappers(k): v for k, v in checkpoint["network_weights"].items()})
        self.my_init_kwargs = checkpoint["init_args"]
        self.current_epoch = checkpoint["current_epoch"]
        self.logger.load_checkpoint(checkpoint["logging"])
        self._best_ema = checkpoint["_best_ema"]
        self.inference_allowed_mirroring_axes = checkpoint.get("inference_allowed_mirroring_axes",
                                                               self.inference_allowed_mirroring_axes)
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        if self.grad_scaler is not None and checkpoint.get("grad_scaler_state") is not None:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])

    def load_pretrained(self, path: str | os.PathLike) -> list[str]:
        """Initialise the network from another training's checkpoint (nnU-Net's -pretrained_weights rule: all but
        the segmentation heads must fit); returns and logs the keys left at their fresh values."""
        checkpoint = load_checkpoint(path, trust=self.trust_checkpoint, map_location=self.device)
        if not self.was_initialized:
            self.initialize()
        skipped = load_pretrained_weights(innermost_module(self.network), checkpoint, path)
        self.print_to_log_file(f"pretrained weights loaded from {path}; not loaded (segmentation heads, freshly "
                               f"initialised): {', '.join(skipped) or 'none'}")
        return skipped

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        # Written beside the target and renamed over it: a killed process never leaves a truncated checkpoint.
        tmp = f"{filename}.tmp-{os.getpid()}"
        try:
            super().save_checkpoint(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, filename)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.events.checkpoint_saved(filename, self.current_epoch + 1)


class nnUNetTrainerUMambaBot(UMambaTrainerBase):
    """U-Mamba Bot: one Mamba layer at the bottleneck of nnU-Net's U-Net."""

    network_variant = "bot"


class nnUNetTrainerUMambaEnc(UMambaTrainerBase):
    """U-Mamba Enc: a Mamba layer after every encoder stage."""

    network_variant = "enc"


class nnUNetTrainerUMambaBotNoAMP(nnUNetTrainerUMambaBot):
    """U-Mamba Bot trained and validated in float32."""

    amp_allowed = False


class nnUNetTrainerUMambaEncNoAMP(nnUNetTrainerUMambaEnc):
    """U-Mamba Enc trained and validated in float32."""

    amp_allowed = False


TRAINER_CLASSES = {cls.__name__: cls for cls in (nnUNetTrainerUMambaBot, nnUNetTrainerUMambaEnc,
                                                 nnUNetTrainerUMambaBotNoAMP, nnUNetTrainerUMambaEncNoAMP)}
assert tuple(TRAINER_CLASSES) == TRAINER_NAMES
