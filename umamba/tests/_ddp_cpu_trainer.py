"""Run by test_train_ddp.py in a fresh process: `umamba train --num-gpus 2`'s DDP path (runner._train_ddp:
two spawned processes, rank 0's events forwarded to this process) on CPU with the gloo backend.

nnUNetTrainer moves every DDP run to CUDA itself: its __init__ sets the device to cuda:RANK when a process group
exists, and its initialize() wraps the network as DDP(network, device_ids=[RANK]), which torch accepts only for
CUDA modules. `CpuDdpBot` (test-only) keeps the CPU and wraps the network without device_ids; everything else is
nnU-Net's DDP code (batch split, DDP-aware Dice, all_gather of losses, barriers, rank-0 checkpoints) and ours.
It poisons the batch of one rank at one iteration (UMAMBA_TEST_POISON="RANK:EPOCH:ITERATION") and writes each
rank's final weights' checksum to RANK.json in UMAMBA_TEST_REPORT_DIR.

usage: python _ddp_cpu_trainer.py WORKSPACE DATASET EPOCHS ITERATIONS [--continue]   (events as JSON lines on stdout)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from umamba.nnunet.trainers import nnUNetTrainerUMambaBot


class CpuDdpBot(nnUNetTrainerUMambaBot):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.device = torch.device("cpu")  # nnUNetTrainer set cuda:RANK
        self.amp_active = False  # as ours on CPU (CPU bfloat16 autocast: its backward is far too slow for a test)
        self.grad_scaler = None

    def initialize(self):
        # nnU-Net's initialize() wraps with device_ids=[rank] (CUDA modules only) when is_ddp: run it as a single
        # process, then do its DDP part for a CPU module: split the batch, wrap, build the DDP-aware loss.
        self.is_ddp = False
        try:
            super().initialize()
        finally:
            self.is_ddp = True
        self._set_batch_size_and_oversample()
        self.network = DistributedDataParallel(self.network)
        self.loss = self._build_loss()

    def train_step(self, batch):
        rank, epoch, iteration = (int(v) for v in os.environ.get("UMAMBA_TEST_POISON", "-1:0:0").split(":"))
        if (self.local_rank, self.current_epoch + 1, self._iteration + 1) == (rank, epoch, iteration):
            batch = dict(batch, data=torch.full_like(batch["data"], float("inf")))
        return super().train_step(batch)

    def on_train_end(self):
        super().on_train_end()
        weights = [p.detach().double() for p in self.network.module.parameters()]
        report = {"rank": self.local_rank, "world_size": torch.distributed.get_world_size(),
                  "batch_size": self.batch_size, "device": str(self.device), "amp_active": self.amp_active,
                  "skipped_steps": self.skipped_steps, "finite": all(bool(torch.isfinite(w).all()) for w in weights),
                  "checksum": float(sum((w * (i + 1)).sum() for i, w in enumerate(weights)))}
        folder = Path(os.environ["UMAMBA_TEST_REPORT_DIR"])
        (folder / f"{self.local_rank}.json").write_text(json.dumps(report))


def main(argv: list[str]) -> int:
    from umamba.paths import resolve_workspace

    workspace = resolve_workspace(argv[0])
    workspace.export_to_environment()
    from umamba.nnunet import runner
    from umamba.progress import Reporter

    req = runner.TrainRequest(argv[1], "3d_fullres", "all", epochs=int(argv[2]), iterations_per_epoch=int(argv[3]),
                              val_iterations=1, continue_training="--continue" in argv, num_gpus=2,
                              final_validation=False, trainer_class=CpuDdpBot)
    runner.prepare_process("cpu")
    reporter = Reporter(json_mode=True, stream=sys.stdout)
    model = runner._train_ddp(req, workspace.preprocessed, reporter, device="cpu")
    reporter.done([str(model)], model_folder=str(model))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
