"""Pixel metrics as pure functions on uint8 RGB arrays: SSIM, PSNR (whole and masked), cosine scores.

SSIM and PSNR come from scikit-image with `data_range=255`; SSIM uses its default 7×7 uniform
window over the three colour channels (`channel_axis=2`), shrunk to the largest odd size that fits
when a crop is narrower than 7 px. PSNR of identical images is `math.inf`: the metric functions
return it as is, and the reports decide how to store and average it (see `report.py`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

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
    from skimage.metrics import structural_similarity  # scikit-image's metrics import scipy.stats: seconds

    _check_pair(first, second)
    return float(structural_similarity(first, second, data_range=DATA_RANGE, channel_axis=2,
                                       win_size=_ssim_window(*first.shape[:2])))


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels; `math.inf` for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

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
    from skimage.metrics import structural_similarity

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


def masked_edge_correlation(first: np.ndarray, second: np.ndarray, mask: np.ndarray, margin: int = 0) -> float:
    """Pearson correlation of the two images' gradient magnitudes over the mask shrunk by `margin` pixels.

    A structure score that a flat fill cannot win: a constant region has no gradient and scores 0, and so
    does texture in the wrong place; structure where the other image has it scores up to 1, blurred or not
    (correlation ignores contrast). `margin` keeps out the band where a paste-back blends the result with
    the source itself. Returns 0 when either side is flat or the shrunk mask is empty.
    """
    _check_pair(first, second)
    inside = mask
    if margin:
        inside = cv2.erode(mask.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    if inside.sum() < 2:
        return 0.0
    magnitudes = []
    for image in (first, second):
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gradient_x, gradient_y = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        magnitudes.append(np.hypot(gradient_x, gradient_y)[inside].astype(np.float64))
    a, b = magnitudes
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
