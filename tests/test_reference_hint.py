"""A reference hint: the part of the reference to copy from (`--reference-mask`, `--reference-box`)."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mimicbrush_cli import imaging
from mimicbrush_cli.cli.app import app
from mimicbrush_cli.edit import edit_command_line
from mimicbrush_cli.reference_region import square_crop, with_reference_region
from mimicbrush_cli.settings import EditSettings

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def test_the_region_lands_on_the_padded_reference_square_at_working_size():
    reference = np.zeros((100, 50, 3), np.uint8)  # padded to 100 x 100: 25 white columns either side
    region = imaging.box_mask(reference.shape, imaging.Box(top=40, left=10, bottom=60, right=20))
    source, mask = np.zeros((20, 20, 3), np.uint8), np.ones((20, 20), bool)
    prepared = with_reference_region(imaging.prepare_edit(source, reference, mask, 20, crop=False), reference, region)
    expected = np.zeros((20, 20), bool)
    expected[8:12, 7:9] = True  # square rows 40..59, columns 35..44; cells of 5 pixels
    np.testing.assert_array_equal(prepared.reference_region, expected)


def test_the_clip_input_is_the_regions_square_crop_padded_white():
    reference = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    region = imaging.box_mask(reference.shape, imaging.Box(top=0, left=8, bottom=6, right=12))  # 6 tall, 4 wide
    crop = square_crop(reference, region)
    expected = np.full((6, 6, 3), 255, np.uint8)
    expected[:, :5] = reference[0:6, 7:12]  # columns 7..12 of the reference; the last leaves it
    np.testing.assert_array_equal(crop, expected)


@pytest.mark.parametrize("positions", ["none", "local"])
def test_a_hint_changes_the_edit_and_a_hint_of_the_whole_reference_is_none(tiny_pipeline, photos, positions):
    """Training-free: a model without positions (the released kind) and one with the positional prior."""
    source, reference, mask = photos
    settings = EditSettings(steps=2)
    saved = tiny_pipeline.bank.positions
    tiny_pipeline.set_reference_positions(positions)
    try:
        [[plain]] = tiny_pipeline(source, reference, mask, settings)
        [[whole]] = tiny_pipeline(source, reference, mask, settings, reference_regions=[np.ones(reference.shape[:2], bool)])
        box = imaging.box_mask(reference.shape, imaging.Box(0, 0, 200, 300))
        [[hinted]] = tiny_pipeline(source, reference, mask, settings, reference_regions=[box])
        [[gentle]] = tiny_pipeline(source, reference, mask, EditSettings(steps=2, reference_hint_strength=1.0),
                                   reference_regions=[box])
        # Strength 0 biases nothing: what is left of the hint is CLIP's view of the region's crop.
        [[clip_only]] = tiny_pipeline(source, reference, mask, EditSettings(steps=2, reference_hint_strength=0.0),
                                      reference_regions=[box])
        # A batch of a hinted edit and a plain one: each as alone, to the float rounding that any batch has (1 level:
        # tests/test_pipeline.py::test_edit_in_a_batch_equals_edit_alone).
        [[hinted_in_batch], [plain_in_batch]] = tiny_pipeline([source, source], [reference, reference], [mask, mask],
                                                              settings, reference_regions=[box, None])
    finally:
        tiny_pipeline.set_reference_positions(saved)
    np.testing.assert_array_equal(whole, plain)
    assert not np.array_equal(hinted, plain)
    assert not np.array_equal(gentle, hinted) and not np.array_equal(gentle, plain)
    assert not np.array_equal(clip_only, plain) and not np.array_equal(clip_only, gentle)
    np.testing.assert_allclose(hinted_in_batch.astype(int), hinted.astype(int), atol=1)
    np.testing.assert_allclose(plain_in_batch.astype(int), plain.astype(int), atol=1)


def test_the_cli_hint_changes_the_result_and_its_command_line_repeats_it(photo_files, tiny_model_dir, tmp_path):
    files = [photo_files["source"], photo_files["reference"], photo_files["mask"]]
    common = ["--weights", tiny_model_dir, "--steps", 1]
    outputs = {}
    for name, options in {"plain": [], "box": ["--reference-box", "0,0,300,200"],
                          "strength": ["--reference-box", "0,0,300,200", "--reference-hint-strength", "2"]}.items():
        result = run("edit", *files, "-o", tmp_path / f"{name}.png", *common, *options)
        assert result.exit_code == 0, result.output
        outputs[name] = np.asarray(Image.open(tmp_path / f"{name}.png"))
    region = np.zeros((400, 600), np.uint8)
    region[:200, :300] = 255
    Image.fromarray(region).save(tmp_path / "region.png")
    result = run("edit", *files, "-o", tmp_path / "from_mask.png", *common, "--reference-mask", tmp_path / "region.png")
    assert result.exit_code == 0, result.output
    assert not np.array_equal(outputs["box"], outputs["plain"])
    assert not np.array_equal(outputs["strength"], outputs["box"])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "from_mask.png")), outputs["box"])
    # The command line that repeats the edit names the hint and its strength, and gives the same result.
    line = edit_command_line(*map(str, files), str(tmp_path / "again.png"), EditSettings(steps=1, reference_hint_strength=2.0),
                             ("--weights", str(tiny_model_dir)), region_words=("--reference-box", "0,0,300,200"))
    assert "--reference-box 0,0,300,200" in line and "--reference-hint-strength 2" in line
    result = run(*shlex.split(line)[1:])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "again.png")), outputs["strength"])


def one_error_line(*args) -> str:
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_bad_hints_are_one_line_before_any_model_loads(photo_files, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model loaded")

    monkeypatch.setattr("mimicbrush_cli.loading.load_pipeline", no_loading)
    files = [photo_files["source"], photo_files["reference"], photo_files["mask"], "-o", tmp_path / "out.png",
             "--model", "demo"]
    Image.fromarray(np.zeros((400, 600), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(np.full((40, 60), 255, np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert one_error_line("edit", *files, "--reference-mask", tmp_path / "missing.png") == (
        f"error: source.png: reference mask not found: {tmp_path / 'missing.png'}")
    assert one_error_line("edit", *files, "--reference-mask", tmp_path / "broken.png").startswith(
        f"error: source.png: reference mask is not a readable image: {tmp_path / 'broken.png'}")
    assert one_error_line("edit", *files, "--reference-mask", tmp_path / "small.png") == (
        "error: source.png: reference mask size 60x40 differs from reference size 600x400")
    assert one_error_line("edit", *files, "--reference-mask", tmp_path / "empty.png") == (
        "error: source.png: reference mask is empty: paint the part of the reference to copy from white")
    assert one_error_line("edit", *files, "--reference-box", "500,0,601,10") == (
        "error: source.png: reference box 500,0,601,10 is outside the 600x400 reference")
    assert one_error_line("edit", *files, "--reference-box", "5,5,5,10") == (
        "error: reference box '5,5,5,10' must have 0 <= X0 < X1 and 0 <= Y0 < Y1")
    assert one_error_line("edit", *files, "--reference-box", "0,0,10,10", "--reference-mask", tmp_path / "small.png") == (
        "error: give one hint: --reference-mask or --reference-box, not both")
    assert one_error_line("edit", *files, "--reference-box", "0,0,10,10", "--reference-hint-strength", "101") == (
        "error: --reference-hint-strength must be between 0 and 100, not 101.0")
    assert one_error_line("edit", *files, "--reference-hint-strength", "5") == (
        "error: --reference-hint-strength sets how a reference hint acts: give one with --reference-mask or "
        "--reference-box")
    assert not (tmp_path / "out.png").exists()
