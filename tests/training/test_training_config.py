"""Training configs: strict YAML, command-line overrides, one-line errors, shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app
from mimicbrush_cli.cli.train import parse_overrides
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.training.config import DEFAULT_TRAINABLE, TrainConfig, load_train_config

CONFIGS = Path(__file__).parents[2] / "configs"


def _train_cli(tmp_path, config: dict, *args: str):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return CliRunner().invoke(app, ["train", "--config", str(path), "--no-progress", *args])


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_defaults_follow_the_paper_recipe():
    config = TrainConfig()
    assert config.trainable == DEFAULT_TRAINABLE == ("imitative_unet", "image_projection", "depth_guider")
    assert (config.optimizer.name, config.optimizer.lr) == ("adam", 1e-5)
    assert (config.objective.reference_dropout, config.objective.depth_dropout) == (0.1, 0.5)


@pytest.mark.parametrize("config, message", [
    ({"steps": 3, "stepz": 4}, "unknown config key stepz"),
    ({"optimizer": {"learning_rate": 1e-4}}, "unknown config key optimizer.learning_rate"),
    ({"batch_size": "two"}, "config key batch_size must be an integer"),
    ({"trainable": ["imitative_unet", "unet"]}, "config key trainable[1] must be one of"),
    ({"trainable": ["imitative_unet", "vae"]}, "the edit objective keeps them frozen"),
    ({"steps": 0}, "config key steps must be at least 1, got 0"),
    ({"objective": {"reference_dropout": 1.5}}, "reference_dropout must be a probability"),
    ({"model": {"init": "stable-diffusion"}}, "model.sd15 is required"),
])
def test_bad_config_is_a_one_line_error(tmp_path, config, message):
    assert message in _one_error_line(_train_cli(tmp_path, config))


def test_missing_data_is_a_one_line_error(tmp_path):
    line = _one_error_line(_train_cli(tmp_path, {"data": {"shard_dirs": [str(tmp_path / "nowhere")]}}))
    assert "prepared data folder not found" in line
    assert "no prepared data" in _one_error_line(_train_cli(tmp_path, {"steps": 1}))


def test_command_line_overrides_config_keys(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"steps": 10, "optimizer": {"lr": 1e-5}}))
    overrides = parse_overrides(["optimizer.lr=3e-4", "steps=7", "trainable=[imitative_unet]"])
    config = load_train_config(path, {**overrides, "output_dir": tmp_path / "run"})
    assert (config.optimizer.lr, config.steps, config.output_dir) == (3e-4, 7, tmp_path / "run")
    assert config.trainable == ("imitative_unet",)
    with pytest.raises(MimicBrushError, match="unknown config key optimizer.lrr"):
        load_train_config(path, {"optimizer.lrr": "1"})
    assert "--set expects KEY=VALUE" in _one_error_line(_train_cli(tmp_path, {}, "--set", "steps"))


@pytest.mark.parametrize("name", ["train_tiny.yaml", "train_released.yaml", "train_sd15.yaml"])
def test_shipped_configs_load(name):
    config = load_train_config(CONFIGS / name)
    assert config.data.shard_dirs and config.steps > 0


@pytest.mark.parametrize("name", ["ddp.yaml", "fsdp.yaml", "deepspeed_zero2.yaml"])
def test_shipped_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(CONFIGS / "accelerate" / name))
    assert config.num_processes == 8 and config.mixed_precision == "bf16"
