import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def test_edit_end_to_end_writes_result(photo_files, tiny_model_dir, tmp_path):
    output = tmp_path / "out" / "edited.png"
    result = run("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", output,
                 "--weights", tiny_model_dir, "--steps", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    edited = np.asarray(Image.open(output))
    source = np.asarray(Image.open(photo_files["source"]))
    assert edited.shape == source.shape
    assert not np.array_equal(edited, source)
    assert not list(output.parent.glob(".*tmp"))


def test_edit_batch_and_samples_name_outputs(photo_files, tiny_model_dir, tmp_path):
    files = [photo_files["source"], photo_files["reference"], photo_files["mask"]]
    result = run("edit", *files, *files, "-o", tmp_path / "r.png", "--weights", tiny_model_dir, "--steps", 1,
                 "--num-samples", 2, "--keep-shape")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("r-*.png")) == ["r-00-00.png", "r-00-01.png", "r-01-00.png", "r-01-01.png"]


def test_mean_of_writes_one_result_per_sample_and_is_repeated_by_the_command_line(photo_files, tiny_model_dir,
                                                                                   tmp_path):
    from mimicbrush_cli.edit import edit_command_line
    from mimicbrush_cli.settings import EditSettings

    files = [photo_files["source"], photo_files["reference"], photo_files["mask"], "--weights", tiny_model_dir, "--steps", 1]
    result = run("edit", *files, "-o", tmp_path / "r.png", "--num-samples", 2, "--mean-of", 3)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("r*.png")) == ["r-00.png", "r-01.png"]
    plain = run("edit", *files, "-o", tmp_path / "plain.png")
    assert plain.exit_code == 0, plain.output
    first, alone = (np.asarray(Image.open(tmp_path / name)) for name in ("r-00.png", "plain.png"))
    assert not np.array_equal(first, alone)
    assert run("edit", *files, "-o", tmp_path / "zero.png", "--mean-of", 0).exit_code == 2
    assert not (tmp_path / "zero.png").exists()
    assert "--mean-of 4" in edit_command_line("s.png", "r.png", "m.png", "o.png", EditSettings(mean_of=4))
    assert "--mean-of" not in edit_command_line("s.png", "r.png", "m.png", "o.png", EditSettings())


def test_reference_timestep_needs_the_cache_and_is_repeated_by_the_command_line(photo_files, tiny_model_dir, tmp_path):
    from mimicbrush_cli.edit import edit_command_line
    from mimicbrush_cli.settings import EditSettings

    files = [photo_files["source"], photo_files["reference"], photo_files["mask"], "--weights", tiny_model_dir,
             "--steps", 2, "--scheduler", "dpmpp-2m"]
    refused = run("edit", *files, "-o", tmp_path / "refused.png", "--reference-timestep", 999)
    assert refused.exit_code == 2 and refused.output.splitlines()[-1] == (
        "error: --reference-timestep sets the timestep of the reference cache: add --reference-cache (or --fast)")
    beyond = run("edit", *files, "-o", tmp_path / "beyond.png", "--reference-cache", "--reference-timestep", 1000)
    assert beyond.exit_code == 2 and "at most 999" in beyond.output.splitlines()[-1]
    assert not (tmp_path / "refused.png").exists() and not (tmp_path / "beyond.png").exists()
    for name, options in (("first", []), ("noisiest", ["--reference-timestep", 999])):
        result = run("edit", *files, "-o", tmp_path / f"{name}.png", "--reference-cache", *options)
        assert result.exit_code == 0, result.output
    assert not np.array_equal(*(np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("first", "noisiest")))
    fast = run("edit", *files, "-o", tmp_path / "fast.png", "--fast", "--reference-timestep", 999)
    assert fast.exit_code == 0, fast.output
    assert "--reference-timestep 999" in edit_command_line(
        "s.png", "r.png", "m.png", "o.png", EditSettings(reference_cache=True, reference_timestep=999))


def test_paste_back_and_generator_device_options(photo_files, tiny_model_dir, tmp_path):
    common = [photo_files["source"], photo_files["reference"], photo_files["mask"], "--weights", tiny_model_dir,
              "--steps", 1, "--no-crop"]
    outputs = {}
    for name, options in {"default": [], "lanczos": ["--paste-back", "lanczos"],
                          "device": ["--generator-device", "device"]}.items():
        outputs[name] = tmp_path / f"{name}.png"
        result = run("edit", *common, "-o", outputs[name], *options)
        assert result.exit_code == 0, result.output
    images = {name: np.asarray(Image.open(path)) for name, path in outputs.items()}
    assert not np.array_equal(images["lanczos"], images["default"])
    np.testing.assert_array_equal(images["device"], images["default"])  # on the CPU the two draw the same noise
    assert run("edit", *common, "--paste-back", "bicubic").exit_code == 2


def test_random_tiny_model_runs_without_weights(photo_files, tmp_path):
    output = tmp_path / "noise.png"
    result = run("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", output,
                 "--model", "random-tiny", "--steps", 1)
    assert result.exit_code == 0, result.output
    assert output.is_file()


@pytest.mark.parametrize("problem", ["missing", "not-an-image", "size-mismatch", "empty-mask"])
def test_bad_input_gives_one_line_error_and_no_output(photo_files, tiny_model_dir, tmp_path, problem):
    mask = photo_files["mask"]
    source = photo_files["source"]
    if problem == "missing":
        source = tmp_path / "nope.png"
    elif problem == "not-an-image":
        source = tmp_path / "text.png"
        source.write_text("hello")
    elif problem == "size-mismatch":
        Image.new("L", (10, 10), 255).save(mask)
    elif problem == "empty-mask":
        Image.new("L", Image.open(source).size, 0).save(mask)
    output = tmp_path / "edited.png"
    result = run("edit", source, photo_files["reference"], mask, "-o", output, "--weights", tiny_model_dir)
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    assert not output.exists()


