import json

import numpy as np
import pytest
from skimage import data

from mimicbrush_cli.benchmark.baselines import fit_homography, homography_fill, mean_fill
from mimicbrush_cli.benchmark.metrics import masked_edge_correlation, masked_psnr
from mimicbrush_cli.benchmark.recon import (ReconSettings, load_against, mismatched_indices, recon_mask, run_recon,
                                            video_of)
from mimicbrush_cli.errors import MimicBrushError


def video_pairs():
    """Each 'reference frame' is its source shifted by a few pixels, as in a slowly moving video."""
    photos = {"cat": data.chelsea(), "cup": data.coffee(), "astronaut": data.astronaut()[::4, ::4]}
    return [(f"video-{name}/0", photo, np.roll(photo, 3, axis=1)) for name, photo in photos.items()]


def test_recon_mask_is_deterministic_per_pair_and_changes_with_seed():
    first = recon_mask((100, 120), "video/1", seed=0)
    np.testing.assert_array_equal(first, recon_mask((100, 120), "video/1", seed=0))
    assert first.sum() == 50 * 60
    assert not np.array_equal(first, recon_mask((100, 120), "video/1", seed=1))


def test_mismatched_references_are_a_derangement():
    for count in range(2, 9):
        borrowed = mismatched_indices(count)
        assert sorted(borrowed) == list(range(count))
        assert all(index != other for index, other in enumerate(borrowed))


def test_recon_with_one_pair_is_user_error(tmp_path, copy_reference_editor):
    with pytest.raises(MimicBrushError, match="at least 2 pairs"):
        run_recon(video_pairs()[:1], tmp_path / "out", copy_reference_editor)


def test_an_imitating_editor_beats_its_ablation_and_the_baselines(tmp_path, copy_reference_editor, mean_colour_editor):
    # The copying editor plays the model; the mean-colour editor plays the model with its attention off.
    results = run_recon(video_pairs(), tmp_path / "out", copy_reference_editor, ReconSettings(long_side=128),
                        attention_off=mean_colour_editor)
    overall = results.summary["overall"]
    assert set(overall) == {"model", "attention_off", "mean_fill", "homography", "model_mismatched",
                            "attention_gain", "fill_margin", "reference_gain", "homography_margin"}
    assert overall["attention_gain"]["psnr"]["mean"] > 5 and overall["attention_gain"]["psnr"]["positive"] == 3
    assert overall["fill_margin"]["edge"]["mean"] > 0.5  # a flat fill has no structure
    assert overall["mean_fill"]["edge"]["mean"] == 0.0
    assert overall["reference_gain"]["ssim"]["mean"] > 0.1
    # the attention-off editor and the built-in mean fill paint the same colour: only the blend differs
    assert abs(overall["attention_off"]["psnr"]["mean"] - overall["mean_fill"]["psnr"]["mean"]) < 1.0
    assert all(record["mismatched_with"] != pair_id for pair_id, record in results.samples.items())
    assert set(results.summary["videos"]) == {"video-cat", "video-cup", "video-astronaut"}
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["count"] == 3 and (tmp_path / "out" / "grids" / "video-cat_0.png").is_file()
    assert (tmp_path / "out" / "overview.jpg").is_file()
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "attention gain (model − attention off)" in markdown and "| video-cat | 1 |" in markdown
    rerun = run_recon(video_pairs(), tmp_path / "out", copy_reference_editor, ReconSettings(long_side=128),
                      attention_off=mean_colour_editor)
    assert (rerun.edited, rerun.resumed) == (0, 3)
    assert mean_colour_editor.calls == 3  # once per pair, never on resume


def test_recon_without_an_ablation_leaves_the_attention_gain_out(tmp_path, copy_reference_editor):
    results = run_recon(video_pairs(), tmp_path / "out", copy_reference_editor, ReconSettings(long_side=128))
    assert "attention_off" not in results.summary["overall"] and "attention_gain" not in results.summary["overall"]
    assert results.means["reference_gain.psnr"] > 5


def test_video_of_a_pair_is_its_name_or_the_id_before_the_frame_number():
    assert video_of(("video-cat/0", None, None)) == "video-cat"
    assert video_of(("v0123abcd_004", None, None)) == "v0123abcd"
    assert video_of(("v0123abcd_004", None, None, "clips/cat.mp4")) == "clips/cat.mp4"


