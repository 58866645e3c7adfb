"""The browser page's logic without a browser: inputs, masks, limits, one edit at a time, outputs."""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app
from mimicbrush_cli.edit import edit_command_line
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.imaging import load_mask
from mimicbrush_cli.loading import load_pipeline
from mimicbrush_cli.pipeline import EditSettings
from mimicbrush_cli.settings import OPTION_SETTINGS, SETTINGS, resolve_settings
from mimicbrush_cli.model_names import BUNDLED_MODEL_DIR
from mimicbrush_cli.web.session import (EditSession, ServeConfig, box_from_corners, check_upload, find_examples,
                                        painted_mask)


def layer(shape, painted):
    """An RGBA layer with alpha 255 in the `painted` slices and 0 elsewhere."""
    pixels = np.zeros(shape[:2] + (4,), np.uint8)
    pixels[painted] = (10, 20, 30, 255)
    return Image.fromarray(pixels, "RGBA")


@pytest.fixture
def page_inputs(photos):
    source, reference, _ = photos
    return Image.fromarray(source).convert("RGBA"), Image.fromarray(reference)


def test_painted_mask_is_the_union_of_layers_and_ignores_erased_pixels():
    first = layer((20, 30), np.s_[2:5, 3:9])
    second = np.asarray(layer((20, 30), np.s_[10:12, 0:4])).copy()
    second[10, 0, 3] = 0  # erased
    mask = painted_mask([first, Image.fromarray(second, "RGBA")], (20, 30, 3))
    expected = np.zeros((20, 30), bool)
    expected[2:5, 3:9] = True
    expected[10:12, 0:4] = True
    expected[10, 0] = False
    np.testing.assert_array_equal(mask, expected)


def test_box_replaces_the_mask_image_which_replaces_the_painting(tiny_pipeline, page_inputs):
    background, reference = page_inputs
    session = EditSession(tiny_pipeline)
    painted = [layer((300, 451), np.s_[0:10, 0:10])]
    mask_image = np.zeros((300, 451), np.uint8)
    mask_image[200:210, 300:310] = 255
    mask_image = Image.fromarray(mask_image)
    _, _, mask = session.read_inputs(background, painted, reference, "100,50,200,80", mask_image=mask_image)
    expected = np.zeros((300, 451), bool)
    expected[50:80, 100:200] = True
    np.testing.assert_array_equal(mask, expected)
    _, _, mask = session.read_inputs(background, painted, reference, "", mask_image=mask_image)
    assert mask.sum() == 100 and mask[200:210, 300:310].all()
    _, _, inverted = session.read_inputs(background, painted, reference, invert=True)
    assert inverted.sum() == 300 * 451 - 100 and not inverted[:10, :10].any()


@pytest.mark.parametrize("problem, message", [
    ("no-source", "no source image"),
    ("no-reference", "no reference image"),
    ("empty-mask", "mask is empty"),
    ("layer-size", "painted layer size 10x10 differs from source size 451x300"),
    ("box-outside", "mask box 400,0,500,10 is outside the 451x300 image"),
    ("box-malformed", "must be four whole numbers"),
    ("too-many-pixels", "source image is 451x300 = 0.1 MP, over the limit of 0.1 MP"),
])
def test_bad_page_inputs_are_one_line_errors(tiny_pipeline, page_inputs, problem, message):
    background, reference = page_inputs
    layers, box, config = [layer((300, 451), np.s_[100:120, 100:200])], "", ServeConfig()
    if problem == "no-source":
        background = None
    elif problem == "no-reference":
        reference = None
    elif problem == "empty-mask":
        layers = []
    elif problem == "layer-size":
        layers = [layer((10, 10), np.s_[:, :])]
    elif problem == "box-outside":
        box = "400,0,500,10"
    elif problem == "box-malformed":
        box = "1,2,3"
    elif problem == "too-many-pixels":
        config = ServeConfig(max_pixels=451 * 300 - 1)
    with pytest.raises(MimicBrushError) as error:
        EditSession(tiny_pipeline, config).read_inputs(background, layers, reference, box)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_two_clicked_corners_give_the_box_that_includes_both_pixels():
    assert box_from_corners((30, 40), (10, 5)) == "10,5,31,41"
    assert box_from_corners((10, 5), (30, 40)) == "10,5,31,41"


