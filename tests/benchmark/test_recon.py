import json

import numpy as np
import pytest
from skimage import data

from mimicbrush_cli.benchmark.recon import ReconSettings, mismatched_indices, recon_mask, run_recon
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


def test_an_imitating_editor_has_a_positive_reference_gain(tmp_path, copy_reference_editor):
    results = run_recon(video_pairs(), tmp_path / "out", copy_reference_editor, ReconSettings(long_side=128))
    assert results.means["psnr_gain"] > 5 and results.means["ssim_gain"] > 0.1
    assert all(record["mismatched_with"] != pair_id for pair_id, record in results.samples.items())
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["count"] == 3 and (tmp_path / "out" / "grids" / "video-cat_0.png").is_file()
    assert "reference gain" in (tmp_path / "out" / "results.md").read_text()
    rerun = run_recon(video_pairs(), tmp_path / "out", copy_reference_editor, ReconSettings(long_side=128))
    assert (rerun.edited, rerun.resumed) == (0, 3)


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
    assert [pair_id for pair_id, _, _ in pairs] == ["video-astronaut_0", "video-cat_0", "video-cup_0"]
    assert pairs[1][1].shape == data.chelsea().shape
    results = run_recon(pairs, tmp_path / "out", copy_reference_editor, ReconSettings(long_side=128))
    assert results.means["psnr_gain"] > 5