def test_edge_correlation_is_zero_for_a_flat_fill_and_one_for_the_truth():
    photo = data.astronaut()[::2, ::2]
    mask = np.zeros(photo.shape[:2], bool)
    mask[60:200, 60:200] = True
    flat = photo.copy()
    flat[mask] = 128
    assert masked_edge_correlation(flat, photo, mask, margin=2) == 0.0
    assert masked_edge_correlation(photo, photo, mask, margin=2) == pytest.approx(1.0)
    elsewhere = photo.copy()
    elsewhere[mask] = np.roll(photo, 40, axis=1)[mask]  # real texture, wrong place
    assert masked_edge_correlation(elsewhere, photo, mask, margin=2) < 0.3


def test_homography_baseline_recovers_a_camera_motion_and_falls_back_without_features():
    photo = data.astronaut()
    source, reference = photo[20:420, 30:430], photo[0:400, 0:400]  # the camera moved by (20, 30) px
    mask = recon_mask(source.shape[:2], "pair")
    fit = fit_homography(source, reference, mask)
    assert fit.matrix is not None and fit.inliers >= 20
    np.testing.assert_allclose(fit.matrix[:2, 2], [-30, -20], atol=1.0)
    assert masked_psnr(homography_fill(source, reference, mask), source, mask) > 30
    flat_reference = np.full_like(reference, 90)
    np.testing.assert_array_equal(homography_fill(source, flat_reference, mask), mean_fill(source, flat_reference, mask))


def test_recon_reads_video_pairs_from_prepared_shards(tmp_path, copy_reference_editor):
    from mimicbrush_cli.benchmark.recon import load_video_pairs
    from mimicbrush_cli.data.shards import SHARDS_FOLDER, ShardWriter, encode_jpeg

    (tmp_path / "prepared" / SHARDS_FOLDER).mkdir(parents=True)
    writer = ShardWriter(tmp_path / "prepared" / SHARDS_FOLDER, "video-test")
    for pair_id, source, reference in video_pairs():
        key = pair_id.replace("/", "_")
        writer.add(key, {"source.jpg": encode_jpeg(source, 95), "reference.jpg": encode_jpeg(reference, 95)},
                   {"kind": "video"})
    writer.commit({})
    pairs = list(load_video_pairs([tmp_path / "prepared"]))
    assert [pair[0] for pair in pairs] == ["video-astronaut_0", "video-cat_0", "video-cup_0"]
    assert pairs[1][1].shape == data.chelsea().shape
    results = run_recon(pairs, tmp_path / "out", copy_reference_editor, ReconSettings(long_side=128))
    assert results.means["reference_gain.psnr"] > 5


def test_against_scores_the_model_pair_by_pair_against_an_earlier_run(tmp_path, copy_reference_editor,
                                                                       mean_colour_editor):
    settings = ReconSettings(long_side=128)
    exact = run_recon(video_pairs(), tmp_path / "exact", copy_reference_editor, settings)
    earlier = load_against(tmp_path / "exact", settings)
    worse = run_recon(video_pairs(), tmp_path / "worse", mean_colour_editor, settings, against=earlier)
    against = worse.summary["overall"]["against"]
    for metric in ("psnr", "ssim", "edge"):
        expected = [worse.samples[pair_id]["scores"]["model"][metric] - exact.samples[pair_id]["scores"]["model"][metric]
                    for pair_id in exact.samples]
        assert against[metric]["mean"] == pytest.approx(np.mean(expected))
    assert against["psnr"]["mean"] < -5 and against["psnr"]["positive"] == 0
    same = run_recon(video_pairs(), tmp_path / "same", copy_reference_editor, settings, against=earlier)
    assert same.summary["overall"]["against"]["psnr"]["mean"] == 0
    stored = json.loads((tmp_path / "worse" / "results.json").read_text())
    assert stored["against"]["folder"] == str(tmp_path / "exact")
    assert "model − the `--against` run's model" in (tmp_path / "worse" / "results.md").read_text()


