"""A small fixed U-Mamba Bot and Enc 3D network and input, and their outputs computed once on CPU in float64
(data/net_expected_outputs.npz, stored as float32): the reference that every device and backend is held to.

The weights come from numpy's PCG64 generator (its stream is fixed across numpy versions), not from torch's
initialisers, so the reference does not move when torch changes how it initialises layers.
Regenerate (only when the network's definition changes on purpose):  python umamba/tests/net_expected_outputs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

EXPECTED = Path(__file__).with_name("data") / "net_expected_outputs.npz"
VARIANTS = ("bot", "enc")
NUM_CLASSES = 3
SEED = 20261205
PLAN = {"configurations": {"3d_fullres": {
    "patch_size": [16, 16, 16], "UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 8,
    "unet_max_num_features": 32, "conv_kernel_sizes": [[3, 3, 3]] * 4,
    "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], "num_pool_per_axis": [3, 3, 3],
    "n_conv_per_stage_encoder": [2] * 4, "n_conv_per_stage_decoder": [2] * 3}}}


def reference_input(dtype=torch.float64) -> torch.Tensor:
    rng = np.random.default_rng(SEED)
    return torch.from_numpy(rng.standard_normal((1, 1, 16, 16, 16))).to(dtype)  # (b, c, z, y, x)


def reference_network(variant: str) -> torch.nn.Module:
    """The network (float32, CPU, eval mode, no deep supervision) with its fixed weights."""
    from umamba.nets import build_network

    net = build_network(variant, PLAN, "3d_fullres", 1, NUM_CLASSES, deep_supervision=False)
    rng = np.random.default_rng(SEED + VARIANTS.index(variant) + 1)
    state = {}
    for name, t in net.state_dict().items():
        if not t.is_floating_point():
            state[name] = t
            continue
        shape = tuple(t.shape)
        if name.endswith("A_log"):  # A = -exp(A_log): the usual 1..n decay rates, perturbed
            values = np.log(np.broadcast_to(np.arange(1, shape[-1] + 1), shape)) + 0.1 * rng.standard_normal(shape)
        elif t.dim() >= 2:  # convolutions and projections: unit-variance outputs
            values = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        elif name.endswith("weight"):  # norm scales
            values = 1 + 0.1 * rng.standard_normal(shape)
        else:  # biases, D
            values = 0.1 * rng.standard_normal(shape)
        state[name] = torch.from_numpy(np.ascontiguousarray(values)).float()
    net.load_state_dict(state, strict=True)
    return net.eval()


def compute(variant: str, device: str = "cpu", dtype=torch.float64) -> np.ndarray:
    net = reference_network(variant).to(device=device, dtype=dtype)
    with torch.no_grad():
        out = net(reference_input(dtype).to(device))
    return out.double().cpu().numpy()


def main() -> int:
    arrays = {"input": reference_input().float().numpy()}
    for variant in VARIANTS:
        arrays[variant] = compute(variant).astype(np.float32)
    EXPECTED.parent.mkdir(exist_ok=True)
    np.savez_compressed(EXPECTED, **arrays)
    print(f"{EXPECTED}: {EXPECTED.stat().st_size} bytes, " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