def test_upload_that_is_not_an_image_names_the_file_not_the_server_path(tmp_path):
    upload = tmp_path / "gradio-cache-1234" / "notes.png"
    upload.parent.mkdir()
    upload.write_text("not an image")
    with pytest.raises(MimicBrushError) as error:
        check_upload(upload, "notes.png", "reference image", max_pixels=10**6)
    assert str(error.value) == "reference image notes.png is not a readable image"
    Image.new("RGB", (40, 30)).save(upload)
    assert check_upload(upload, "notes.png", "reference image", max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(MimicBrushError, match="over the limit"):
        check_upload(upload, "notes.png", "reference image", max_pixels=1199)


def test_examples_are_found_next_to_the_package():
    examples = find_examples()
    assert set(examples) == {"motorcycle", "cat"}
    assert examples["motorcycle"][2].name == "motorcycle_mask.png" and examples["cat"][1].name == "coffee.png"


def test_edit_writes_pngs_and_its_command_reproduces_it(tiny_model_dir, photos, tmp_path, monkeypatch):
    source, reference, mask = photos
    config = ServeConfig(model_options=("--weights", str(tiny_model_dir), "--device", "cpu"))
    session = EditSession(load_pipeline(weights=tiny_model_dir, device="cpu"), config, folder=tmp_path / "served")
    settings = EditSettings(steps=2, seed=3, num_samples=2, crop=False)
    steps = []
    result = session.edit(source, reference, mask, settings, callback=lambda step, total: steps.append((step, total)))
    assert steps == [(1, 2), (2, 2)]
    assert [path.name for path in result.sample_paths] == ["edited-00.png", "edited-01.png"]
    np.testing.assert_array_equal(load_mask(result.mask_path), mask)
    assert result.command == ("mimicbrush edit source.png reference.png mask.png -o edited.png --steps 2 --no-crop "
                              f"--seed 3 --num-samples 2 --weights {tiny_model_dir} --device cpu")

    # Save the inputs as the command names them and run it: the same images come out.
    monkeypatch.chdir(tmp_path)
    Image.fromarray(source).save("source.png")
    Image.fromarray(reference).save("reference.png")
    (tmp_path / "mask.png").write_bytes(result.mask_path.read_bytes())
    words = result.command.split()[1:]
    cli = CliRunner().invoke(app, words)
    assert cli.exit_code == 0, cli.output
    for index, served in enumerate(result.sample_paths):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"edited-{index:02d}.png")),
                                      np.asarray(Image.open(served)))


class SlowPipeline:
    """Records how many edits run at once."""

    has_depth_model = False
    has_positional_prior = False

    def __init__(self):
        self.running = self.most = 0
        self.guard = threading.Lock()

    def __call__(self, sources, references, masks, settings, callback=None):
        with self.guard:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)
        with self.guard:
            self.running -= 1
        return [[source] for source in sources]


