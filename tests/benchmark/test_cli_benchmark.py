import json

import pytest
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.mark.slow
def test_benchmark_part_end_to_end_on_the_tiny_model(benchmark_dir, metric_models_dir, tiny_model_dir, tmp_path):
    arguments = ["benchmark", "part", benchmark_dir, "--split", "inner", "-o", tmp_path / "out", "--weights",
                 tiny_model_dir, "--steps", 1, "--long-side", 96, "--device", "cpu", "--metrics-models",
                 metric_models_dir]
    result = run(*arguments)
    assert result.exit_code == 0, result.output
    assert "MimicBrush" in result.output and "edited 3, resumed 0" in result.output
    assert json.loads((tmp_path / "out" / "results.json").read_text())["count"] == 3
    again = run(*arguments)
    assert again.exit_code == 0 and "edited 0, resumed 3" in again.output


def test_benchmark_without_metric_weights_offline_is_one_line_error(benchmark_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    result = run("benchmark", "part", benchmark_dir, "--split", "inter", "-o", tmp_path / "out",
                 "--model", "random-tiny")
    assert result.exit_code == 2
    assert "--metrics-models" in result.output and "Traceback" not in result.output
