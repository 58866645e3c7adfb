"""Training masks: the keypoint-guided grid for video pairs, and the never-empty, never-full rule.

Released helpers (REFERENCE.md §5): split the source into an n x n grid, n uniform in 3..10; find
ORB keypoints (200 features); the 5 cells holding the most keypoints are masked with p = 0.7, every
other cell with p = 0.3 (the paper says 0.75 / 0.5: set `keypoint_cell_p` / `other_cell_p`).
Keypoint-rich cells are textured, distinctive regions, exactly where imitation is hard and useful.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskingConfig:
    grid_min: int = 3
    grid_max: int = 10
    orb_features: int = 200
    keypoint_cells: int = 5
    keypoint_cell_p: float = 0.7   # paper: 0.75
    other_cell_p: float = 0.3      # paper: 0.5
    box_p: float = 0.0             # video rows whose mask is instead one box (`box_mask`), the shape
                                   # `benchmark recon` scores: a region the source's context cannot fill
    box_fraction: tuple[float, float] = (0.3, 0.6)  # its sides, as fractions of the image's


PAPER_MASKING = MaskingConfig(keypoint_cell_p=0.75, other_cell_p=0.5)


def keypoint_counts(image: np.ndarray, grid: int, orb_features: int) -> np.ndarray:
    """ORB keypoints per grid cell of uint8 (H, W, 3) RGB `image`: int (grid, grid)."""
    height, width = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    orb = cv2.ORB_create(nfeatures=orb_features, edgeThreshold=min(31, max(3, min(height, width) // 8)),
                         patchSize=min(31, max(3, min(height, width) // 8)))
    counts = np.zeros((grid, grid), np.int64)
    for keypoint in orb.detect(gray, None):
        x, y = keypoint.pt
        counts[min(int(y * grid / height), grid - 1), min(int(x * grid / width), grid - 1)] += 1
    return counts


def grid_mask(image: np.ndarray, rng: np.random.Generator, config: MaskingConfig = MaskingConfig()) -> np.ndarray:
    """The keypoint-guided grid mask of `image`: bool (H, W), True = region to generate; never empty or full."""
    height, width = image.shape[:2]
    grid = int(rng.integers(config.grid_min, config.grid_max + 1))
    counts = keypoint_counts(image, grid, config.orb_features).ravel()
    # Ties (cells without keypoints, most often) are broken at random, not by position.
    order = np.lexsort((rng.permutation(counts.size), -counts))
    probability = np.full(counts.size, config.other_cell_p)
    probability[order[:config.keypoint_cells]] = config.keypoint_cell_p
    chosen = rng.random(counts.size) < probability
    if not chosen.any():
        chosen[order[0]] = True
    elif chosen.all():
        chosen[order[-1]] = False
    rows = np.linspace(0, height, grid + 1).round().astype(int)
    cols = np.linspace(0, width, grid + 1).round().astype(int)
    cells = chosen.reshape(grid, grid)
    # Expand the cell grid to pixels: every pixel looks up its row's and column's cell.
    row_of = np.repeat(np.arange(grid), np.diff(rows))
    col_of = np.repeat(np.arange(grid), np.diff(cols))
    return cells[row_of][:, col_of]


def box_mask(shape: tuple[int, int], rng: np.random.Generator, config: MaskingConfig = MaskingConfig()) -> np.ndarray:
    """One axis-aligned box, sides drawn in `config.box_fraction` of the image's, anywhere inside it."""
    height, width = shape
    low, high = config.box_fraction
    box_height, box_width = (max(1, round(side * rng.uniform(low, high))) for side in (height, width))
    top, left = int(rng.integers(0, height - box_height + 1)), int(rng.integers(0, width - box_width + 1))
    mask = np.zeros(shape, bool)
    mask[top:top + box_height, left:left + box_width] = True
    return mask


def is_partial(mask: np.ndarray, min_fraction: float = 0.005) -> bool:
    """Whether a mask leaves both something to generate and something to keep."""
    fraction = float(mask.mean())
    return min_fraction <= fraction <= 1 - min_fraction
