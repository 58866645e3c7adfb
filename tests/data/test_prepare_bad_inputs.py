"""`mimicbrush prepare` under bad input: bad videos among good ones are skipped and listed, the run goes on; a
bad option, `--set` value or input folder is refused in one line, exit code 2, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app

from one_line import one_error_line

runner = CliRunner()
# The recipe the tiny test clips fit (64x48, panning 5 px a second): the default one is made for stock video.
TINY_CLIP_RECIPE = ["--set", "sample_fps=5", "--set", "min_gap_s=0.4", "--set", "ssim_min=0.15",
                    "--set", "ssim_max=0.6"]


@pytest.fixture(scope="module")
def good_and_bad_videos(tmp_path_factory, make_video_session, make_panning_frames):
    """Two short clips of a panning photo (libx264, mpeg4), random bytes and an empty file, all named .mp4."""
    folder = tmp_path_factory.mktemp("good_and_bad")
    make_video_session(folder / "astronaut.mp4", make_panning_frames(data.astronaut(), 96))
    make_video_session(folder / "coffee.mp4", make_panning_frames(data.coffee(), 96), codec="mpeg4")
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (folder / "empty.mp4").write_bytes(b"")
    return folder


@pytest.mark.parametrize("workers", [1, 2])
def test_a_folder_of_good_and_bad_videos_gives_samples_and_lists_the_bad_ones(tmp_path, good_and_bad_videos, workers):
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", str(good_and_bad_videos), "-o", str(out), *TINY_CLIP_RECIPE,
                                 "--workers", str(workers), "--set", "inputs_per_shard=1"])
    assert result.exit_code == 0, result.output
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {record["input"] for record in manifest} == {"astronaut.mp4", "coffee.mp4"}
    assert len(list((out / "shards").glob("*.tar"))) == 2 and not list(out.rglob(".*"))
    assert "skipped video:corrupt.mp4: unreadable-container" in result.output
    assert "skipped video:empty.mp4: empty-file" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert {entry["id"]: entry["reason"] for entry in summary["skipped"]} == {
        "video:corrupt.mp4": "unreadable-container", "video:empty.mp4": "empty-file"}
    assert summary["video_pairs"] == len(manifest) > 0


def test_videos_that_the_recipe_finds_no_pair_in_fail_in_one_line_that_names_the_reasons(tmp_path,
                                                                                         good_and_bad_videos):
    # The default recipe scores frames 1 s apart or more: these clips pan too fast for its SSIM window
    # [0.4, 0.85], so no input gives a sample and the run fails. Its error says why, not only that.
    result = runner.invoke(app, ["prepare", str(good_and_bad_videos), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: nothing prepared: all 4 inputs were skipped (2 no-pair-in-ssim-window, 1 empty-file, "
                      f"1 unreadable-container; details in {tmp_path / 'out' / 'summary.json'})"]


# The catalogue: each case is refused with exactly one line, exit code 2, and no output folder.

HUGE = "1" + "0" * 30
BAD_VALUES = {
    # --set: zero, negative, NaN, infinite, text, huge
    "sample_fps=0": "config key sample_fps must be above 0, got 0.0",
    "sample_fps=-2": "config key sample_fps must be above 0, got -2.0",
    "sample_fps=nan": "config key sample_fps must be a finite number, got nan",
    "sample_fps=inf": "config key sample_fps must be a finite number, got inf",
    "sample_fps=fast": "config key sample_fps must be a number, got 'fast'",
    "min_gap_s=nan": "config key min_gap_s must be a finite number, got nan",
    "min_gap_s=-1": "config key min_gap_s must be at least 0, got -1.0",
    "min_gap_s=1e999": "config key min_gap_s must be a finite number, got inf",
    "max_gap_s=inf": "config key max_gap_s must be a finite number, got inf",
    "ssim_min=nan": "config key ssim_min must be a finite number, got nan",
    "ssim_max=1.5": "config key ssim_max must be at most 1, got 1.5",
    "seek_gap_s=-inf": "config key seek_gap_s must be a finite number, got -inf",
    "max_candidate_frames=0": "config key max_candidate_frames must be at least 2, got 0",
    "max_candidate_frames=-5": "config key max_candidate_frames must be at least 2, got -5",
    "max_candidate_frames=1e9": "config key max_candidate_frames must be an integer, got 1000000000.0",
    f"ssim_side={HUGE}": f"config key ssim_side must be at most 2147483647, got {HUGE}",
    f"frame_max_side={HUGE}": f"config key frame_max_side must be at most 2147483647, got {HUGE}",
    "jpeg_quality=0": "config key jpeg_quality must be at least 1, got 0",
    "jpeg_quality=101": "config key jpeg_quality must be at most 100, got 101",
    "inputs_per_shard=-1": "config key inputs_per_shard must be at least 1, got -1",
    "max_pairs_per_video=abc": "config key max_pairs_per_video must be an integer, got 'abc'",
    "sam.min_area=nan": "config key sam.min_area must be a finite number, got nan",
    "sam.max_masks=0": "config key sam.max_masks must be at least 1, got 0",
    "ssim_backend=gpu": "config key ssim_backend must be one of ['opencv', 'torch', 'skimage'], got 'gpu'",
}


@pytest.mark.parametrize("setting", BAD_VALUES)
def test_a_bad_set_value_is_refused_before_any_work(tmp_path, video_folder, setting):
    line = one_error_line("prepare", video_folder, "-o", tmp_path / "out", "--set", setting)
    assert line == f"error: {BAD_VALUES[setting]}"
    assert not (tmp_path / "out").exists()


BAD_OPTIONS = {
    # Typer parses these: its message, as one line.
    "--workers 0": "error: Invalid value for '--workers'",
    "--workers -3": "error: Invalid value for '--workers'",
    "--workers two": "error: Invalid value for '--workers'",
    "--workers nan": "error: Invalid value for '--workers'",
    "--shard-index -1": "error: Invalid value for '--shard-index'",
    "--shard-index inf": "error: Invalid value for '--shard-index'",
    "--num-shards 0": "error: Invalid value for '--num-shards'",
    # prepare checks these.
    f"--workers {HUGE}": f"error: --workers must be in 1..1024, got {HUGE}",
    "--shard-index 2 --num-shards 2": "error: --shard-index must be in 0..1, got 2",
    f"--num-shards {HUGE}": f"error: --shard-index 0 of --num-shards {HUGE} is given none of the 2 inputs "
                           "(use fewer parts)",
}


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_a_bad_option_is_refused_before_any_work(tmp_path, video_folder, options):
    line = one_error_line("prepare", video_folder, "-o", tmp_path / "out", *options.split())
    assert line.startswith(BAD_OPTIONS[options]), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["", "--sam"])
@pytest.mark.parametrize("kind", ["a file", "an empty folder", "a missing folder"])
def test_an_input_that_is_not_a_folder_of_inputs_is_refused_before_any_work(tmp_path, option, kind):
    path = tmp_path / "inputs"
    if kind == "a file":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a video given in place of its folder
    elif kind == "an empty folder":
        path.mkdir()
    line = one_error_line("prepare", *([option] if option else []), path, "-o", tmp_path / "out")
    expected = {"a file": f"{path} is a file, not a folder of {'videos' if not option else 'SA-1B images'}",
                "a missing folder": f"no such folder: {path}",
                "an empty folder": (f"nothing to prepare: no videos (.mp4, .mov, .mkv, .webm, .avi) in {path}"
                                    if not option else f"nothing to prepare: no SA-1B images (sa_*.jpg) in {path}")}
    assert line == f"error: {expected[kind]}"
    assert not (tmp_path / "out").exists()


def test_a_missing_recipe_is_refused_before_any_work(tmp_path, video_folder):
    line = one_error_line("prepare", video_folder, "-o", tmp_path / "out", "--recipe", tmp_path / "recipe.yaml")
    assert line == f"error: config file not found: {tmp_path / 'recipe.yaml'}"
    assert not (tmp_path / "out").exists()
