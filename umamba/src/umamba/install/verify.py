"""The verification step, run as `python -m umamba.install.verify` in a fresh process: import umamba and torch, run
a tiny Mamba forward (and backward) on the device umamba would use, and print one JSON line with the outcome.

A fresh process because the interpreter that installed packages (Slicer's, or the installer's own) may still hold
the old versions in memory.
"""

from __future__ import annotations

import json
import sys
import time


def verify() -> dict:
    t0 = time.time()
    result: dict = {"ok": False, "python": sys.executable}
    try:
        import torch

        import umamba
        from umamba.mamba import Mamba, available_backends

        result.update(umamba=umamba.__version__, torch=torch.__version__, torch_cuda=torch.version.cuda,
                      cuda_available=bool(torch.cuda.is_available()))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        result["device"] = device
        result["backends"] = available_backends()
        torch.manual_seed(0)
        layer = Mamba(d_model=8, d_state=4).to(device)
        x = torch.randn(1, 12, 8, device=device, requires_grad=True)  # (batch, tokens, channels)
        y = layer(x)
        y.square().mean().backward()
        finite = bool(torch.isfinite(y).all()) and bool(torch.isfinite(x.grad).all())
        if tuple(y.shape) != (1, 12, 8) or not finite:
            raise RuntimeError(f"Mamba forward gave shape {tuple(y.shape)}, finite={finite}")
        # The backend `auto` picks for a training step on this device (what will actually run).
        result["backend"] = "cuda" if device == "cuda" and result["backends"].get("cuda") else "portable"
        result["ok"] = True
    except Exception as exc:  # the report is the product: every failure becomes one line of JSON
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["seconds"] = round(time.time() - t0, 2)
    return result


def main() -> int:
    result = verify()
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
