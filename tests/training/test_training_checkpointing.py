"""Training checkpoints on disk: a checkpoint of a step is replaced without a moment where it is missing."""

import os
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from mimicbrush_cli.training.checkpointing import list_checkpoints, save_checkpoint
from mimicbrush_cli.training.scalars import ScalarLog, read_scalars


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


def write_log(folder: Path, steps: int) -> Path:
    log = ScalarLog(folder)
    for step in range(1, steps + 1):
        log.log(step, loss=1.0 / step, lr=1e-4, grad_norm=0.5, steps_per_second=2.0)
    log.close()
    return folder / "scalars.csv"


def test_a_log_row_torn_by_a_kill_is_dropped_when_the_run_resumes(tmp_path):
    # A run killed while writing the row of step 12 leaves "1" of "12,...": it is not the row of step 1.
    path = write_log(tmp_path, 11)
    with path.open("a") as handle:
        handle.write("1")
    ScalarLog(tmp_path, resumed_step=11).close()
    assert [row["step"] for row in read_scalars(path)] == list(range(1, 12))


def test_a_failure_while_a_resumed_run_rewrites_its_log_keeps_the_whole_log(tmp_path, monkeypatch):
    import csv

    path = write_log(tmp_path, 5)
    before = path.read_text()

    def fail(self, rows):
        raise OSError("disk gone")

    monkeypatch.setattr(csv.DictWriter, "writerows", fail)
    with pytest.raises(OSError, match="disk gone"):
        ScalarLog(tmp_path, resumed_step=3)
    assert path.read_text() == before


class Killed(BaseException):
    pass


def test_a_kill_while_an_old_checkpoint_is_removed_leaves_no_broken_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def save_step(step: int) -> None:
        save_checkpoint(accelerator, tmp_path, step, model, optimizer, scheduler, None, {"data_position": 8}, keep=2)

    save_step(1)
    save_step(2)
    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):  # the process dies with the old checkpoint's files half removed
        path = Path(path)
        if (path / "weights.safetensors").is_file() and (path / "state.json").is_file():
            (path / "weights.safetensors").unlink()
            raise Killed
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(Killed):
        save_step(3)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert all((path / "weights.safetensors").is_file() for path in list_checkpoints(tmp_path))
    assert [path.name for path in list_checkpoints(tmp_path)] == ["step-000002", "step-000003"]
    save_step(4)  # the next save also clears what the killed one left
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step-000003", "step-000004"]
