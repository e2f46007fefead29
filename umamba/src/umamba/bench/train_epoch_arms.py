"""The trainer classes of `umamba bench train-epoch`'s arms: ours, ours with mamba-ssm's Mamba module, plain
nnU-Net; each records the time and loss of every training iteration (imported only in an arm's own process,
after `runner.prepare_process`).

A trainer writes its record (rank 0 only) to the file named by UMAMBA_BENCH_RESULT when its training ends:
    iteration_end_s  time.perf_counter() after each iteration finished on the device (data loading included:
                     nnU-Net's loop fetches the next batch between two train_step calls)
    loss             the training loss of each iteration (this rank's share of the batch)
    peak_gib         CUDA: peak memory allocated by tensors on this rank's GPU; CPU: the process's peak RSS
"""

from __future__ import annotations

import functools
import json
import os
import random
import resource
import sys
import time

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from umamba.bench import arms, harness
from umamba.nnunet.trainers import _NetworkBuilder, nnUNetTrainerUMambaBot, nnUNetTrainerUMambaEnc

RESULT_ENV = "UMAMBA_BENCH_RESULT"


def peak_memory_gib(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "cuda_allocated"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss_kib / (2**30 if sys.platform == "darwin" else 2**20), "process_rss"


class _Measured:
    """Mixin before a trainer class: per-iteration end time and loss, no checkpoints, the record at the end;
    the seed (UMAMBA_BENCH_SEED, plus the rank) and a global batch size (UMAMBA_BENCH_BATCH_SIZE) of the bench."""

    # No __init__ here: nnUNetTrainer records its init arguments by reading its own parameter names.
    def initialize(self):
        if os.environ.get("UMAMBA_BENCH_SEED"):
            seed = int(os.environ["UMAMBA_BENCH_SEED"]) + self.local_rank
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)  # before the network is built; DDP then broadcasts rank 0's weights
        if os.environ.get("UMAMBA_BENCH_BATCH_SIZE"):
            # nnU-Net splits it over the DDP processes in initialize()
            self.configuration_manager.configuration["batch_size"] = int(os.environ["UMAMBA_BENCH_BATCH_SIZE"])
        super().initialize()

    def on_train_start(self):
        super().on_train_start()
        self.disable_checkpointing = True  # a benchmark leaves no model behind
        self.bench_times: list[float] = []
        self.bench_losses: list[float] = []
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the loss's .cpu() already waits for the step; this is exact
        self.bench_times.append(time.perf_counter())
        self.bench_losses.append(float(np.mean(out["loss"])))
        return out

    def on_train_end(self):
        peak, peak_kind = peak_memory_gib(self.device)
        super().on_train_end()
        if self.local_rank != 0 or not os.environ.get(RESULT_ENV):
            return
        network = self.network.module if self.is_ddp else self.network
        trainer = next(c.__name__ for c in type(self).__mro__ if c.__name__.startswith("nnUNetTrainer"))
        record = {"trainer": trainer, "device": str(self.device), "device_name": harness.device_name(),
                  "batch_size_per_process": int(getattr(self, "batch_size", 0) or 0),
                  "patch_size": [int(p) for p in self.configuration_manager.patch_size],
                  "mamba_block": _mamba_block_name(network), "iteration_end_s": self.bench_times,
                  "loss": self.bench_losses, "peak_gib": peak, "peak_kind": peak_kind}
        tmp = f"{os.environ[RESULT_ENV]}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, os.environ[RESULT_ENV])


def _mamba_block_name(network: torch.nn.Module) -> str | None:
    names = {f"{type(m).__module__.split('.')[0]}.{type(m).__name__}" for m in network.modules()
             if type(m).__name__ == "Mamba"}
    return ",".join(sorted(names)) or None


class _OriginalMambaBuilder(_NetworkBuilder):
    """Our network with every Mamba layer replaced by mamba-ssm's own module (same weights, loaded strictly)."""

    def __get__(self, trainer, owner):
        build = super().__get__(trainer, owner)

        @functools.wraps(build)  # nnU-Net reads the signature to pick its calling convention
        def build_network_architecture(*args, **kwargs):
            net = build(*args, **kwargs)
            if arms.use_arm_blocks(net, "mamba-ssm") != "mamba_ssm.Mamba":
                raise RuntimeError("mamba_ssm's Mamba module does not import here")
            return net

        return build_network_architecture


class _PlainCompileRule:
    """nnUNetTrainer compiles by default on CUDA; ours only on request. The plain arm follows our rule, so all
    arms compile or none does (`--compile` / nnUNet_compile=1)."""

    def _do_i_compile(self) -> bool:
        if os.environ.get("nnUNet_compile", "").strip().lower() not in ("1", "true", "t"):
            return False
        return super()._do_i_compile()


class UMambaBotArm(_Measured, nnUNetTrainerUMambaBot):
    pass


class UMambaEncArm(_Measured, nnUNetTrainerUMambaEnc):
    pass


class OriginalBotArm(_Measured, nnUNetTrainerUMambaBot):
    build_network_architecture = _OriginalMambaBuilder()


class OriginalEncArm(_Measured, nnUNetTrainerUMambaEnc):
    build_network_architecture = _OriginalMambaBuilder()


class PlainArm(_Measured, _PlainCompileRule, nnUNetTrainer):
    pass


ARMS = {("umamba", "bot"): UMambaBotArm, ("umamba", "enc"): UMambaEncArm,
        ("original", "bot"): OriginalBotArm, ("original", "enc"): OriginalEncArm,
        ("plain", "bot"): PlainArm, ("plain", "enc"): PlainArm}
