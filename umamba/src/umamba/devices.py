"""Which torch device to run on, by the same rules for training, prediction and the demo."""

from __future__ import annotations

from umamba.errors import UserError

DEVICES = ("cpu", "cuda", "mps")


def _mps_available(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)       # absent in torch builds without Apple GPU support
    return mps is not None and mps.is_available()


def pick_device(requested: str | None = "auto") -> str:
    """"cuda", "mps" or "cpu". "auto" (or None): CUDA when torch sees a GPU, else Apple's MPS, else the CPU; an
    explicit device is checked, and a UserError says what to use instead when it is unknown or not usable."""
    name = (requested or "auto").lower()
    if name not in ("auto", *DEVICES):
        raise UserError(f"unknown device {requested!r}", "use cpu, cuda, mps or auto")
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available(torch) else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but torch sees no CUDA GPU",
                        "use --device cpu, or install a CUDA build of torch (`umamba doctor` shows what is installed)")
    if name == "mps" and not _mps_available(torch):
        raise UserError("--device mps was requested but this machine has no usable Apple GPU", "use --device cpu")
    return name
