"""The verification step, run as `python -m umamba.install.verify` in a fresh process: import umamba and torch, run
a tiny Mamba forward (and backward) on the device umamba would use, and print one JSON line with the outcome.

A fresh process because the interpreter that installed packages (Slicer's, or the installer's own) may still hold
the old versions in memory.
"""

from __future__ import annotations

import json
import sys
import time


def devices() -> list[str]:
    """The devices torch can compute on here: cpu, then each CUDA device."""
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]


def backend_report() -> dict:
    """{device: {"capability", "training": {op: {backend, reason}}, "inference": {...}}} from
    umamba.mamba.backends.resolve_backend: what `auto` runs for the scan, the conv and the norm on each device."""
    from umamba.mamba import backends

    report = {}
    for device in devices():
        capability = backends.device_capability(device)
        report[device] = {"capability": ".".join(map(str, capability)) if capability else None,
                          **backends.report(device)}
    return report


def summary(report: dict) -> str:
    """One line per device: the scan backend for training and for inference, with the reasons."""
    lines = []
    for device, r in report.items():
        train, infer = r["training"]["scan"], r["inference"]["scan"]
        lines.append(f"{device}: training {train['backend']} ({train['reason']}); inference {infer['backend']} "
                     f"({infer['reason']}); conv {r['training']['conv']['backend']}, norm "
                     f"{r['training']['norm']['backend']}")
    return "\n".join(lines)


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
        # What `auto` picks on every device, for training and for inference (what will actually run).
        report = backend_report()
        result["devices"] = report
        result["summary"] = summary(report)
        main = report["cuda:0" if device == "cuda" else "cpu"]
        result["backend"] = main["training"]["scan"]["backend"]
        result["backend_inference"] = main["inference"]["scan"]["backend"]
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
