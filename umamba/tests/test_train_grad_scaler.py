"""The GradScaler branch of the trainers' AMP step (CUDA float16 AMP in nnU-Net), run on the CPU: float16 autocast
with a real torch.amp.GradScaler. A normal step updates the weights through the scaler; a step whose scaled
gradients overflow is skipped by the scaler itself (the scale drops) and is not counted as a non-finite step."""

from __future__ import annotations

import torch

from umamba.nnunet.progress_hooks import TrainingEvents
from umamba.nnunet.trainers import nnUNetTrainerUMambaBot


def bare_trainer(init_scale: float) -> nnUNetTrainerUMambaBot:
    """A trainer object with only what train_step uses (nnU-Net's initialisation would plan a whole dataset)."""
    torch.manual_seed(0)
    t = object.__new__(nnUNetTrainerUMambaBot)
    t.device, t.is_ddp = torch.device("cpu"), False
    t.network = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Conv3d(4, 2, 1))
    t.loss = lambda out, target: torch.nn.functional.cross_entropy(out.float(), target[:, 0].long())
    t.optimizer = torch.optim.SGD(t.network.parameters(), lr=0.1)
    t.grad_scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    t.amp_active, t.amp_dtype = True, torch.float16
    t.events, t._iteration, t.current_epoch, t.num_iterations_per_epoch = TrainingEvents(), 0, 0, 1
    t.nonfinite_amp_steps = t.skipped_steps = 0
    t._float32_guard = None
    return t


def batch():
    g = torch.Generator().manual_seed(1)
    return {"data": torch.randn(2, 1, 6, 6, 6, generator=g), "target": torch.randint(0, 2, (2, 1, 6, 6, 6), generator=g)}


def params(t):
    return [p.detach().clone() for p in t.network.parameters()]


def test_scaled_step_updates_weights():
    t = bare_trainer(init_scale=2.0 ** 4)
    before = params(t)
    out = t.train_step(batch())
    assert torch.isfinite(torch.as_tensor(out["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, params(t)))
    assert t.grad_scaler.get_scale() == 2.0 ** 4 and t.skipped_steps == 0 and t.amp_active


def test_overflowing_scaled_gradients_are_skipped_by_the_scaler():
    t = bare_trainer(init_scale=2.0 ** 120)   # float16 gradients of loss · 2^120 overflow
    before = params(t)
    out = t.train_step(batch())
    assert torch.isfinite(torch.as_tensor(out["loss"]))            # the loss itself was fine
    assert all(torch.equal(a, b) for a, b in zip(before, params(t)))  # the scaler skipped the update
    assert t.grad_scaler.get_scale() < 2.0 ** 120                  # and lowered its scale: normal AMP
    assert t.skipped_steps == 0 and t.nonfinite_amp_steps == 0 and t.amp_active
