"""Bad input on the command line: one line naming the problem, exit code 2, before any work is done."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file
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


def test_an_export_folder_with_other_files_is_refused_before_training(tmp_path):
    # A model folder there is this run's earlier export, replaced at the end; anything else is refused at once
    # (it used to be refused only after training, at the export).
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": {"init": "random", "size": "tiny"}, "steps": 1,
                                      "output_dir": str(tmp_path / "run"), "export": str(tmp_path / "notes")}))
    line = one_error_line("train", "--config", config, "--no-progress")
    assert line == (f"error: output folder {tmp_path / 'notes'} exists and is not empty "
                    "(and is not a model folder to replace)")
    assert not (tmp_path / "run").exists()
    line = one_error_line("convert", tmp_path / "released", tmp_path / "notes")
    assert line == f"error: output folder {tmp_path / 'notes'} exists and is not empty"


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


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.mark.parametrize("component, key", [("vae", "decoder.conv_in.bias"), ("image_projection", "projector.weight")])
def test_weights_file_with_wrong_keys_names_the_file_and_the_keys(photo_files, model_copy, component, key):
    path = model_copy / component / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    state["renamed"] = state.pop(key)
    save_file(state, path)
    line = one_error_line("edit", photo_files["source"], photo_files["reference"], photo_files["mask"],
                          "-o", photo_files["source"].parent / "out.png", "--weights", model_copy, "--device", "cpu")
    assert line == (f"error: cannot load model folder {model_copy}: {path} does not hold the {component} weights "
                    f"(missing {key}; unexpected renamed)")


@pytest.mark.parametrize("component", ["image_encoder", "depth_estimator"])
def test_transformers_weights_file_with_wrong_keys_names_the_file_and_the_key(photo_files, model_copy, component):
    # transformers would load such a file as random weights with a warning, and the edit would run.
    path = model_copy / component / "model.safetensors"
    state = load_file(path)
    key = sorted(state)[0]
    state["renamed"] = state.pop(key)
    save_file(state, path, metadata={"format": "pt"})
    line = one_error_line("edit", photo_files["source"], photo_files["reference"], photo_files["mask"],
                          "-o", photo_files["source"].parent / "out.png", "--weights", model_copy, "--device", "cpu")
    assert line.startswith(f"error: cannot load model folder {model_copy}: {model_copy / component} does not hold "
                           f"the {component} weights (missing "), line
    assert "unexpected renamed" in line
    assert not (photo_files["source"].parent / "out.png").exists()


def test_model_folder_without_vae_names_the_vae_folder(photo_files, model_copy):
    shutil.rmtree(model_copy / "vae")
    line = one_error_line("edit", photo_files["source"], photo_files["reference"], photo_files["mask"],
                          "-o", photo_files["source"].parent / "out.png", "--weights", model_copy, "--device", "cpu")
    assert line == (f"error: cannot load model folder {model_copy}: it has no vae/ folder "
                    "(model_index.json lists a vae component)")


def test_prepare_set_inputs_per_shard_0_is_refused(tmp_path):
    line = one_error_line("prepare", tmp_path, "-o", tmp_path / "out", "--set", "inputs_per_shard=0")
    assert line == "error: config key inputs_per_shard must be at least 1, got 0"


def test_prepare_recipe_with_negative_sample_fps_is_refused(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("sample_fps: -1\n")
    line = one_error_line("prepare", tmp_path, "-o", tmp_path / "out", "--recipe", recipe)
    assert line == "error: config key sample_fps must be above 0, got -1.0"
