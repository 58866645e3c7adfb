"""Bad input on the command line: one line naming the problem, exit code 2, before any work is done."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.loading import load_pipeline_folder

from one_line import one_error_line

runner = CliRunner()


def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


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


# Output paths. Each command that writes checks its output before any model loads or any work starts: the
# `no_work` fixture makes reaching that point an exception of its own, so a check that lets a bad output through
# shows as that exception (exit 1), not as a one-line error.

class WorkStarted(Exception):
    """Raised where a command would load a model or start its work: every check before it has passed."""


@pytest.fixture
def no_work(monkeypatch):
    def start(*args, **kwargs):
        raise WorkStarted

    for module, name in (("mimicbrush_cli.loading", "load_pipeline"), ("mimicbrush_cli.loading", "convert_released_weights"),
                         ("mimicbrush_cli.training", "train"), ("mimicbrush_cli.data.prepare", "prepare"),
                         ("mimicbrush_cli.benchmark.runner", "run_benchmark"), ("mimicbrush_cli.benchmark.recon", "run_recon")):
        monkeypatch.setattr(importlib.import_module(module), name, start)  # (the package `data` names its function prepare)


def started_work(*args) -> None:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert isinstance(result.exception, WorkStarted), result.output


WRITERS = ["edit", "convert", "train", "train --export", "benchmark texture", "benchmark part", "benchmark recon",
           "prepare"]


def output_in(writer: str, folder: Path) -> Path:
    """What `writer` writes inside `folder`: an image for `edit`, a folder for the others."""
    return folder / ("edited.png" if writer == "edit" else "results")


def writer_arguments(writer: str, output: Path, tmp_path: Path, photo_files) -> list:
    """The command line of `writer` with `output` as what it writes."""
    inputs = tmp_path / "inputs"
    for folder in ("videos", "benchmark", "held-out/shards", "released"):
        (inputs / folder).mkdir(parents=True, exist_ok=True)
    config = inputs / "train.yaml"
    config.write_text(yaml.safe_dump({"model": {"init": "random", "size": "tiny"}, "steps": 1}))
    model = ["--model", "random-tiny", "--device", "cpu"]
    return {
        "edit": ["edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", output, *model],
        "convert": ["convert", inputs / "released", output],
        "train": ["train", "--config", config, "--no-progress", "--output-dir", output],
        "train --export": ["train", "--config", config, "--no-progress", "--output-dir", inputs / "run",
                           "--export", output],
        "benchmark texture": ["benchmark", "texture", inputs / "benchmark", "-o", output, *model],
        "benchmark part": ["benchmark", "part", inputs / "benchmark", "-o", output, *model],
        "benchmark recon": ["benchmark", "recon", inputs / "held-out", "-o", output, *model],
        "prepare": ["prepare", inputs / "videos", "-o", output],
    }[writer]


@pytest.mark.parametrize("writer", WRITERS)
def test_an_output_folder_that_cannot_be_created_is_refused_before_any_work(writer, tmp_path, photo_files, no_work):
    # Root is told yes by os.access for /proc, where nothing can be created: only creating it tells.
    folder = Path("/proc") / f"mimicbrush-test-{tmp_path.name}"
    output = output_in(writer, folder)
    line = one_error_line(*writer_arguments(writer, output, tmp_path, photo_files))
    assert line.startswith(f"error: cannot write {output}: cannot create folder {folder} ("), line


@pytest.mark.parametrize("writer", WRITERS)
def test_an_output_under_a_file_is_refused_before_any_work(writer, tmp_path, photo_files, no_work):
    output = output_in(writer, a_file(tmp_path))
    line = one_error_line(*writer_arguments(writer, output, tmp_path, photo_files))
    assert line == f"error: cannot write {output}: {tmp_path / 'a-file'} is a file, not a folder"
    assert (tmp_path / "a-file").read_text() == "not a folder"


@pytest.mark.parametrize("writer", WRITERS)
def test_an_output_of_the_wrong_kind_is_refused_before_any_work(writer, tmp_path, photo_files, no_work):
    if writer == "edit":  # an image path that is a folder
        output = tmp_path / "folder.png"
        output.mkdir()
        expected = f"error: output {output} is a directory"
    else:
        output = a_file(tmp_path)
        expected = f"error: output {output} is a file, not a folder"
    assert one_error_line(*writer_arguments(writer, output, tmp_path, photo_files)) == expected


@pytest.mark.parametrize("writer", WRITERS)
def test_missing_output_folders_that_can_be_made_are_no_obstacle_and_the_check_leaves_no_trace(
        writer, tmp_path, photo_files, no_work):
    started_work(*writer_arguments(writer, output_in(writer, tmp_path / "new" / "deeper"), tmp_path, photo_files))
    assert not (tmp_path / "new").exists()


def really_writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.mark.parametrize("writer", WRITERS)
def test_an_output_in_a_folder_without_write_permission_is_refused_where_writing_would_fail(
        writer, tmp_path, photo_files, no_work):
    # As root, a 0o500 folder can still be written (and os.access says yes either way); as another user it cannot.
    # The command must agree with what really happens. (test_outputs.py checks the refusal as another user.)
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        arguments = writer_arguments(writer, output_in(writer, folder), tmp_path, photo_files)
        if really_writable(folder):
            started_work(*arguments)
        else:
            assert f"{folder} is not writable" in one_error_line(*arguments)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_edit_creates_missing_output_folders(photo_files, tmp_path):
    output = tmp_path / "new" / "deeper" / "edited.png"
    result = runner.invoke(app, [str(arg) for arg in ("edit", photo_files["source"], photo_files["reference"],
                                                      photo_files["mask"], "-o", output, "--model", "random-tiny",
                                                      "--steps", 1, "--device", "cpu")])
    assert result.exit_code == 0, result.output
    assert Image.open(output).size == Image.open(photo_files["source"]).size
    assert os.listdir(output.parent) == ["edited.png"]


def test_edit_replaces_an_existing_output_by_renaming_a_complete_file_over_it(photo_files, tmp_path, monkeypatch):
    output = tmp_path / "edited.png"
    Image.new("RGB", (8, 8)).save(output)
    old = output.read_bytes()
    os.link(output, tmp_path / "old-link.png")  # a rename leaves the old file's content under its other name
    arguments = ["edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", output,
                 "--model", "random-tiny", "--steps", 1, "--device", "cpu"]
    # An edit that fails after the model loaded keeps the old output whole.
    with monkeypatch.context() as patch:
        patch.setattr("mimicbrush_cli.edit.edit_images", lambda *args, **kwargs: 1 / 0)
        failed = runner.invoke(app, [str(arg) for arg in arguments])
    assert isinstance(failed.exception, ZeroDivisionError)
    assert output.read_bytes() == old
    result = runner.invoke(app, [str(arg) for arg in arguments])
    assert result.exit_code == 0, result.output
    assert Image.open(output).size == Image.open(photo_files["source"]).size
    assert (tmp_path / "old-link.png").read_bytes() == old
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


@pytest.mark.parametrize("case", ["source", "reference", "mask", "a later sample", "a link to the source"])
def test_an_edit_output_that_is_one_of_its_inputs_is_refused_and_the_input_kept(case, photo_files, tmp_path, no_work):
    inputs = [photo_files["source"], photo_files["reference"], photo_files["mask"]]
    before = {path: path.read_bytes() for path in inputs}
    options = []
    if case in ("source", "reference", "mask"):
        output, what, named = photo_files[case], {"mask": "mask"}.get(case, f"{case} image"), photo_files[case]
    elif case == "a later sample":  # --num-samples 2 -o source.png writes source-00.png and source-01.png
        output = tmp_path / "x.png"
        inputs[0] = photo_files["source"].rename(tmp_path / "x-01.png")
        before = {path: path.read_bytes() for path in inputs}
        options, what, named = ["--num-samples", 2], "source image", inputs[0]
    else:
        output = tmp_path / "link.png"
        output.symlink_to(photo_files["source"])
        what, named = "source image", photo_files["source"]
    line = one_error_line("edit", *inputs, "-o", output, *options, "--model", "random-tiny")
    assert line.startswith("error: output ") and f"would overwrite the {what} {named}" in line, line
    assert {path: path.read_bytes() for path in inputs} == before


def train_config_file(tmp_path, **values) -> Path:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": {"init": "random", "size": "tiny"}, "steps": 1, **values}))
    return config


@pytest.mark.parametrize("case", ["the run folder", "a folder above the run folder", "the starting model"])
def test_a_train_export_that_would_replace_an_input_is_refused_before_training(case, tmp_path, tiny_model_dir,
                                                                               no_work):
    run = tmp_path / "experiment" / "run"
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    export, what, named = {"the run folder": (run, "training run folder (output_dir)", run),
                           "a folder above the run folder": (run.parent, "training run folder (output_dir)", run),
                           "the starting model": (model, "starting model (model.path)", model)}[case]
    config = train_config_file(tmp_path, model={"init": "folder", "path": str(model)}, output_dir=str(run))
    line = one_error_line("train", "--config", config, "--no-progress", "--export", export)
    assert line.startswith(f"error: output {export} would ") and f"the {what} {named}" in line, line
    assert (model / "model_index.json").is_file() and not run.exists()


def test_convert_into_its_own_source_is_refused(tiny_released_dir, tmp_path, no_work):
    source = Path(shutil.copytree(tiny_released_dir, tmp_path / "released"))
    line = one_error_line("convert", source, source)
    assert line == f"error: output folder {source} exists and is not empty"
    assert (source / "MimicBrush" / "mimicbrush" / "mimicbrush.bin").is_file()


# Weights.

def edit_with_weights(photo_files, weights) -> str:
    output = photo_files["source"].parent / "out.png"
    line = one_error_line("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", output,
                          "--weights", weights, "--device", "cpu", "--steps", 1)
    assert not output.exists()
    return line


def test_weights_that_name_a_file_are_one_line(photo_files, tmp_path):
    weights = a_file(tmp_path)
    assert edit_with_weights(photo_files, weights).startswith(
        f"error: --weights takes a folder, and {weights} is a file")


def test_weights_folder_that_does_not_exist_is_one_line(photo_files, tmp_path):
    assert edit_with_weights(photo_files, tmp_path / "nowhere") == f"error: weights folder not found: {tmp_path / 'nowhere'}"


def test_an_empty_weights_folder_is_one_line(photo_files, tmp_path):
    (tmp_path / "empty").mkdir()
    assert edit_with_weights(photo_files, tmp_path / "empty") == (
        f"error: {tmp_path / 'empty'} is neither a model folder (model_index.json) nor the released layout "
        "(cleansd/ + MimicBrush/)")


@pytest.mark.parametrize("component", ["vae", "image_encoder"])
def test_a_truncated_safetensors_file_is_one_line_naming_it(photo_files, model_copy, component):
    path = next((model_copy / component).glob("*.safetensors"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    line = edit_with_weights(photo_files, model_copy)
    assert line.startswith(f"error: cannot load model folder {model_copy}: ") and str(path.parent) in line, line


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran-code",))


@pytest.fixture
def released_copy(tiny_released_dir, tmp_path):
    return Path(shutil.copytree(tiny_released_dir, tmp_path / "released"))


@pytest.mark.parametrize("file", ["MimicBrush/mimicbrush/mimicbrush.bin", "MimicBrush/depth_model/depth_anything_vitb14.pth",
                                  "MimicBrush/sd-vae-ft-mse/diffusion_pytorch_model.bin"])
def test_a_pickle_in_the_released_layout_that_would_run_code_is_refused(file, photo_files, released_copy,
                                                                        monkeypatch):
    import torch

    monkeypatch.chdir(released_copy)
    torch.save({"unet": RunsCode()}, released_copy / file)
    line = edit_with_weights(photo_files, released_copy)
    assert line.startswith("error: refused to unpickle ") and f"{released_copy / file}: it holds objects other than " \
        "tensors" in line, line
    assert not (released_copy / "ran-code").exists()


def test_a_truncated_released_checkpoint_is_one_line(photo_files, released_copy):
    path = released_copy / "MimicBrush" / "mimicbrush" / "mimicbrush.bin"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    line = edit_with_weights(photo_files, released_copy)
    assert line.startswith(f"error: released checkpoint {path} is not a loadable checkpoint"), line


# Training numbers: every value a run cannot use is refused before any model is built.

HUGE = "99999999999999999999999"  # beyond the 64-bit integers torch and numpy take


@pytest.mark.parametrize("key, value", [
    ("steps", "0"), ("steps", "-5"), ("steps", "1e400"), ("steps", HUGE), ("steps", "many"),
    ("batch_size", "0"), ("gradient_accumulation", "-1"), ("log_every", "0"), ("keep_checkpoints", "-1"),
    ("seed", "-1"), ("seed", HUGE), ("model.seed", "-1"), ("validation.seed", HUGE),
    ("optimizer.lr", "0"), ("optimizer.lr", "-1e-4"), ("optimizer.lr", "nan"), ("optimizer.lr", "inf"),
    ("optimizer.lr", "fast"), ("optimizer.lr", "1e400"),
    ("optimizer.eps", "0"), ("optimizer.eps", "-1"), ("optimizer.eps", "nan"),
    ("optimizer.weight_decay", "-0.1"), ("optimizer.weight_decay", "nan"), ("optimizer.weight_decay", "inf"),
    ("optimizer.betas", "[0.9, nan]"), ("optimizer.betas", "[1.5, 0.999]"), ("optimizer.betas", "[-0.1, 0.999]"),
    ("optimizer.max_grad_norm", "0"), ("optimizer.max_grad_norm", "-1"), ("optimizer.max_grad_norm", "nan"),
    ("optimizer.max_grad_norm", "inf"), ("optimizer.warmup_steps", "-1"),
    ("time_limit", "-1"), ("time_limit", "nan"), ("time_limit", "inf"),
    ("objective.reference_dropout", "nan"), ("objective.kl_weight", "inf"), ("objective.temperature", "nan"),
    ("objective.temperature", "0"), ("objective.crop_size", "-8"),
    ("ema.decay", "1.5"), ("ema.decay", "-0.1"), ("ema.decay", "nan"), ("ema.warmup_power", "0"),
    ("ema.update_after_step", "-1"),
    ("validation.items", "0"), ("validation.steps", "0"), ("validation.guidance", "-1"), ("validation.guidance", "nan"),
    ("data.resolution", "0"), ("data.resolution", "-64"), ("data.resolution", "60"),
])
def test_a_training_number_the_run_cannot_use_is_refused(key, value, tmp_path, no_work):
    line = one_error_line("train", "--config", train_config_file(tmp_path), "--no-progress", "--output-dir",
                          tmp_path / "run", "--set", f"{key}={value}")
    assert line.startswith(f"error: config key {key}"), line
    assert not (tmp_path / "run").exists()
