"""`EditSettings` as the one carrier: one range per setting checked in one place, a model's own defaults
(`edit_settings.json`) under every option given, and the commands' options and page controls made from it."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import fields, replace

import numpy as np
import pytest
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.model_names import BUNDLED_MODEL_DIR, edit_defaults
from mimicbrush_cli.settings import (EDIT_SETTINGS_FILE, MODEL_SETTINGS, OPTION_SETTINGS, SETTINGS, EditSettings,
                                     flag, kind_of, resolve_settings)

from one_line import one_error_line

runner = CliRunner()
RANGED = [name for name in OPTION_SETTINGS if SETTINGS[name].low is not None]


@pytest.mark.parametrize("name", RANGED)
def test_every_number_setting_is_checked_at_both_ends_in_the_library(name):
    setting = SETTINGS[name]
    below = setting.low - (1 if kind_of(name) is int else setting.low / 2 + 0.5)
    for value in (below, setting.high + 1, math.nan, math.inf):
        with pytest.raises(ValueError, match=f"^{name} must be"):
            EditSettings(**{name: value, **({"reference_cache": True} if name == "reference_timestep" else {})})
    EditSettings(**{name: setting.low, **({"reference_cache": True} if name == "reference_timestep" else {})})


def test_reference_steps_per_pass_0_is_refused_where_it_is_made_not_divided_by():
    with pytest.raises(ValueError, match="reference_steps_per_pass must be between 1 and 64, not 0"):
        EditSettings(reference_steps_per_pass=0)


def test_choice_and_yes_no_settings_refuse_other_values():
    with pytest.raises(ValueError, match="scheduler must be one of ddim"):
        EditSettings(scheduler="ddpm")
    with pytest.raises(ValueError, match="crop must be true or false"):
        EditSettings(crop="yes")
    with pytest.raises(ValueError, match="steps must be a whole number"):
        EditSettings(steps=2.5)


# Bad values for every command-line setting that takes a number, and what each must say (after the flag).
BAD_NUMBERS = {"0": None, "-1": None, "nan": None, "inf": None, "abc": "takes a number", "1e40": None}


@pytest.mark.parametrize("command", [["edit", "s.png", "r.png", "m.png"], ["benchmark", "recon", "shards"]])
@pytest.mark.parametrize("name", [name for name in RANGED if name not in ("seed", "num_samples")])
@pytest.mark.parametrize("text", list(BAD_NUMBERS))
def test_a_bad_number_for_any_setting_is_one_line_before_any_input_is_read(command, name, text, tmp_path):
    if text == "0" and SETTINGS[name].low <= 0 <= SETTINGS[name].high:
        text = "-1"  # 0 is a value of this setting
    line = one_error_line(*command, flag(name), text, "--model", "random-tiny")
    problem = BAD_NUMBERS[text] or "must be"
    assert line.startswith(f"error: {flag(name)} {problem}"), line
    assert list(tmp_path.iterdir()) == []


def test_a_seed_beyond_64_bits_and_a_sample_count_of_0_are_one_line():
    assert one_error_line("edit", "s.png", "r.png", "m.png", "--seed", 2**64) == \
        f"error: --seed must be between 0 and {2**63 - 1}, not {2**64}"
    assert one_error_line("edit", "s.png", "r.png", "m.png", "--num-samples", 0) == \
        "error: --num-samples must be between 1 and 64, not 0"


# ---------------------------------------------------------------------------------------------- a model's defaults


@pytest.fixture
def seen_settings(monkeypatch):
    """The settings `mimicbrush edit` would run at (the edit itself replaced: no input is read)."""
    seen = []

    def run_edits(jobs, settings, outputs, **options):
        seen.append(settings)
        return []

    monkeypatch.setattr("mimicbrush_cli.edit.run_edits", run_edits)
    return seen


def edit_settings_of(seen, tmp_path, *options) -> EditSettings:
    result = runner.invoke(app, ["edit", "s.png", "r.png", "m.png", "-o", str(tmp_path / "o.png"),
                                 *[str(option) for option in options]])
    assert result.exit_code == 0, result.output
    return seen.pop()


@pytest.fixture
def folder_with_defaults(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / EDIT_SETTINGS_FILE).write_text(json.dumps({"steps": 7, "guidance": 1.5, "reference_cache": True,
                                                         "reference_timestep": 900}))
    return folder


def test_an_edit_starts_from_its_models_defaults_and_every_option_given_overrides_one(seen_settings, tmp_path,
                                                                                        folder_with_defaults):
    own = EditSettings(steps=7, guidance=1.5, reference_cache=True, reference_timestep=900)
    assert edit_settings_of(seen_settings, tmp_path, "--weights", folder_with_defaults) == own
    assert edit_settings_of(seen_settings, tmp_path, "--weights", folder_with_defaults, "--steps", 3,
                            "--scheduler", "euler") == replace(own, steps=3, scheduler="euler")
    # --fast on top of the model's defaults; options given win over it
    assert edit_settings_of(seen_settings, tmp_path, "--weights", folder_with_defaults, "--fast", "--steps", 4) == \
        replace(own, scheduler="dpmpp-2m", steps=4)
    # the cache switched off takes the model's timestep with it; "first" is a choice of its own
    assert edit_settings_of(seen_settings, tmp_path, "--weights", folder_with_defaults, "--no-reference-cache") == \
        replace(own, reference_cache=False, reference_timestep=None)
    assert edit_settings_of(seen_settings, tmp_path, "--weights", folder_with_defaults, "--reference-timestep",
                            "first") == replace(own, reference_timestep=None)
    assert edit_settings_of(seen_settings, tmp_path, "--weights", folder_with_defaults, "--released-defaults") == \
        EditSettings()
    # no file: the released defaults; the released model and random weights likewise
    assert edit_settings_of(seen_settings, tmp_path, "--weights", tmp_path) == EditSettings()
    assert edit_settings_of(seen_settings, tmp_path, "--model", "released") == EditSettings()
    assert edit_settings_of(seen_settings, tmp_path, "--model", "random-tiny", "--mean-of", 2) == \
        EditSettings(mean_of=2)


def test_the_bundled_model_edits_at_its_own_settings_without_a_flag(seen_settings, tmp_path):
    bundled = EditSettings.from_model_folder(BUNDLED_MODEL_DIR)
    assert bundled != EditSettings()
    assert edit_settings_of(seen_settings, tmp_path) == bundled
    assert edit_settings_of(seen_settings, tmp_path, "--model", "demo") == bundled


def test_a_models_defaults_file_that_cannot_serve_is_one_line(tmp_path, folder_with_defaults):
    path = folder_with_defaults / EDIT_SETTINGS_FILE
    for text, message in (("{not json", "cannot read"), ("[1, 2]", "must hold an object"),
                          ('{"seed": 3}', "seed cannot be a model's default"),
                          ('{"steps": 0}', "steps must be between 1 and 1000, not 0"),
                          ('{"reference_timestep": 900}', "add --reference-cache")):
        path.write_text(text)
        line = one_error_line("edit", "s.png", "r.png", "m.png", "--weights", folder_with_defaults)
        assert line.startswith("error: ") and message in line, line


def test_settings_save_to_a_model_folder_as_what_differs_from_the_released_ones(tmp_path):
    settings = EditSettings(steps=6, scheduler="dpmpp-2m", reference_cache=True, seed=5, keep_shape=True)
    settings.save_pretrained(tmp_path)
    assert json.loads((tmp_path / EDIT_SETTINGS_FILE).read_text()) == {"steps": 6, "scheduler": "dpmpp-2m",
                                                                       "reference_cache": True}
    assert EditSettings.from_model_folder(tmp_path) == replace(settings, seed=0, keep_shape=False)
    assert "seed" not in MODEL_SETTINGS and "keep_shape" not in MODEL_SETTINGS


def test_a_loaded_pipeline_carries_its_folders_defaults(tiny_model_dir, tmp_path, photos):
    from mimicbrush_cli.loading import load_pipeline

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    EditSettings(steps=1, guidance=1.0).save_pretrained(folder)
    pipeline = load_pipeline(weights=folder, device="cpu")
    assert pipeline.edit_defaults == EditSettings(steps=1, guidance=1.0)
    steps = []
    [[default]] = pipeline(*photos, callback=lambda step, total: steps.append(total))
    assert steps == [1]  # a call without settings runs at the folder's
    [[explicit]] = pipeline(*photos, EditSettings(steps=1, guidance=1.0))
    np.testing.assert_array_equal(default, explicit)
    assert load_pipeline(weights=tiny_model_dir, device="cpu").edit_defaults == EditSettings()


def test_weights_and_model_together_are_refused_before_any_defaults_are_read(tmp_path):
    with pytest.raises(MimicBrushError, match="either --weights or --model"):
        edit_defaults(tmp_path, "demo")
    with pytest.raises(MimicBrushError, match="unknown model 'demo2'"):
        edit_defaults(None, "demo2")


# ---------------------------------------------------------------------------------------------- made from the fields


def test_every_command_line_setting_is_an_option_of_edit_and_of_the_benchmarks():
    for command in (["edit"], ["benchmark", "recon"], ["benchmark", "part"]):
        output = runner.invoke(app, [*command, "--help"], terminal_width=300, max_content_width=300).output
        for name in OPTION_SETTINGS:
            if command != ["edit"] and name in ("seed", "num_samples", "keep_shape"):
                continue  # the benchmark's own
            assert flag(name) in output, (command, name)
    library_only = [item.name for item in fields(EditSettings) if item.name not in OPTION_SETTINGS]
    assert library_only == ["reference_attention"]


def test_help_says_where_a_default_comes_from():
    output = " ".join(runner.invoke(app, ["edit", "--help"], terminal_width=300, max_content_width=300).output.split())
    steps = output[output.index("--steps"):output.index("--scheduler")]
    assert steps.endswith("Denoising steps. [default: the model's edit settings; released: 50; bundled demo model: 6] ")
    seed = output[output.index("--seed"):output.index("--num-samples")]
    assert seed.endswith("[default: 0] ")  # a setting of one edit, never a model's


def test_the_page_has_a_control_for_every_setting_and_the_research_ones_under_advanced(tmp_path):
    import gradio as gr

    from mimicbrush_cli.loading import build_random_pipeline
    from mimicbrush_cli.web.page import build_page
    from mimicbrush_cli.web.session import EditSession

    pipeline = build_random_pipeline("tiny")
    pipeline.edit_defaults = EditSettings(steps=7, reference_cache=True, reference_timestep=900)
    page = build_page(EditSession(pipeline, folder=tmp_path))
    blocks = {getattr(block, "elem_id", None): block for block in page.blocks.values()}
    accordions = {block.label: block for block in page.blocks.values() if isinstance(block, gr.Accordion)}
    advanced = {block.elem_id for block in page.blocks.values() if getattr(block, "elem_id", None)
                and _inside(page, block, accordions["Advanced"])}
    for name in OPTION_SETTINGS:
        assert flag(name)[2:] in blocks, name
        assert (flag(name)[2:] in advanced) == SETTINGS[name].advanced, name
    assert blocks["steps"].value == 7 and blocks["reference-timestep"].value == "900"  # from the model's defaults
    assert accordions["Advanced"].open is False


def _inside(page, block, container) -> bool:
    parent = getattr(block, "parent", None)
    while parent is not None:
        if parent is container:
            return True
        parent = getattr(parent, "parent", None)
    return False


def test_resolve_refuses_a_timestep_given_without_the_cache():
    with pytest.raises(MimicBrushError, match="add --reference-cache"):
        resolve_settings(EditSettings(), {"reference_timestep": 999})
    assert resolve_settings(EditSettings(), {"reference_timestep": 999}, fast=True).reference_timestep == 999

