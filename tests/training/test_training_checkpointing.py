"""Training checkpoints on disk: a checkpoint of a step is replaced without a moment where it is missing."""

import os
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from mimicbrush_cli.training.checkpointing import list_checkpoints, save_checkpoint


def save(tmp_path: Path, model: torch.nn.Module) -> Path:
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return save_checkpoint(accelerator, tmp_path, 2, model, optimizer, scheduler, None, {"data_position": 8}, keep=0)


def test_a_failed_replacement_of_a_same_step_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    old_model, new_model = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    save(tmp_path, old_model)
    real_replace = os.replace

    def fail_renaming_the_new_checkpoint_in(source, destination):
        if Path(source).name == ".step-000002.partial":
            raise OSError("disk gone")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", fail_renaming_the_new_checkpoint_in)
    with pytest.raises(OSError, match="disk gone"):
        save(tmp_path, new_model)
    [checkpoint] = list_checkpoints(tmp_path)
    torch.testing.assert_close(load_file(checkpoint / "weights.safetensors")["weight"], old_model.weight.detach())

    monkeypatch.setattr(os, "replace", real_replace)
    save(tmp_path, new_model)
    [checkpoint] = list_checkpoints(tmp_path)
    torch.testing.assert_close(load_file(checkpoint / "weights.safetensors")["weight"], new_model.weight.detach())
    assert sorted(path.name for path in checkpoint.parent.iterdir()) == ["step-000002"]
