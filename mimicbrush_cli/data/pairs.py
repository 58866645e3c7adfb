"""Choose training pairs among a video's candidate frames by SSIM and time gap.

The paper keeps frame pairs whose SSIM is neither too high (nothing changes: the model learns to
copy) nor too low (nothing in common: there is nothing to imitate). Here every candidate pair at
least `min_gap_s` apart is scored, those inside `[ssim_min, ssim_max]` are kept, and at most
`max_pairs` are chosen greedily, closest to the window's centre first, each frame used once, so a
video contributes varied pairs rather than many near-copies of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ssim import SsimBackend, ssim_pairs, to_ssim_gray


@dataclass(frozen=True)
class PairSelection:
    """pairs: int (K, 2) indices into the candidates, earlier frame first; scores: SSIM (K,).
    all_scores: SSIM of every scored candidate pair (for the histogram). Every scored pair is chosen
    or counted once: too similar (above the window), too different (below), or not chosen (inside
    the window, but a frame was already used or the video's `max_pairs` was reached)."""

    pairs: np.ndarray
    scores: np.ndarray
    all_scores: np.ndarray
    rejected_too_similar: int
    rejected_too_different: int
    not_chosen: int = 0


def candidate_pairs(times: np.ndarray, min_gap_s: float, max_gap_s: float) -> np.ndarray:
    """All (i, j), i < j, with min_gap_s <= times[j] - times[i] <= max_gap_s (0 = no upper bound)."""
    first, second = np.triu_indices(len(times), k=1)
    gaps = times[second] - times[first]
    keep = gaps >= min_gap_s - 1e-6
    if max_gap_s > 0:
        keep &= gaps <= max_gap_s + 1e-6
    return np.stack([first[keep], second[keep]], axis=1).astype(np.int64)


def select_pairs(frames: np.ndarray, times: np.ndarray, *, ssim_min: float, ssim_max: float, min_gap_s: float,
                 max_gap_s: float, max_pairs: int, ssim_side: int, backend: SsimBackend = "opencv") -> PairSelection:
    """Score candidate pairs of `frames` taken at `times` (s) and pick pairs. `frames`: uint8 (N, H, W, 3)
    RGB, or float32 (N, h, w) gray already at `ssim_side` (as `decode_candidates` makes it)."""
    candidates = candidate_pairs(times, min_gap_s, max_gap_s)
    if len(candidates) == 0:
        empty = np.zeros(0)
        return PairSelection(np.zeros((0, 2), np.int64), empty, empty, 0, 0)
    gray = frames if frames.ndim == 3 else np.stack([to_ssim_gray(frame, ssim_side) for frame in frames])
    scores = ssim_pairs(gray, candidates, backend)
    inside = (scores >= ssim_min) & (scores <= ssim_max)
    centre = (ssim_min + ssim_max) / 2
    order = np.lexsort((candidates[:, 1], candidates[:, 0], np.abs(scores - centre)))
    used: set[int] = set()
    chosen: list[int] = []
    for k in order:
        if len(chosen) >= max_pairs:
            break
        i, j = candidates[k]
        if inside[k] and i not in used and j not in used:
            chosen.append(int(k))
            used.update((int(i), int(j)))
    chosen.sort(key=lambda k: (candidates[k, 0], candidates[k, 1]))
    return PairSelection(candidates[chosen], scores[chosen], scores, int((scores > ssim_max).sum()),
                         int((scores < ssim_min).sum()), int(inside.sum()) - len(chosen))
