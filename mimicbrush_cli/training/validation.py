"""Validation edits during training: a few fixed items, edited by the current weights, saved as one
PNG grid per check — one row per item: source | mask | reference | result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import imaging
from ..outputs import save_image_atomically
from ..pipeline import EditSettings
from .config import ValidationConfig


@dataclass(frozen=True)
class ValidationItem:
    source: np.ndarray     # uint8 (S, S, 3)
    reference: np.ndarray  # uint8 (S, S, 3)
    mask: np.ndarray       # bool (S, S), True = generate


def validation_items(dataset, count: int) -> list[ValidationItem]:
    """The first `count` items of a dataset (epoch 0), as images: the same items at every check."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    items = []
    for index in range(min(count, len(dataset))):
        item = dataset[index]
        items.append(ValidationItem(source=imaging.from_model_range(item["source"].float().numpy()),
                                    reference=imaging.from_model_range(item["reference"].float().numpy()),
                                    mask=item["mask"][0].numpy() > 0.5))
    return items


def image_grid(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Equal-sized uint8 (S, S, 3) tiles in a white-separated grid."""
    size = rows[0][0].shape[0]
    height = len(rows) * size + (len(rows) - 1) * gap
    width = len(rows[0]) * size + (len(rows[0]) - 1) * gap
    grid = np.full((height, width, 3), 255, np.uint8)
    for row_index, row in enumerate(rows):
        for column, tile in enumerate(row):
            top, left = row_index * (size + gap), column * (size + gap)
            grid[top:top + size, left:left + size] = tile
    return grid


@torch.no_grad()
def render_validation(pipeline, items: list[ValidationItem], config: ValidationConfig) -> np.ndarray:
    settings = EditSettings(steps=config.steps, guidance=config.guidance, keep_shape=config.keep_shape,
                            crop=False, seed=config.seed)
    results = pipeline([item.source for item in items], [item.reference for item in items],
                       [item.mask for item in items], settings)
    rows = [[item.source, np.repeat(item.mask[..., None].astype(np.uint8) * 255, 3, axis=2), item.reference,
             samples[0]] for item, samples in zip(items, results)]
    return image_grid(rows)


def save_validation_grid(pipeline, items: list[ValidationItem], config: ValidationConfig, path: Path) -> Path:
    save_image_atomically(render_validation(pipeline, items, config), path)
    return path
