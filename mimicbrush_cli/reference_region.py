"""A reference hint: the part of the reference to copy from (a mask or a box over the reference), as pure array
functions.

The hint reaches the model twice (REFERENCE.md §2): the reference-attention keys outside it are biased away
(`models/reference_attention.py`), for which it is brought onto the padded reference square at working size;
and the CLIP tokens come from its square crop (AnyDoor's: the region's bounding box grown to a square about its
centre, white where that leaves the reference) instead of the whole reference. A hint that covers the whole
reference is no hint.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import imaging
from .errors import MimicBrushError


def check_reference_region(reference: np.ndarray, region: np.ndarray, what: str = "reference mask") -> None:
    """Refuse (one line) a region that is not a bool mask of the reference's size with a pixel inside."""
    if region.dtype != bool:
        raise MimicBrushError(f"{what} must be a bool array (True = copy from here), not {region.dtype}")
    if region.shape != reference.shape[:2]:
        raise MimicBrushError(f"{what} size {region.shape[1]}x{region.shape[0]} differs from reference size "
                              f"{reference.shape[1]}x{reference.shape[0]}")
    if not region.any():
        raise MimicBrushError(f"{what} is empty: paint the part of the reference to copy from white")


def any_pool(mask: np.ndarray, size: int) -> np.ndarray:
    """A square bool mask brought to (size, size): an output pixel is True if any input pixel of its cell is
    (cells cut as adaptive pooling cuts them: [floor(i·n/size), ceil((i+1)·n/size)))."""
    side = mask.shape[0]
    counts = np.zeros((side + 1, side + 1), np.int64)
    counts[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    cells = np.arange(size)
    start = (cells * side) // size
    stop = -((-(cells + 1) * side) // size)  # ceil
    y0, y1, x0, x1 = start[:, None], stop[:, None], start[None], stop[None]
    return (counts[y1, x1] - counts[y0, x1] - counts[y1, x0] + counts[y0, x0]) > 0


def square_crop(reference: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The region's bounding box grown to a square about its centre, cut from the reference; white where the
    square leaves the reference."""
    box = imaging.mask_box(region)
    side = max(box.height, box.width)
    top, left = box.top - (side - box.height) // 2, box.left - (side - box.width) // 2
    canvas = np.full((side, side, 3), imaging.WHITE, np.uint8)
    height, width = reference.shape[:2]
    rows = slice(max(top, 0), min(top + side, height))
    cols = slice(max(left, 0), min(left + side, width))
    canvas[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = reference[rows, cols]
    return canvas


def with_reference_region(prepared: imaging.PreparedEdit, reference: np.ndarray,
                          region: np.ndarray | None) -> imaging.PreparedEdit:
    """`prepared` with its hint: the region on the padded reference square at working size (the reference is
    padded as `prepare_edit` pads it) and the CLIP crop. None, or a region of the whole reference: no hint."""
    if region is None:
        return prepared
    check_reference_region(reference, region)
    if region.all():
        return prepared
    square, _ = imaging.pad_to_square(region, False)
    return replace(prepared, reference_region=any_pool(square, prepared.mask.shape[0]),
                   clip_square=square_crop(reference, region))
