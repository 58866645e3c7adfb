import math

import numpy as np
import pytest
from skimage import data

from mimicbrush_cli.benchmark.metrics import cosine_score, masked_psnr, masked_ssim, psnr, ssim
from mimicbrush_cli.benchmark.report import json_scores, mean_scores


@pytest.fixture
def photo():
    return data.astronaut()[:128, :160]


def test_identical_images_have_ssim_one_and_infinite_psnr(photo):
    assert ssim(photo, photo.copy()) == pytest.approx(1.0)
    assert psnr(photo, photo.copy()) == math.inf


def test_gaussian_noise_of_known_sigma_gives_expected_psnr():
    rng = np.random.default_rng(0)
    clean = np.full((256, 256, 3), 128, np.uint8)  # mid-grey: clipping never touches the noise
    sigma = 10.0
    noisy = np.clip(np.rint(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
    assert psnr(clean, noisy) == pytest.approx(20 * math.log10(255 / sigma), abs=0.1)


def test_ssim_drops_with_noise(photo):
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, 25, photo.shape), 0, 255).astype(np.uint8)
    assert ssim(photo, noisy) < 0.9


def test_ssim_handles_crops_narrower_than_its_window(photo):
    assert ssim(photo[:5, :40], photo[:5, :40]) == pytest.approx(1.0)


def test_masked_psnr_only_sees_the_mask(photo):
    mask = np.zeros(photo.shape[:2], bool)
    mask[20:60, 30:90] = True
    changed = photo.copy()
    changed[~mask] = 0
    assert masked_psnr(photo, changed, mask) == math.inf
    changed[mask] = np.clip(photo[mask].astype(int) + 10, 0, 255)
    assert masked_psnr(photo, changed, mask) < 30
    assert masked_ssim(photo, photo, mask) == pytest.approx(1.0)


def test_cosine_score_is_hundred_for_parallel_vectors():
    assert cosine_score(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(100.0)
    assert cosine_score(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)


def test_infinite_psnr_is_stored_as_null_with_flag_and_left_out_of_the_mean():
    records = [json_scores({"psnr": math.inf, "ssim": 1.0}), json_scores({"psnr": 20.0, "ssim": 0.5})]
    assert records[0] == {"psnr": None, "psnr_infinite": True, "ssim": 1.0}
    means = mean_scores(records, ["psnr", "ssim"])
    assert means == {"psnr": 20.0, "psnr_infinite": 1, "ssim": 0.75}
