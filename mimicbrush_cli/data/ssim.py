"""SSIM between candidate frames, batched, matching scikit-image.

Pair selection scores hundreds of frame pairs per video, so SSIM runs on small grayscale copies of
the frames (the structural change that makes a pair useful is visible at 64-128 px). The formula is
scikit-image's default `structural_similarity`: a 7x7 uniform window, sample covariance, K1=0.01,
K2=0.03, mean over the window-valid interior; tests pin the agreement. `ssim_pairs_skimage` is the
reference, one call per pair.

The default (`ssim_pairs_opencv`) does per pair only what depends on the pair: each frame's local
means and variances are computed once and shared by every pair it is in, and a frame's pairs are
scored together against it, so a pair costs one product image, one box filter and the formula.
The frames `to_ssim_gray` makes are whole numbers, so the product of the frames centred on 128 is
exact in int16 and its window sums exact in OpenCV's integer accumulator.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

WINDOW = 7
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0

SsimBackend = Literal["opencv", "torch", "skimage"]


def ssim_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) of a frame's gray copy for SSIM: the longer side `side`, never upscaled, no side
    shorter than the window."""
    scale = side / max(height, width)
    if scale >= 1:
        return width, height
    return max(WINDOW, round(width * scale)), max(WINDOW, round(height * scale))


