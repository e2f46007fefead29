"""Float32 execution of a network inside code that turns autocast on around it.

nnU-Net enters `torch.autocast` itself in its validation step and in its predictor whenever the device is CUDA.
A trainer that must run in float32 (the NoAMP variants, or a run that fell back after non-finite losses) cannot
change that code, but it owns its network: forward hooks on the network open an `autocast(enabled=False)` region
for exactly the duration of each forward pass (an inner disabled region overrides an outer enabled one) and cast
floating-point inputs to float32. The state dict is untouched, so checkpoints stay compatible.
"""

from __future__ import annotations

import torch
from torch import nn


class Float32Guard:
    """Runs every forward pass of `module` in float32 until `remove()` is called."""

    def __init__(self, module: nn.Module):
        self._open: list = []
        self._handles = [module.register_forward_pre_hook(self._enter)]
        try:  # always_call: the region is closed even when the forward pass raises
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))
        except TypeError:  # torch < 2.1
            self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module: nn.Module, args: tuple):
        device_type = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        region = torch.autocast(device_type=device_type, enabled=False)
        region.__enter__()
        self._open.append(region)
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def _leave(self, module: nn.Module, args: tuple, output):
        if self._open:
            self._open.pop().__exit__(None, None, None)
        return None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def innermost_module(network: nn.Module) -> nn.Module:
    """The network itself, unwrapped from DistributedDataParallel and torch.compile."""
    mod = network.module if hasattr(network, "module") and isinstance(network.module, nn.Module) else network
    return getattr(mod, "_orig_mod", mod)


def autocast_dtype(device_type: str) -> torch.dtype:
    """float16 on CUDA (nnU-Net's choice, with a GradScaler), bfloat16 elsewhere (no scaler needed)."""
    return torch.float16 if device_type == "cuda" else torch.bfloat16
