"""The torch Dataset, augmentation and masking."""

import numpy as np
import pytest
import torch
from skimage import data

from mimicbrush_cli.data import (AugmentationConfig, MaskingConfig, MimicBrushTrainingSet, TrainingDataConfig,
                                 build_augmentation, grid_mask, prepare)
from mimicbrush_cli.data.augment import augment
from mimicbrush_cli.data.masking import keypoint_counts


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, video_folder, sam_folder):
    from mimicbrush_cli.data import PrepareConfig

    folder = tmp_path_factory.mktemp("prepared")
    config = PrepareConfig(sample_fps=5.0, max_candidate_frames=20, min_gap_s=0.4, max_gap_s=2.0, ssim_min=0.15,
                           ssim_max=0.6, max_pairs_per_video=3, ssim_side=48, frame_max_side=64)
    prepare(folder, config, videos=video_folder, sam_images=sam_folder)
    return folder


def training_set(prepared, **overrides) -> MimicBrushTrainingSet:
    return MimicBrushTrainingSet(TrainingDataConfig(**({"shard_dirs": (prepared,), "resolution": 64} | overrides)))


def test_items_follow_the_training_contract(prepared):
    dataset = training_set(prepared)
    assert len(dataset) == 8
    kinds = set()
    for index in range(8):
        item = dataset[index]
        kinds.add(item["kind"])
        for name in ("source", "reference", "depth_source"):
            assert item[name].dtype == torch.float32 and item[name].shape == (3, 64, 64)
            assert item[name].min() >= -1 and item[name].max() <= 1
        assert item["mask"].shape == (1, 64, 64) and set(item["mask"].unique().tolist()) == {0.0, 1.0}
        torch.testing.assert_close(item["depth_source"], item["source"])
    assert kinds == {"video", "sam"}


def test_items_are_deterministic_given_seed_epoch_and_index(prepared):
    first, second = training_set(prepared, seed=3), training_set(prepared, seed=3)
    for name in ("source", "reference", "mask"):
        torch.testing.assert_close(first[5][name], second[5][name])
    before = first[5]["source"]
    first.set_epoch(1)
    assert not torch.equal(first[5]["source"], before)
    second.set_epoch(1)
    torch.testing.assert_close(first[5]["source"], second[5]["source"])


@pytest.mark.parametrize("video_ratio", [0.0, 0.3, 0.7, 1.0])
def test_video_and_sam_items_are_mixed_at_the_configured_ratio(prepared, video_ratio):
    items = 200
    dataset = training_set(prepared, samples_per_epoch=items, resolution=32, video_ratio=video_ratio,
                           augmentation=AugmentationConfig(enabled=False))
    share = np.mean([dataset[index]["kind"] == "video" for index in range(items)])
    # Binomial: one standard deviation is at most 0.035 for 200 items; the draws are fixed by the seed.
    assert share == pytest.approx(video_ratio, abs=0.08)


def test_sam_object_mask_follows_the_source_geometry():
    image = data.astronaut()
    mask = np.zeros(image.shape[:2], bool)
    mask[120:300, 150:380] = True
    painted = image.copy()
    painted[..., 0] = np.where(mask, 255, 0)  # the red channel *is* the mask
    transform = build_augmentation(128, AugmentationConfig(color_jitter=0.0, hue=0.0))
    for seed in range(5):
        out_image, out_mask = augment(transform, painted, seed, mask)
        agreement = ((out_image[..., 0] > 127) == out_mask).mean()
        assert agreement > 0.97


def test_source_and_reference_augmentations_are_independent():
    transform = build_augmentation(96)
    first, _ = augment(transform, data.chelsea(), seed=1)
    second, _ = augment(transform, data.chelsea(), seed=2)
    assert np.abs(first.astype(int) - second).mean() > 10


@pytest.mark.parametrize("config", [MaskingConfig(), MaskingConfig(keypoint_cell_p=1.0, other_cell_p=1.0),
                                    MaskingConfig(keypoint_cell_p=0.0, other_cell_p=0.0)],
                         ids=["released", "all-cells", "no-cells"])
def test_grid_mask_is_never_empty_or_full(config):
    image = data.coffee()[::2, ::2].copy()
    for seed in range(30):
        mask = grid_mask(image, np.random.default_rng(seed), config)
        assert mask.shape == image.shape[:2] and 0 < mask.mean() < 1


def test_keypoint_cells_are_masked_more_often_than_others():
    image = data.astronaut()[::2, ::2].copy()
    config = MaskingConfig(grid_min=4, grid_max=4)
    counts = keypoint_counts(image, 4, config.orb_features).ravel()
    richest, poorest = np.argsort(-counts)[:3], np.argsort(counts)[:3]
    hits = np.zeros(16)
    for seed in range(200):
        mask = grid_mask(image, np.random.default_rng(seed), config)
        hits += mask[32::64, 32::64].ravel()
    assert hits[richest].mean() / 200 > 0.6 and hits[poorest].mean() / 200 < 0.4


@pytest.mark.slow
def test_offline_photos_become_an_sa1b_folder_prepare_accepts(tmp_path):
    from mimicbrush_cli.data import PrepareConfig
    from mimicbrush_cli.data.offline_photos import write_offline_sa1b

    written = write_offline_sa1b(tmp_path / "sa1b")
    assert len(written) >= 3
    summary = prepare(tmp_path / "out", PrepareConfig(frame_max_side=128), sam_images=tmp_path / "sa1b")
    assert summary.sam_samples == len(written)


def test_box_masks_replace_grid_masks_on_the_configured_share_of_video_rows(prepared):
    from mimicbrush_cli.data.masking import box_mask

    def is_one_box(mask):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()

    boxes = training_set(prepared, samples_per_epoch=40, video_ratio=1.0,
                         masking=MaskingConfig(box_p=0.5, box_fraction=(0.3, 0.6)))
    grids = training_set(prepared, samples_per_epoch=40, video_ratio=1.0)
    box_rows = [is_one_box(boxes[index]["mask"][0].numpy().astype(bool)) for index in range(40)]
    assert 10 <= sum(box_rows) <= 30
    # Rows that keep their grid mask are the grid mask of a run without boxes: nothing else moved.
    for index, is_box in enumerate(box_rows):
        torch.testing.assert_close(boxes[index]["source"], grids[index]["source"])
        if not is_box:
            torch.testing.assert_close(boxes[index]["mask"], grids[index]["mask"])
    mask = box_mask((60, 100), np.random.default_rng(0), MaskingConfig(box_fraction=(0.3, 0.6)))
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert is_one_box(mask) and 18 <= len(rows) <= 36 and 30 <= len(cols) <= 60


def test_training_reads_shards_without_pyav(prepared):
    # A training machine needs no video decoder: PyAV loads only when `prepare` decodes.
    import subprocess
    import sys

    code = ("import sys\nfrom mimicbrush_cli.training import load_train_config, train\n"
            "from mimicbrush_cli.training.batches import open_training_data\n"
            f"config = load_train_config({{'data': {{'shard_dirs': [{str(prepared)!r}], 'resolution': 64}}}})\n"
            "open_training_data(config.data)[0]\nprint('av' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stdout + result.stderr