def to_ssim_gray(frame: np.ndarray, side: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (h, w) luma whose longer side is `side` (area-averaged)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    size = ssim_size(width, height, side)
    if size != (width, height):
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray.astype(np.float32)


def _box_torch(images: torch.Tensor) -> torch.Tensor:
    """Mean over every valid 7x7 window of (B, h, w) float32, via an integral image.

    A summed-area table costs four reads per output against avg_pool2d's 49, and float64 keeps
    its differences exact enough for SSIM."""
    import torch.nn.functional as F

    table = F.pad(images.double().cumsum(1).cumsum(2), (1, 0, 1, 0))
    w = WINDOW
    window_sum = table[:, w:, w:] - table[:, :-w, w:] - table[:, w:, :-w] + table[:, :-w, :-w]
    return (window_sum / (w * w)).float()


def _ssim_batch(first, second, mean, variance, box):
    """SSIM per pair from the frames' precomputed local means/variances; works on torch and numpy."""
    n = WINDOW * WINDOW
    covariance_norm = n / (n - 1)  # scikit-image's use_sample_covariance=True
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    mu_x, mu_y = mean[0], mean[1]
    covariance = covariance_norm * (box(first * second) - mu_x * mu_y)
    numerator = (2 * mu_x * mu_y + c1) * (2 * covariance + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (variance[0] + variance[1] + c2)
    return (numerator / denominator).mean(axis=(1, 2))


def _ssim_pairs_vectorised(frames, pairs, box, batch_size: int) -> np.ndarray:
    n = WINDOW * WINDOW
    # Per-frame local moments are shared by every pair the frame is in: compute them once.
    mean = box(frames)
    variance = (n / (n - 1)) * (box(frames * frames) - mean * mean)
    scores = []
    for start in range(0, len(pairs), batch_size):
        first, second = pairs[start:start + batch_size].T
        scores.append(_ssim_batch(frames[first], frames[second], (mean[first], mean[second]),
                                  (variance[first], variance[second]), box))
    return np.concatenate([np.asarray(score, dtype=np.float64) for score in scores])


def ssim_pairs_torch(frames: np.ndarray, pairs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """SSIM of `frames[pairs[k, 0]]` vs `frames[pairs[k, 1]]` for each k, vectorised in torch.

    frames: float32 (N, h, w) gray in [0, 255]; pairs: int (P, 2). Returns float64 (P,).
    """
    import torch  # only this backend needs it: `prepare` (and its config errors) start without torch

    if len(pairs) == 0:
        return np.zeros(0, np.float64)
    stack = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    index = torch.from_numpy(np.asarray(pairs, dtype=np.int64))
    with torch.no_grad():
        return _ssim_pairs_vectorised(stack, index, _box_torch, batch_size)


def _window_sums(images: np.ndarray) -> np.ndarray:
    """Sum over the 7x7 window around every pixel of (B, h, w), as float32, one OpenCV box filter over
    the stacked batch (a window-valid pixel's window never crosses into the next image)."""
    count, height, width = images.shape
    sums = cv2.boxFilter(images.reshape(count * height, width), cv2.CV_32F, (WINDOW, WINDOW), normalize=False)
    return sums.reshape(count, height, width)


def ssim_pairs_opencv(frames: np.ndarray, pairs: np.ndarray, block_pixels: int = 1 << 18) -> np.ndarray:
    """The same scores, from per-frame moments and one product image per pair (see the module note).

    `block_pixels` bounds the pixels of the pairs scored at once (their temporaries stay in cache)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    scores = np.zeros(len(pairs), np.float64)
    if len(pairs) == 0:
        return scores
    frames = np.asarray(frames, dtype=np.float32)
    count, height, width = frames.shape
    n = WINDOW * WINDOW
    covariance_norm = n / (n - 1)  # scikit-image's use_sample_covariance=True
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    # Centred on 128, whole-number frames multiply exactly in int16; other frames stay float32.
    whole = bool(np.all((frames >= 0) & (frames <= 255) & (frames == np.round(frames))))
    centred = (frames - 128).astype(np.int16 if whole else np.float32)
    local_mean = _window_sums(centred) / n  # of the centred frame: smaller, so less cancellation below
    mean = local_mean + 128
    variance = covariance_norm * (_window_sums(centred.astype(np.float32) ** 2) / n - local_mean ** 2)
    # SSIM = (2 mu_x mu_y + c1)(2 cov + c2) / ((mu_x^2 + c1/2 + mu_y^2 + c1/2)(var_x + c2/2 + var_y + c2/2))
    luminance_half, contrast_half = mean ** 2 + c1 / 2, variance + c2 / 2
    twice_mean, twice_normed_mean = 2 * mean, 2 * covariance_norm * local_mean
    half = WINDOW // 2
    step = max(1, block_pixels // (height * width))
    first = pairs[:, 0]
    group_starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]])
    for group_start, group_end in zip(group_starts, np.r_[group_starts[1:], len(pairs)]):
        i = first[group_start]
        for start in range(group_start, group_end, step):
            stop = min(start + step, group_end)
            others = pairs[start:stop, 1]
            if len(others) > 1 and np.all(np.diff(others) == 1):
                others = slice(others[0], others[-1] + 1)  # a view: no copies of the per-frame moments
            ssim = _window_sums(centred[others] * centred[i])  # (B, h, w)
            ssim *= np.float32(2 * covariance_norm / n)
            ssim -= local_mean[others] * twice_normed_mean[i]
            ssim += np.float32(c2)  # 2 cov + c2
            ssim *= mean[others] * twice_mean[i] + np.float32(c1)
            ssim /= (luminance_half[others] + luminance_half[i]) * (contrast_half[others] + contrast_half[i])
            scores[start:stop] = ssim[:, half:height - half, half:width - half].mean(axis=(1, 2), dtype=np.float64)
    return scores


def ssim_pairs_skimage(frames: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The same scores as `ssim_pairs_torch`, one scikit-image call per pair (reference implementation)."""
    from skimage.metrics import structural_similarity

    return np.array([structural_similarity(frames[i], frames[j], data_range=DATA_RANGE, win_size=WINDOW)
                     for i, j in pairs], dtype=np.float64)


BACKENDS = {"opencv": ssim_pairs_opencv, "torch": ssim_pairs_torch, "skimage": ssim_pairs_skimage}


def ssim_pairs(frames: np.ndarray, pairs: np.ndarray, backend: SsimBackend = "opencv") -> np.ndarray:
    return BACKENDS[backend](frames, pairs)

