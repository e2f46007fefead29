"""Safe checkpoint loading: nnU-Net's checkpoint contents load without pickled code; anything else is refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from umamba.checkpoint import load_checkpoint
from umamba.errors import UserError


def _nnunet_like_checkpoint() -> dict:
    """What nnUNetTrainer.save_checkpoint writes (numpy scalars in the logs, a torch.device in init_args)."""
    net = torch.nn.Conv3d(1, 2, 3)
    return {
        "network_weights": net.state_dict(),
        "optimizer_state": torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True).state_dict(),
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.25), np.float32(0.5)], "ema_fg_dice": [np.float64(0.3)],
                    "dice_per_class_or_region": [[np.float64(0.25)]], "train_losses": [0.5], "val_losses": [0.6],
                    "lrs": [0.01], "epoch_start_timestamps": [1.0], "epoch_end_timestamps": [2.0]},
        "_best_ema": np.float64(0.3),
        "current_epoch": 2,
        "init_args": {"plans": {"plans_name": "nnUNetPlans"}, "configuration": "3d_fullres", "fold": 0,
                      "dataset_json": {"labels": {"background": 0, "x": 1}}, "device": torch.device("cpu"),
                      "spacing": np.array([1.0, 2.0]), "dtype": np.dtype("float32")},
        "trainer_name": "nnUNetTrainerUMambaBot",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }


def test_nnunet_checkpoint_loads_safely(tmp_path):
    ckpt = _nnunet_like_checkpoint()
    path = tmp_path / "checkpoint_final.pth"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)
    assert loaded["trainer_name"] == "nnUNetTrainerUMambaBot"
    assert loaded["inference_allowed_mirroring_axes"] == (0, 1, 2)
    assert float(loaded["_best_ema"]) == pytest.approx(0.3)
    assert torch.equal(loaded["network_weights"]["weight"], ckpt["network_weights"]["weight"])


class _RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): a stand-in for any code a malicious checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_arbitrary_pickled_object_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    ckpt = _nnunet_like_checkpoint()
    ckpt["payload"] = _RunsCodeWhenUnpickled(marker)
    torch.save(ckpt, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    assert "open" in err.value.message  # names what the file needs
    assert "--trust-checkpoint" in err.value.hint
    assert not marker.exists()
    # The explicit opt-in loads it (and so runs the pickled call).
    assert load_checkpoint(path, trust=True)["trainer_name"] == "nnUNetTrainerUMambaBot"
    assert marker.exists()


def test_not_a_checkpoint_and_truncated_file(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not an nnU-Net checkpoint"):
        load_checkpoint(tmp_path / "other.pth")
    torch.save(_nnunet_like_checkpoint(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_numpy1_module_names_are_allowed(tmp_path):
    """Checkpoints written with numpy 1.x (the original U-Mamba's) name numpy.core.multiarray.scalar."""
    buffer = io.BytesIO()
    torch.save({"network_weights": {"w": torch.zeros(2)}, "_best_ema": np.float64(2.5)}, buffer,
               _use_new_zipfile_serialization=False)  # the legacy format is one plain pickle stream
    data = buffer.getvalue()
    numpy2_name = b"numpy._core.multiarray\nscalar"
    assert data.count(numpy2_name) == 1
    (tmp_path / "numpy1.pth").write_bytes(data.replace(numpy2_name, b"numpy.core.multiarray\nscalar"))
    assert float(load_checkpoint(tmp_path / "numpy1.pth")["_best_ema"]) == 2.5
