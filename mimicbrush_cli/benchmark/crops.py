"""The regions the paper's metrics compare, as pure functions on arrays.

- Inner-ID: the source mask's bounding box cut from the result and from the ground truth.
- Inter-ID: the masked region with its background removed — pixels outside the mask painted
  white, the fill MimicBrush itself uses when it pads images for CLIP — cut to the mask's box.
  The result is cut with the source mask, the reference with the reference mask.
"""

from __future__ import annotations

import numpy as np

from ..imaging import WHITE, mask_box

BACKGROUND = WHITE


def box_crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The bounding box of `mask`'s True pixels, cut from `image` (any channels)."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    return image[mask_box(mask).slices()]


def remove_background(image: np.ndarray, mask: np.ndarray, fill: int = BACKGROUND) -> np.ndarray:
    """A copy of `image` with every pixel outside `mask` set to `fill`."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    return np.where(mask[..., None], image, np.asarray(fill, image.dtype)).astype(image.dtype)


def foreground_crop(image: np.ndarray, mask: np.ndarray, fill: int = BACKGROUND) -> np.ndarray:
    """Background removed, then cut to the mask's box: what DINO-I and CLIP-I compare."""
    return box_crop(remove_background(image, mask, fill), mask)
