"""The demo model bundled with the package: `edit`'s default, small, safetensors, and it takes the masked
content from its reference through its reference attention: on held-out photos, at the settings chosen for it
on its validation split, it beats the same weights with reference attention off and a fill with the
reference's mean colour, in PSNR and in structure (where the fill scores none).

These tests load the real bundled weights (`mimicbrush_cli/assets/demo_model`) through the same path
`edit` uses; they fail, not skip, when the weights are missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
from typer.testing import CliRunner

from mimicbrush_cli.benchmark.editors import make_pipeline_editor
from mimicbrush_cli.benchmark.recon import run_recon
from mimicbrush_cli.data.demo_sources import HELD_OUT_SKIMAGE
from mimicbrush_cli.cli.app import app
from mimicbrush_cli.imaging import load_image, load_mask
from mimicbrush_cli.loading import BUNDLED_MODEL_DIR
from mimicbrush_cli.settings import FAST_PRESET, EditSettings

EXAMPLES = Path(__file__).parents[1] / "examples"
STEREO = {name: EXAMPLES / f"motorcycle_{name}.png" for name in ("left", "right", "mask")}
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl"}


def test_bundled_model_is_complete_safetensors_and_small():
    files = [path for path in BUNDLED_MODEL_DIR.rglob("*") if path.is_file()]
    assert (BUNDLED_MODEL_DIR / "model_index.json").is_file()
    weights = [path for path in files if path.suffix in WEIGHT_SUFFIXES]
    assert weights and all(path.suffix == ".safetensors" for path in weights)
    assert sum(path.stat().st_size for path in files) <= 60 * 2**20


def test_edit_without_weights_uses_the_bundled_model(tmp_path):
    output = tmp_path / "edited.png"
    result = CliRunner().invoke(app, ["edit", *(str(STEREO[name]) for name in ("left", "right", "mask")),
                                      "-o", str(output), "--steps", "4"])
    assert result.exit_code == 0, result.output
    edited, source, mask = load_image(output), load_image(STEREO["left"]), load_mask(STEREO["mask"])
    assert edited.shape == source.shape
    assert not np.array_equal(edited[mask], source[mask])
    far_from_mask = np.ones(mask.shape, bool)
    rows, columns = np.nonzero(mask)
    far_from_mask[rows.min() - 20:rows.max() + 20, columns.min() - 20:columns.max() + 20] = False
    assert np.array_equal(edited[far_from_mask], source[far_from_mask])


def test_keep_shape_with_the_bundled_model_explains_itself(tmp_path):
    result = CliRunner().invoke(app, ["edit", *(str(STEREO[name]) for name in ("left", "right", "mask")),
                                      "-o", str(tmp_path / "edited.png"), "--keep-shape"])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "depth model" in lines[0], result.output
    assert not (tmp_path / "edited.png").exists()


def camera_motion_pair(name: str, shift: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """Two views of a held-out scikit-image photo, the second moved by `shift` of its size."""
    image = getattr(skimage.data, name)()
    image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    dy, dx = round(image.shape[0] * shift), round(image.shape[1] * shift)
    return image[:-dy, :-dx], image[dy:, dx:]


# The settings chosen for the bundled model on its validation split (docs/bundled_model.md), which its
# edit_settings.json carries: the `--fast` preset with guidance 2, the positional prior narrowed to 0.07, the
# reference features cached from the noisiest timestep, one sample. The held-out test edits at them: what
# `mimicbrush edit` does with no option.
DEFAULTS = {**FAST_PRESET, "guidance": 2.0, "reference_locality": 0.07, "reference_timestep": 999}
# Measured on the bundled model at DEFAULTS, seed 0, by the fixture below:
# attention gain +4.62 dB (11 of 11 pairs > 0), edge 0.108 against 0.010 (attention off) and 0 (fill), margin
# over the fill +2.08 dB (8 of 11), reference gain +5.52 dB. The same weights with reference attention off, put
# in the model's place, fail every line: gain 0 (0 of 11), edge 0.010, margin -2.55 dB, reference gain +0.02 dB.
ATTENTION_GAIN_DB, ATTENTION_GAIN_PAIRS, EDGE_GAIN, FILL_MARGIN_DB, REFERENCE_GAIN_DB = 3.0, 9, 0.06, 1.5, 3.0


def test_bundled_model_carries_its_chosen_edit_settings():
    assert EditSettings.from_model_folder(BUNDLED_MODEL_DIR).model_defaults() == DEFAULTS
    assert make_pipeline_editor().settings == EditSettings(**DEFAULTS)  # a benchmark at the model's own settings


@pytest.fixture(scope="module")
def held_out_recon(tmp_path_factory):
    """`benchmark recon`'s editors on every held-out photo (never seen in training) as a camera-motion pair:
    the bundled model at its own settings and the same weights with reference attention off."""
    pairs = [(name, *camera_motion_pair(name)) for name in HELD_OUT_SKIMAGE]
    editor = make_pipeline_editor(device="cpu")
    assert editor.settings == EditSettings(**DEFAULTS)
    results = run_recon(pairs, tmp_path_factory.mktemp("recon"), editor,
                        attention_off=editor.with_reference_attention_off())
    return results.summary["overall"]


@pytest.mark.slow
def test_bundled_model_takes_the_masked_content_from_its_reference_attention(held_out_recon):
    psnr = {name: held_out_recon[name]["psnr"] for name in ("attention_gain", "fill_margin", "reference_gain")}
    edge = {name: held_out_recon[name]["edge"]["mean"] for name in ("model", "attention_off", "mean_fill")}
    # Reference attention is worth at least ATTENTION_GAIN_DB on average and helps most pairs; with it
    # switched off the same weights fall to that much below the model.
    assert psnr["attention_gain"]["mean"] >= ATTENTION_GAIN_DB, psnr
    assert psnr["attention_gain"]["positive"] >= ATTENTION_GAIN_PAIRS, psnr
    # Structure inside the mask (correlation of gradient magnitudes), which a flat fill cannot win.
    assert edge["model"] >= edge["attention_off"] + EDGE_GAIN and edge["model"] >= edge["mean_fill"] + EDGE_GAIN, edge
    # Against a fill with the reference's mean colour, in PSNR: at least FILL_MARGIN_DB better.
    assert psnr["fill_margin"]["mean"] >= FILL_MARGIN_DB, psnr
    assert psnr["reference_gain"]["mean"] >= REFERENCE_GAIN_DB, psnr
