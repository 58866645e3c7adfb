"""Pixel metrics as pure functions on uint8 RGB arrays: SSIM, PSNR (whole and masked), cosine scores.

SSIM and PSNR come from scikit-image with `data_range=255`; SSIM uses its default 7×7 uniform
window over the three colour channels (`channel_axis=2`), shrunk to the largest odd size that fits
when a crop is narrower than 7 px. PSNR of identical images is `math.inf`: the metric functions
return it as is, and the reports decide how to store and average it (see `report.py`).
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..imaging import mask_box

DATA_RANGE = 255.0
SSIM_WINDOW = 7  # scikit-image's default


def _check_pair(first: np.ndarray, second: np.ndarray) -> None:
    if first.shape != second.shape:
        raise ValueError(f"images differ in shape: {first.shape} vs {second.shape}")
    if first.dtype != np.uint8 or second.dtype != np.uint8:
        raise ValueError("metrics take uint8 images")


def _ssim_window(height: int, width: int) -> int:
    side = min(SSIM_WINDOW, height, width)
    side -= 1 - side % 2  # the window must be odd
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {width}x{height}")
    return side


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Structural similarity of two uint8 (H, W, 3) images, in [-1, 1]; 1 for identical images."""
    _check_pair(first, second)
    return float(structural_similarity(first, second, data_range=DATA_RANGE, channel_axis=2,
                                       win_size=_ssim_window(*first.shape[:2])))


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels; `math.inf` for identical images."""
    _check_pair(first, second)
    if np.array_equal(first, second):
        return math.inf
    return float(peak_signal_noise_ratio(first, second, data_range=DATA_RANGE))


def masked_psnr(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> float:
    """PSNR with the mean squared error taken over the True pixels of `mask` only."""
    _check_pair(first, second)
    difference = first[mask].astype(np.float64) - second[mask].astype(np.float64)
    mse = float(np.mean(difference ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE ** 2 / mse)


def masked_ssim(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> float:
    """The SSIM map averaged over the True pixels of `mask` (computed on the mask's bounding box)."""
    _check_pair(first, second)
    rows, cols = mask_box(mask).slices()
    a, b, inside = first[rows, cols], second[rows, cols], mask[rows, cols]
    _, ssim_map = structural_similarity(a, b, data_range=DATA_RANGE, channel_axis=2,
                                        win_size=_ssim_window(*a.shape[:2]), full=True)
    return float(ssim_map.mean(axis=2)[inside].mean())


def cosine_score(first: np.ndarray, second: np.ndarray) -> float:
    """Cosine similarity of two embedding vectors ×100, the scale of DINO-I, CLIP-I and CLIP-T."""
    first, second = np.asarray(first, np.float64).ravel(), np.asarray(second, np.float64).ravel()
    return float(100.0 * first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))