def test_incomplete_weights_folder_is_a_one_line_error(photo_files, tmp_path):
    (tmp_path / "weights" / "MimicBrush").mkdir(parents=True)
    result = run("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o",
                 tmp_path / "x.png", "--weights", tmp_path / "weights")
    assert result.exit_code == 2 and "weights folder incomplete" in result.output


def test_hub_download_offline_names_weights_option(photo_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o",
                 tmp_path / "x.png", "--model", "released")
    assert result.exit_code == 2 and "--weights" in result.output


def test_keep_shape_without_depth_model_explains(photo_files, tiny_pipeline_without_depth, tmp_path):
    from mimicbrush_cli.edit import EditJob, plan_output_paths, run_edits
    from mimicbrush_cli.errors import MimicBrushError
    from mimicbrush_cli.pipeline import EditSettings

    job = EditJob(photo_files["source"], photo_files["reference"], photo_files["mask"])
    with pytest.raises(MimicBrushError, match="--keep-shape needs a depth model"):
        run_edits([job], EditSettings(steps=1, keep_shape=True), plan_output_paths([job], tmp_path / "o.png", 1),
                  pipeline=tiny_pipeline_without_depth)
    assert not (tmp_path / "o.png").exists()


def test_result_file_gets_ordinary_permissions(photo_files, tiny_model_dir, tmp_path):
    import os
    import stat

    output = tmp_path / "edited.png"
    result = run("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", output,
                 "--weights", tiny_model_dir, "--steps", 1)
    assert result.exit_code == 0, result.output
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~umask


def test_seed_beyond_64_bits_is_a_usage_error_not_a_traceback(photo_files, tiny_model_dir, tmp_path):
    result = run("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o",
                 tmp_path / "out.png", "--weights", tiny_model_dir, "--seed", 2**63)
    assert result.exit_code == 2 and "Traceback" not in result.output and "seed" in result.output.lower()
    assert not (tmp_path / "out.png").exists()


def test_mask_box_edits_the_same_as_a_mask_file_of_that_box(photo_files, tiny_model_dir, tmp_path):
    box_mask = np.zeros((300, 451), np.uint8)
    box_mask[40:120, 100:250] = 255  # X0,Y0,X1,Y1 = 100,40,250,120, the far edges exclusive
    Image.fromarray(box_mask).save(tmp_path / "box.png")
    common = ["--weights", tiny_model_dir, "--steps", 1]
    from_file = run("edit", photo_files["source"], photo_files["reference"], tmp_path / "box.png",
                    "-o", tmp_path / "file.png", *common)
    from_box = run("edit", photo_files["source"], photo_files["reference"], "--mask-box", "100,40,250,120",
                   "-o", tmp_path / "box-option.png", *common)
    assert from_file.exit_code == 0 and from_box.exit_code == 0, from_file.output + from_box.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "box-option.png")),
                                  np.asarray(Image.open(tmp_path / "file.png")))


@pytest.mark.parametrize("box, extra, message", [
    ("100,40,250", [], "must be four whole numbers"),
    ("a,b,c,d", [], "must be four whole numbers"),
    ("250,40,100,120", [], "0 <= X0 < X1"),
    ("100,40,452,120", [], "outside the 451x300 image"),
    ("100,40,250,120", ["mask"], "give SRC REF pairs"),
])
def test_bad_mask_box_is_a_one_line_error(photo_files, tiny_model_dir, tmp_path, box, extra, message):
    extra = [photo_files["mask"]] if extra else []
    output = tmp_path / "edited.png"
    result = run("edit", photo_files["source"], photo_files["reference"], *extra, "--mask-box", box, "-o", output,
                 "--weights", tiny_model_dir, "--steps", 1)
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not output.exists()


def test_output_under_a_file_is_a_one_line_error_before_the_edit(photo_files, tmp_path):
    (tmp_path / "plain-file").write_text("not a folder")
    output = tmp_path / "plain-file" / "sub" / "edited.png"
    # --weights names no model: reaching the model would be a different error
    result = run("edit", photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", output,
                 "--weights", tmp_path / "no-such-model")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "is a file, not a folder" in lines[0], result.output


@pytest.mark.slow  # three edits
def test_fast_is_its_preset_of_solver_steps_and_reference_cache(photo_files, tiny_model_dir, tmp_path):
    from mimicbrush_cli.settings import FAST_PRESET

    common = [photo_files["source"], photo_files["reference"], photo_files["mask"], "--weights", tiny_model_dir]
    spelled_out = ["--scheduler", FAST_PRESET["scheduler"], "--steps", FAST_PRESET["steps"], "--reference-cache"]
    for name, options in {"fast": ["--fast"], "spelled": spelled_out, "exact": ["--steps", FAST_PRESET["steps"]]}.items():
        result = run("edit", *common, "-o", tmp_path / f"{name}.png", *options)
        assert result.exit_code == 0, result.output
    images = {name: np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("fast", "spelled", "exact")}
    np.testing.assert_array_equal(images["fast"], images["spelled"])
    assert not np.array_equal(images["fast"], images["exact"])
    assert run("edit", *common, "--scheduler", "heun").exit_code == 2
