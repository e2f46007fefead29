"""One rule for choosing the torch device (training, prediction, demo)."""

import pytest
import torch

from umamba.devices import pick_device
from umamba.errors import UserError


def test_auto_takes_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == pick_device(None) == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("AUTO") == "cuda"


def test_explicit_devices_are_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("cpu") == "cpu"
    with pytest.raises(UserError, match="torch sees no CUDA GPU") as caught:
        pick_device("cuda")
    assert "--device cpu" in caught.value.hint
    with pytest.raises(UserError, match="no usable Apple GPU"):
        pick_device("mps")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        pick_device("tpu")
