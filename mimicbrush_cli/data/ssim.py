"""SSIM between candidate frames: a batched torch implementation that matches scikit-image.

Pair selection scores hundreds of frame pairs per video, so SSIM runs on small grayscale copies of
the frames (the structural change that makes a pair useful is visible at 64-128 px) and on whole
batches of pairs at once. The formula is scikit-image's default `structural_similarity`: a 7x7
uniform window, sample covariance, K1=0.01, K2=0.03, mean over the window-valid interior, so the
two implementations agree to float precision (tests pin it). `ssim_pairs_skimage` is the reference
and the fallback; the torch path is the faster of the two on CPU (see `benchmark_ssim`).
"""

from __future__ import annotations

import time
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

WINDOW = 7
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0

SsimBackend = Literal["opencv", "torch", "skimage"]


def to_ssim_gray(frame: np.ndarray, side: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (h, w) luma whose longer side is `side` (area-averaged)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    scale = side / max(height, width)
    if scale < 1:
        size = (max(WINDOW, round(width * scale)), max(WINDOW, round(height * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray.astype(np.float32)


def _box_torch(images: torch.Tensor) -> torch.Tensor:
    """Mean over every valid 7x7 window of (B, h, w) float32, via an integral image.

    A summed-area table costs four reads per output against avg_pool2d's 49, and float64 keeps
    its differences exact enough for SSIM."""
    table = F.pad(images.double().cumsum(1).cumsum(2), (1, 0, 1, 0))
    w = WINDOW
    window_sum = table[:, w:, w:] - table[:, :-w, w:] - table[:, w:, :-w] + table[:, :-w, :-w]
    return (window_sum / (w * w)).float()


def _box_opencv(images: np.ndarray) -> np.ndarray:
    """Mean over every valid 7x7 window of (B, h, w) float32, one cv2.blur over the stacked batch.

    Stacking the batch into one tall image is exact for the valid interior: a valid window never
    crosses from one image into the next."""
    count, height, width = images.shape
    blurred = cv2.blur(images.reshape(count * height, width), (WINDOW, WINDOW)).reshape(count, height, width)
    half = WINDOW // 2
    return blurred[:, half:height - half, half:width - half]


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
    if len(pairs) == 0:
        return np.zeros(0, np.float64)
    stack = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    index = torch.from_numpy(np.asarray(pairs, dtype=np.int64))
    with torch.no_grad():
        return _ssim_pairs_vectorised(stack, index, _box_torch, batch_size)


def ssim_pairs_opencv(frames: np.ndarray, pairs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The same scores, vectorised in numpy with OpenCV's SIMD box filter."""
    if len(pairs) == 0:
        return np.zeros(0, np.float64)
    stack = np.ascontiguousarray(frames, dtype=np.float32)
    return _ssim_pairs_vectorised(stack, np.asarray(pairs, dtype=np.int64), _box_opencv, batch_size)


def ssim_pairs_skimage(frames: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The same scores as `ssim_pairs_torch`, one scikit-image call per pair (reference implementation)."""
    from skimage.metrics import structural_similarity

    return np.array([structural_similarity(frames[i], frames[j], data_range=DATA_RANGE, win_size=WINDOW)
                     for i, j in pairs], dtype=np.float64)


BACKENDS = {"opencv": ssim_pairs_opencv, "torch": ssim_pairs_torch, "skimage": ssim_pairs_skimage}


def ssim_pairs(frames: np.ndarray, pairs: np.ndarray, backend: SsimBackend = "opencv") -> np.ndarray:
    return BACKENDS[backend](frames, pairs)


def benchmark_ssim(num_frames: int = 48, side: int = 96, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Seconds per pair of each backend on all pairs of `num_frames` random frames (for the note)."""
    rng = np.random.default_rng(seed)
    frames = rng.uniform(0, 255, (num_frames, side * 3 // 4, side)).astype(np.float32)
    pairs = np.array([(i, j) for i in range(num_frames) for j in range(i + 1, num_frames)])
    timings = {}
    for backend in BACKENDS:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            ssim_pairs(frames, pairs, backend)  # type: ignore[arg-type]
            best = min(best, time.perf_counter() - start)
        timings[backend] = best / len(pairs)
    return timings