def test_against_a_run_with_other_masks_or_pairs_is_user_error(tmp_path, copy_reference_editor):
    run_recon(video_pairs(), tmp_path / "exact", copy_reference_editor, ReconSettings(long_side=128))
    with pytest.raises(MimicBrushError, match="other masks"):
        load_against(tmp_path / "exact", ReconSettings(long_side=128, seed=1))
    with pytest.raises(MimicBrushError, match="no finished recon run"):
        load_against(tmp_path / "nothing", ReconSettings(long_side=128))
    earlier = load_against(tmp_path / "exact", ReconSettings(long_side=128))
    more = video_pairs() + [("video-moon/0", data.camera()[..., None].repeat(3, 2), data.camera()[..., None].repeat(3, 2))]
    with pytest.raises(MimicBrushError, match="no result for 1 of these pairs"):
        run_recon(more, tmp_path / "more", copy_reference_editor, ReconSettings(long_side=128), against=earlier)
    assert not (tmp_path / "more" / "samples").exists()  # refused before any edit


def test_the_distractor_reference_puts_the_true_one_beside_the_other_at_its_height():
    from mimicbrush_cli.benchmark.recon import distractor_reference

    reference, other = np.full((40, 30, 3), 7, np.uint8), np.full((20, 50, 3), 200, np.uint8)
    left, region = distractor_reference(reference, other, true_on_left=True)
    assert left.shape == (40, 130, 3)  # the other at height 40: 100 wide
    np.testing.assert_array_equal(left[:, :30], reference)
    assert (left[:, 30:] == 200).all() and region[:, :30].all() and not region[:, 30:].any()
    right, region = distractor_reference(reference, other, true_on_left=False)
    np.testing.assert_array_equal(right[:, 100:], reference)
    assert region[:, 100:].all() and not region[:, :100].any()


class HintedCopyEditor:
    """Copies its reference (or, given a hint, the hint's bounding box of it) into the mask, resized to the source."""

    def __call__(self, source, reference, mask, *, keep_shape, seed, reference_region=None):
        from PIL import Image

        if reference_region is not None:
            rows, cols = np.flatnonzero(reference_region.any(1)), np.flatnonzero(reference_region.any(0))
            reference = reference[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        resized = np.asarray(Image.fromarray(reference).resize(source.shape[1::-1], Image.Resampling.BILINEAR))
        return np.where(mask[..., None], resized, source)


class HintedColourEditor:
    """Fills the mask with the mean colour of its reference, or, given a hint, of the hint's part of it."""

    def __call__(self, source, reference, mask, *, keep_shape, seed, reference_region=None):
        pixels = reference[reference_region] if reference_region is not None else reference.reshape(-1, 3)
        return np.where(mask[..., None], pixels.mean(0).round().astype(np.uint8), source)


def test_the_distractor_run_scores_the_hint_on_the_true_half(tmp_path, mean_colour_editor):
    results = run_recon(video_pairs(), tmp_path / "out", HintedCopyEditor(), ReconSettings(long_side=128),
                        attention_off=mean_colour_editor, distractor=True, clip_only_hint=HintedColourEditor())
    overall = results.summary["overall"]
    assert set(overall) == {"model", "model_hint", "model_hint_clip", "attention_off", "mean_fill", "homography",
                            "attention_gain", "fill_margin", "homography_margin", "hint_gain", "hint_clip_gain",
                            "hint_attention_gain", "hint_fill_margin"}
    assert overall["hint_gain"]["psnr"]["positive"] == 3 and overall["hint_gain"]["psnr"]["mean"] > 5
    # The split: (CLIP crop only − no hint) + (the whole hint − CLIP crop only) = the hint's gain, pair by pair.
    for record in results.samples.values():
        scores = record["scores"]
        assert scores["model_hint_clip"] != scores["model_hint"]
        assert scores["hint_clip_gain"]["psnr"] + scores["hint_attention_gain"]["psnr"] == \
            pytest.approx(scores["hint_gain"]["psnr"])
    # The hinted copy is the plain recon's copy of the true reference, exactly.
    plain = run_recon(video_pairs(), tmp_path / "plain", HintedCopyEditor(), ReconSettings(long_side=128))
    for pair_id, record in results.samples.items():
        assert record["scores"]["model_hint"] == plain.samples[pair_id]["scores"]["model"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["distractor"] is True
    assert json.loads((tmp_path / "out" / "results.json").read_text())["distractor"] is True
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "hint gain (model with the hint − model without)" in markdown and "of which CLIP's crop" in markdown
    with pytest.raises(MimicBrushError, match="other settings"):  # a plain run does not resume a distractor run
        run_recon(video_pairs(), tmp_path / "out", HintedCopyEditor(), ReconSettings(long_side=128),
                  attention_off=mean_colour_editor)
