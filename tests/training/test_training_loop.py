"""The accelerate loop: resume equivalence, export, validation grids, logs, DDP replicas and FSDP2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from training_helpers import PhotoPairs, tiny_config
from PIL import Image
from safetensors.torch import load_file

from mimicbrush_cli.loading import load_pipeline_folder
from mimicbrush_cli.pipeline import EditSettings
from mimicbrush_cli.training import train
from mimicbrush_cli.training.checkpointing import list_checkpoints
from mimicbrush_cli.training.initialise import build_training_pipeline
from mimicbrush_cli.training.objective import TrainingModel
from mimicbrush_cli.training.scalars import read_scalars


class Killed(Exception):
    pass


def _kill_after(step: int):
    def on_step(report) -> None:
        if report.step == step:
            raise Killed
    return on_step


@pytest.mark.slow
def test_resumed_run_reproduces_the_uninterrupted_losses(tmp_path):
    # EMA, Adam moments, a warm-up schedule and an epoch boundary (2 items, 1 per step: the resumed
    # step 3 opens epoch 1) all carry state across the restart.
    dataset = PhotoPairs(length=2)
    settings = dict(steps=3, batch_size=1, checkpoint_every=1, keep_checkpoints=2, ema__enabled=True,
                    optimizer__schedule="constant_with_warmup", optimizer__warmup_steps=2)
    uninterrupted = train(tiny_config(tmp_path / "a", **settings), dataset, show_progress=False)

    with pytest.raises(Killed):
        train(tiny_config(tmp_path / "b", **settings), dataset, show_progress=False, on_step=_kill_after(2))
    assert [path.name for path in list_checkpoints(tmp_path / "b")] == ["step-000001", "step-000002"]
    resumed = train(tiny_config(tmp_path / "b", resume="latest", **settings), dataset, show_progress=False)

    assert resumed.losses == {3: uninterrupted.losses[3]}
    logged = [row["loss"] for row in read_scalars(tmp_path / "b" / "logs" / "scalars.csv")]
    assert logged == pytest.approx([uninterrupted.losses[step] for step in (1, 2, 3)], abs=1e-6)


def train_command(config: Path, output_dir: Path, *options) -> list[str]:
    return [sys.executable, "-m", "mimicbrush_cli", "train", "--config", str(config), "--no-progress",
            "--output-dir", str(output_dir), "--export", str(output_dir / "model"), *map(str, options)]


@pytest.mark.slow
def test_a_train_process_killed_with_sigkill_resumes_to_the_losses_and_weights_of_an_uninterrupted_run(
        prepared, tmp_path):
    # The whole command, killed outright (no exception handler, no `finally`) while it trains and writes
    # checkpoints, then `--resume latest`: its log, last checkpoint and export equal those of a run never stopped.
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"init": "random", "size": "tiny"}, "data": {"shard_dirs": [str(prepared)], "resolution": 64},
        "steps": 12, "batch_size": 1, "optimizer": {"lr": 1e-3, "schedule": "constant_with_warmup",
                                                      "warmup_steps": 3},
        "ema": {"enabled": True}, "validation": {"every": 0}, "checkpoint_every": 1, "keep_checkpoints": 2}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    whole = subprocess.run(train_command(config, tmp_path / "a"), env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = subprocess.Popen(train_command(config, tmp_path / "b"), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not any(path.name == "step-000003" for path in list_checkpoints(tmp_path / "b")):
            assert killed.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert list_checkpoints(tmp_path / "b")[-1].name != "step-000012" and not (tmp_path / "b" / "model").exists()

    resumed = subprocess.run(train_command(config, tmp_path / "b", "--resume", "latest"), env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = {name: read_scalars(tmp_path / name / "logs" / "scalars.csv") for name in ("a", "b")}
    assert [row["step"] for row in runs["b"]] == list(range(1, 13))
    assert [row["loss"] for row in runs["b"]] == pytest.approx([row["loss"] for row in runs["a"]], rel=1e-6, abs=1e-7)
    for path in ("checkpoints/step-000012/weights.safetensors", "checkpoints/step-000012/ema.safetensors",
                 "model/imitative_unet/diffusion_pytorch_model.safetensors"):
        expected, found = load_file(tmp_path / "a" / path), load_file(tmp_path / "b" / path)
        assert expected.keys() == found.keys()
        for key, tensor in expected.items():
            torch.testing.assert_close(found[key], tensor, rtol=1e-5, atol=1e-6, msg=f"{path}: {key}")
    assert sorted(path.name for path in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-000011", "step-000012"]


@pytest.mark.slow
def test_export_loads_in_edit_and_validation_writes_grids(tmp_path, photo_pairs):
    config = tiny_config(tmp_path / "run", steps=2, batch_size=1, ema__enabled=True, export=str(tmp_path / "model"),
                         validation__every=2, validation__items=2, validation__steps=2)
    result = train(config, photo_pairs, show_progress=False)

    grid = np.asarray(Image.open(tmp_path / "run" / "validation" / "step-000002.png"))
    assert grid.shape == (2 * 64 + 2, 4 * 64 + 3 * 2, 3)  # two items × (source | mask | reference | result)
    assert result.exported == tmp_path / "model"
    pipeline = load_pipeline_folder(tmp_path / "model")
    source, reference = photo_pairs.photos[1], photo_pairs.photos[2]
    mask = np.zeros(source.shape[:2], bool)
    mask[100:200, 150:300] = True
    edited = pipeline(source, reference, mask, EditSettings(steps=2))[0][0]
    assert edited.shape == source.shape and edited.dtype == np.uint8
    # With EMA on, the export holds the averaged weights, not the live ones.
    live = result.pipeline.imitative_unet.conv_in.weight
    assert not np.allclose(pipeline.imitative_unet.conv_in.weight.detach().numpy(), live.detach().numpy())


@pytest.mark.slow
def test_two_processes_keep_identical_replicas(tmp_path):
    worker = Path(__file__).parent / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(worker), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(rank["world_size"] == 2 for rank in ranks)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["digest"] != ranks[0]["initial_digest"]
    assert ranks[0]["losses"] == ranks[1]["losses"]


def _launch_sharded_worker(accelerate_config: str, output_dir: Path, *options) -> None:
    worker = Path(__file__).parent / "sharded_worker.py"
    config = Path(__file__).parents[2] / "configs" / "accelerate" / accelerate_config
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
         "--mixed_precision", "no", str(worker), str(output_dir), *map(str, options)],
        env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]


def _check_a_stopped_and_resumed_run_against_an_uninterrupted_one(tmp_path, accelerate_config: str, options: tuple,
                                                                  distributed_type: str, parameter_type: str) -> None:
    _launch_sharded_worker(accelerate_config, tmp_path / "a", 3, *options)
    _launch_sharded_worker(accelerate_config, tmp_path / "b", 3, "--stop-after", 2, *options)
    assert [path.name for path in list_checkpoints(tmp_path / "b")] == ["step-000001", "step-000002"]
    _launch_sharded_worker(accelerate_config, tmp_path / "b", 3, "--resume", *options)

    for name in ("a", "b"):
        ranks = [json.loads((tmp_path / name / f"rank{rank}.json").read_text()) for rank in (0, 1)]
        assert all((rank["distributed_type"], rank["parameter_type"], rank["world_size"]) ==
                   (distributed_type, parameter_type, 2) for rank in ranks)
        assert ranks[0]["losses"] == ranks[1]["losses"]
    assert list(json.loads((tmp_path / "b" / "rank0.json").read_text())["losses"]) == ["3"]
    runs = {name: read_scalars(tmp_path / name / "logs" / "scalars.csv") for name in ("a", "b")}
    assert [row["step"] for row in runs["b"]] == [1, 2, 3]
    assert [row["loss"] for row in runs["b"]] == [row["loss"] for row in runs["a"]]  # exactly
    # weights.safetensors is gathered whole: the unsharded model's keys and shapes, equal in both runs.
    last = "checkpoints/step-000003/weights.safetensors"
    expected, found = load_file(tmp_path / "a" / last), load_file(tmp_path / "b" / last)
    config = tiny_config(tmp_path / "c")
    model = TrainingModel(build_training_pipeline(config.model), config.trainable)
    assert {key: tuple(tensor.shape) for key, tensor in found.items()} == \
        {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    for key, tensor in expected.items():
        torch.testing.assert_close(found[key], tensor, rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_fsdp2_on_two_cpu_processes_checkpoints_and_resumes_to_the_uninterrupted_losses(tmp_path):
    # DTensor parameters: sharded by fully_shard, not replicated as under DDP (what accelerate alone would run).
    _check_a_stopped_and_resumed_run_against_an_uninterrupted_one(tmp_path, "fsdp2_cpu.yaml", (), "FSDP", "DTensor")
    assert (tmp_path / "b" / "checkpoints" / "step-000003" / "accelerate" / "pytorch_model_fsdp_0" /
            ".metadata").is_file()  # accelerate's sharded state


def test_progress_off_a_terminal_is_a_line_every_log_interval(tmp_path, capsys):
    train(tiny_config(tmp_path / "run", steps=4, batch_size=1, log_every=2), PhotoPairs(length=2), show_progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train ")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert all(" loss " in line and " it/s" in line for line in lines)


def test_a_time_limit_stops_at_a_step_with_its_checkpoint_and_export_and_resume_goes_on(tmp_path, capsys):
    dataset = PhotoPairs(length=2)
    settings = dict(steps=3, batch_size=1, checkpoint_every=0, log_every=10)
    uninterrupted = train(tiny_config(tmp_path / "a", **settings), dataset, show_progress=False)

    limited = train(tiny_config(tmp_path / "b", time_limit=1e-9, export=str(tmp_path / "model"), **settings), dataset,
                    show_progress=True)
    assert limited.step == 1 and list(limited.losses) == [1]
    assert [path.name for path in list_checkpoints(tmp_path / "b")] == ["step-000001"]
    assert (tmp_path / "model" / "model_index.json").is_file()
    err = capsys.readouterr().err
    assert "train 1/3 " in err and "time limit of 1e-09 min reached at step 1/3" in err

    first_export = (tmp_path / "model" / "imitative_unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    resumed = train(tiny_config(tmp_path / "b", resume="latest", export=str(tmp_path / "model"), **settings), dataset,
                    show_progress=False)
    assert resumed.losses == {step: uninterrupted.losses[step] for step in (2, 3)}
    # The resumed run replaces its own earlier export.
    assert (tmp_path / "model" / "imitative_unet" / "diffusion_pytorch_model.safetensors").read_bytes() != first_export