def test_one_edit_at_a_time_on_the_model(photos, tmp_path):
    source, reference, mask = photos
    pipeline = SlowPipeline()
    session = EditSession(pipeline, folder=tmp_path)
    threads = [threading.Thread(target=session.edit, args=(source, reference, mask, EditSettings(steps=1)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pipeline.most == 1


def test_keep_shape_without_depth_model_is_an_error_in_the_session(photos, tiny_pipeline_without_depth, tmp_path):
    source, reference, mask = photos
    with pytest.raises(MimicBrushError, match="--keep-shape needs a depth model"):
        EditSession(tiny_pipeline_without_depth, folder=tmp_path).edit(source, reference, mask,
                                                                       EditSettings(steps=1, keep_shape=True))
    assert list(tmp_path.iterdir()) == []


def test_command_line_names_only_settings_that_differ_from_the_defaults():
    assert edit_command_line("a b.png", "r.png", "m.png", "o.png", EditSettings()) == \
        "mimicbrush edit 'a b.png' r.png m.png -o o.png"
    settings = EditSettings(guidance=7.5, keep_shape=True, reference_cache=True, reference_locality=0.07)
    assert edit_command_line("s.png", "r.png", "m.png", "o.png", settings, ("--model", "demo")) == \
        ("mimicbrush edit s.png r.png m.png -o o.png --guidance 7.5 --keep-shape --reference-cache "
         "--reference-locality 0.07 --model demo")
    fast = resolve_settings(EditSettings(), {}, fast=True)
    assert edit_command_line("s.png", "r.png", "m.png", "o.png", fast) == \
        "mimicbrush edit s.png r.png m.png -o o.png --steps 6 --scheduler dpmpp-2m --reference-cache"


def test_command_line_names_what_differs_from_the_models_own_defaults(monkeypatch, tmp_path):
    # The bundled model's defaults: its settings repeat as no option; the released ones, against them, as the
    # options (and the words for "none") that undo each.
    bundled = EditSettings.from_model_folder(BUNDLED_MODEL_DIR)
    assert edit_command_line("s.png", "r.png", "m.png", "o.png", bundled, defaults=bundled) == \
        "mimicbrush edit s.png r.png m.png -o o.png"
    line = edit_command_line("s.png", "r.png", "m.png", "o.png", EditSettings(), defaults=bundled)
    assert line == ("mimicbrush edit s.png r.png m.png -o o.png --steps 50 --scheduler ddim --guidance 5 "
                    "--no-reference-cache --reference-locality trained --reference-timestep first")
    # `mimicbrush edit` with those options, on the bundled model, runs at exactly these settings
    seen = []

    def run_edits(jobs, settings, outputs, **options):
        seen.append(settings)
        return []

    monkeypatch.setattr("mimicbrush_cli.edit.run_edits", run_edits)
    words = shlex.split(line)[2:]
    words[words.index("-o") + 1] = str(tmp_path / "o.png")
    result = CliRunner().invoke(app, ["edit", *words, "--model", "demo"])
    assert result.exit_code == 0, result.output
    assert seen == [EditSettings()]


def test_page_disables_keep_shape_without_a_depth_model(tmp_path):
    from mimicbrush_cli.web.page import NO_DEPTH_REASON, build_page

    page = build_page(EditSession(SlowPipeline(), folder=tmp_path))
    keep_shape = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == "keep-shape"]
    assert len(keep_shape) == 1
    assert keep_shape[0].interactive is False and keep_shape[0].info == NO_DEPTH_REASON


def test_page_offers_the_reference_locality_only_with_a_positional_prior(tmp_path):
    from mimicbrush_cli.loading import build_random_pipeline
    from mimicbrush_cli.web.page import NO_PRIOR_REASON, build_page

    def locality(pipeline):
        page = build_page(EditSession(pipeline, folder=tmp_path))
        [block] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == "reference-locality"]
        return block.interactive, block.info

    pipeline = build_random_pipeline("tiny")
    assert locality(pipeline) == (False, NO_PRIOR_REASON)  # as released: no prior to set
    pipeline.set_reference_positions("local")
    assert locality(pipeline) == (True, SETTINGS["reference_locality"].help)


def test_page_settings_are_the_models_defaults_with_what_the_person_changed():
    from mimicbrush_cli.web.page import page_settings

    bundled = EditSettings.from_model_folder(BUNDLED_MODEL_DIR)
    controls = {name: getattr(bundled, name) for name in OPTION_SETTINGS}
    controls["reference_locality"], controls["reference_timestep"] = "0.07", "999"  # text fields
    controls["reference_hint_strength"] = "full"
    assert page_settings(controls, bundled) == bundled
    assert page_settings({**controls, "reference_locality": "trained"}, bundled).reference_locality is None
    assert page_settings({**controls, "reference_timestep": " first "}, bundled).reference_timestep is None
    assert page_settings({**controls, "mean_of": 4.0}, bundled) == replace(bundled, mean_of=4)
    # Unticking the cache drops the model's timestep with it; a timestep the person typed needs the cache.
    assert page_settings({**controls, "reference_cache": False}, bundled) == \
        replace(bundled, reference_cache=False, reference_timestep=None)
    with pytest.raises(MimicBrushError, match="add --reference-cache"):  # shown as the page's one error line
        page_settings({**controls, "reference_cache": False, "reference_timestep": "500"}, bundled)
    with pytest.raises(MimicBrushError, match="--mean-of must be between 1 and 16, not 17"):
        page_settings({**controls, "mean_of": 17}, bundled)
    with pytest.raises(MimicBrushError, match="--reference-locality takes a number"):
        page_settings({**controls, "reference_locality": "wide"}, bundled)


def test_the_pages_reference_hint_is_a_box_or_a_painting_and_its_command_repeats_it(tiny_model_dir, photos, tmp_path,
                                                                                      monkeypatch):
    source, reference, mask = photos  # the reference: 600 x 400
    config = ServeConfig(model_options=("--weights", str(tiny_model_dir), "--device", "cpu"))
    session = EditSession(load_pipeline(weights=tiny_model_dir, device="cpu"), config, folder=tmp_path / "served")
    settings = EditSettings(steps=1, crop=False)
    painting = [layer(reference.shape, np.s_[150:260, 200:420])]
    assert session.reference_region(reference, "  ") is None
    assert session.reference_region(reference, "", [layer(reference.shape, np.s_[0:0])]) is None  # nothing painted
    with pytest.raises(MimicBrushError, match="reference box 0,0,601,10 is outside the 600x400 reference"):
        session.reference_region(reference, "0,0,601,10", painting)
    with pytest.raises(MimicBrushError, match="painted layer size 451x300 differs from reference size 600x400: "
                                              "paint again on the new reference"):
        session.reference_region(reference, "", [layer(source.shape, np.s_[0:10, 0:10])])
    box = session.reference_region(reference, box_from_corners((299, 199), (0, 0)), painting)  # the box wins
    painted = session.reference_region(reference, "", painting)
    expected = np.zeros(reference.shape[:2], bool)
    expected[150:260, 200:420] = True
    np.testing.assert_array_equal(painted, expected)

    plain = session.edit(source, reference, mask, settings)
    boxed = session.edit(source, reference, mask, settings, reference_region=box)
    hinted = session.edit(source, reference, mask, settings, reference_region=painted)
    assert "--reference-box 0,0,300,200" in boxed.command and boxed.reference_mask_path is None
    assert "--reference-mask reference_mask.png" in hinted.command
    assert "--reference" not in plain.command.replace("reference.png", "") and plain.reference_mask_path is None
    np.testing.assert_array_equal(load_mask(hinted.reference_mask_path), expected)
    assert not np.array_equal(boxed.samples[0], plain.samples[0])
    assert not np.array_equal(hinted.samples[0], plain.samples[0])
    assert not np.array_equal(hinted.samples[0], boxed.samples[0])
    # The page's command, run on the page's downloads (result, mask, reference region), repeats each edit.
    monkeypatch.chdir(tmp_path)
    Image.fromarray(source).save("source.png")
    Image.fromarray(reference).save("reference.png")
    for result in (boxed, hinted):
        (tmp_path / "mask.png").write_bytes(result.mask_path.read_bytes())
        if result.reference_mask_path:
            (tmp_path / "reference_mask.png").write_bytes(result.reference_mask_path.read_bytes())
        cli = CliRunner().invoke(app, shlex.split(result.command)[1:])
        assert cli.exit_code == 0, cli.output
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "edited.png")), result.samples[0])
