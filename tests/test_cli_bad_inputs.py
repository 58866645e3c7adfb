"""Bad input on the command line: one line naming the problem, exit code 2, before any work is done."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.loading import load_pipeline_folder

runner = CliRunner()


def one_error_line(*args) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def test_prepare_output_under_a_file(tmp_path):
    (tmp_path / "videos").mkdir()
    line = one_error_line("prepare", tmp_path / "videos", "-o", a_file(tmp_path) / "data")
    assert line == f"error: cannot write {tmp_path / 'a-file' / 'data'}: {tmp_path / 'a-file'} is a file, not a folder"


def test_prepare_output_that_is_a_file(tmp_path):
    (tmp_path / "videos").mkdir()
    line = one_error_line("prepare", tmp_path / "videos", "-o", a_file(tmp_path))
    assert line == f"error: output {tmp_path / 'a-file'} is a file, not a folder"


def test_convert_destination_under_a_file(tmp_path):
    line = one_error_line("convert", tmp_path / "released", a_file(tmp_path) / "model")
    assert line.endswith(f"{tmp_path / 'a-file'} is a file, not a folder")


def test_train_output_under_a_file_is_refused_before_training(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": {"init": "random", "size": "tiny"}, "steps": 1,
                                      "output_dir": str(a_file(tmp_path) / "run")}))
    line = one_error_line("train", "--config", config, "--no-progress")
    assert line.endswith(f"{tmp_path / 'a-file'} is a file, not a folder")
    line = one_error_line("train", "--config", config, "--no-progress", "--output-dir", tmp_path / "run",
                          "--export", tmp_path / "a-file" / "model")
    assert line.endswith(f"{tmp_path / 'a-file'} is a file, not a folder")


def test_train_steps_0_is_refused(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": {"init": "random", "size": "tiny"}}))
    result = runner.invoke(app, ["train", "--config", str(config), "--steps", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--steps': Input should be greater than or equal to 1" in result.output


def test_prepare_set_without_a_value_is_the_same_error_as_train(tmp_path):
    line = one_error_line("prepare", tmp_path, "-o", tmp_path / "out", "--set", "ssim_min")
    assert line == "error: --set expects KEY=VALUE (e.g. optimizer.lr=1e-4), got 'ssim_min'"


def test_weights_that_name_a_file_say_it_is_a_file(tmp_path):
    weights = a_file(tmp_path)
    with pytest.raises(MimicBrushError, match=f"--weights takes a folder, and {weights} is a file"):
        load_pipeline_folder(weights)
