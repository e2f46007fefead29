"""Run by test_train_amp_safety.py in a fresh process: a real tiny training step loop with poisoned batches.

Mixed precision on CPU (bfloat16 autocast, the CPU counterpart of nnU-Net's CUDA float16 AMP) is switched on in a
test-only subclass; iterations 2, 3 and 4 of the only epoch get a batch full of inf. Writes a JSON report.
usage: python _train_amp_probe.py WORKSPACE REPORT.json
"""

import json
import sys
from pathlib import Path

workspace, report_path = Path(sys.argv[1]), Path(sys.argv[2])

from umamba.paths import resolve_workspace  # noqa: E402

ws = resolve_workspace(workspace)
ws.export_to_environment()

from umamba.nnunet.runner import prepare_process  # noqa: E402

prepare_process("cpu")

import torch  # noqa: E402

from umamba.nnunet import compat  # noqa: E402
from umamba.nnunet.trainers import nnUNetTrainerUMambaBot, nnUNetTrainerUMambaBotNoAMP  # noqa: E402
from umamba.progress import Reporter  # noqa: E402

POISONED = {2, 3, 4}
report = {"steps": []}


def weights(trainer):
    return [p.detach().clone() for p in trainer.network.parameters()]


class PoisonedBatchTrainer(nnUNetTrainerUMambaBot):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.amp_active = True  # CPU autocast (bfloat16) stands in for CUDA AMP
        self.output_dtypes = []

    def initialize(self):
        super().initialize()
        self.network.register_forward_hook(lambda m, a, out: self.output_dtypes.append(
            str((out[0] if isinstance(out, (list, tuple)) else out).dtype)))

    def train_step(self, batch):
        iteration = self._iteration + 1
        poisoned = iteration in POISONED
        if poisoned:
            batch = dict(batch, data=torch.full_like(batch["data"], float("inf")))
        before = weights(self)
        amp_before = self.amp_active
        out = super().train_step(batch)
        after = weights(self)
        report["steps"].append({
            "iteration": iteration, "poisoned": poisoned, "amp_before": amp_before, "amp_after": self.amp_active,
            "output_dtype": self.output_dtypes[-1],
            "weights_changed": any(not torch.equal(a, b) for a, b in zip(before, after)),
            "weights_finite": all(bool(torch.isfinite(p).all()) for p in after),
            "loss": float(out["loss"]),
        })
        return out


pre = ws.preprocessed / "Dataset990_TinyPhantom"
plans = json.loads((pre / "nnUNetPlans.json").read_text())
dataset_json = json.loads((pre / "dataset.json").read_text())
events = workspace / "amp_probe_events.jsonl"
with open(events, "w") as stream:
    trainer = PoisonedBatchTrainer(compat.trainer_plans(plans, False), "3d_fullres", "all", dataset_json,
                                   torch.device("cpu"))
    trainer.reporter = Reporter(json_mode=True, stream=stream)
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 1, 6, 1
    trainer.disable_checkpointing = True
    trainer.run_training()
report["skipped_steps"] = trainer.skipped_steps
report["grad_scaler"] = repr(trainer.grad_scaler)
report["train_loss"] = float(compat.logged_value(trainer.logger, "train_losses"))
report["events"] = [json.loads(line) for line in events.read_text().splitlines()]

# NoAMP: nnU-Net's own autocast regions (validation step, predictor) must not reach the network.
noamp = nnUNetTrainerUMambaBotNoAMP(compat.trainer_plans(plans, False), "3d_fullres", "all", dataset_json,
                                    torch.device("cpu"))
noamp.initialize()
x = torch.randn(1, 1, *plans["configurations"]["3d_fullres"]["patch_size"])
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    report["noamp_dtypes"] = sorted({str(o.dtype) for o in noamp.network(x)})
    noamp._float32_guard.remove()  # the same network without the guard: autocast does reach it
    report["unguarded_dtypes"] = sorted({str(o.dtype) for o in noamp.network(x)})
report_path.write_text(json.dumps(report, indent=1))
