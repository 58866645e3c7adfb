"""Pre- and post-processing of edits as pure functions on numpy arrays (no model inside).

Images are uint8 (H, W, 3) RGB; masks are bool (H, W) with True = region to repaint.
The released pipeline pads to square (white for images, black for masks), resizes to the working
size with Lanczos, and pastes the result back through a blurred mask, so that pixels outside the
blurred mask are exactly the source's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import MimicBrushError

WHITE = 255
MASK_THRESHOLD = 128          # released: mask = pixels > 128
BLEND_BLUR_PASSES = 10        # released: the 0/255 mask blurred 10 times with a 3x3 Gaussian


@dataclass(frozen=True)
class Box:
    """A pixel rectangle [top, bottom) × [left, right)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


# ---------------------------------------------------------------- reading inputs

def _open_image(path: str | Path, what: str) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise MimicBrushError(f"{what} not found: {path}")
    if not path.is_file():
        raise MimicBrushError(f"{what} is not a file: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MimicBrushError(f"{what} is not a readable image: {path} ({type(error).__name__})") from None
    return image


def load_image(path: str | Path, what: str = "image") -> np.ndarray:
    """An RGB uint8 image; transparent pixels are composited on white, as padding is."""
    image = _open_image(path, what)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_mask(path: str | Path, invert: bool = False) -> np.ndarray:
    """A bool mask, True = edit. White pixels edit; an RGBA mask with real transparency uses its alpha."""
    image = _open_image(path, "mask")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        values = alpha if alpha.min() < 255 else np.asarray(image.convert("L"))
    else:
        values = np.asarray(image.convert("L"))
    mask = values > MASK_THRESHOLD
    return ~mask if invert else mask


def check_edit_inputs(source: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> None:
    """Reject inputs that cannot be edited, with a message a user can act on."""
    if mask.dtype != bool:  # a 0/255 mask would be read as weights far outside [0, 1]
        raise MimicBrushError(f"mask must be a bool array (True = edit), not {mask.dtype}: pass `mask > 0`")
    if mask.shape != source.shape[:2]:
        raise MimicBrushError(f"mask size {mask.shape[1]}x{mask.shape[0]} differs from source size "
                              f"{source.shape[1]}x{source.shape[0]}")
    if not mask.any():
        raise MimicBrushError("mask is empty: paint the region to edit white (or pass --invert-mask)")
    if min(source.shape[:2]) < 8 or min(reference.shape[:2]) < 8:
        raise MimicBrushError("images must be at least 8x8 pixels")


# ---------------------------------------------------------------- geometry

def pad_to_square(image: np.ndarray, fill: int | bool) -> tuple[np.ndarray, Box]:
    """Centre `image` on a square canvas; returns the canvas and where the image sits in it."""
    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    canvas = np.full((side, side) + image.shape[2:], fill, dtype=image.dtype)
    canvas[top:top + height, left:left + width] = image
    return canvas, Box(top, left, top + height, left + width)


def unpad(image: np.ndarray, box: Box) -> np.ndarray:
    return image[box.slices()]


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Lanczos resize of a uint8 RGB image to `size` (side, or (height, width))."""
    height, width = (size, size) if isinstance(size, int) else size
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a bool mask as a 0/255 image with Lanczos, then binarise at >= 0.5 (released behaviour)."""
    height, width = (size, size) if isinstance(size, int) else size
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized) >= 128


def mask_box(mask: np.ndarray) -> Box:
    """The tight bounding box of the True pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise MimicBrushError("mask is empty")
    return Box(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def context_crop_box(mask: np.ndarray, min_side: int, context: float = 2.0) -> Box:
    """A square box around the mask with room for context, inside the image where it fits.

    Side = max(context × the mask box's longest side, `min_side`), capped by the image. Editing this
    crop at working resolution and pasting it back keeps small edits on large photos sharp; when
    the box would cover the image anyway it equals the whole image (the released behaviour).
    """
    image_height, image_width = mask.shape
    box = mask_box(mask)
    side = int(round(max(context * max(box.height, box.width), min_side)))
    crop_height, crop_width = min(side, image_height), min(side, image_width)
    centre_y, centre_x = (box.top + box.bottom) / 2, (box.left + box.right) / 2
    top = int(np.clip(round(centre_y - crop_height / 2), 0, image_height - crop_height))
    left = int(np.clip(round(centre_x - crop_width / 2), 0, image_width - crop_width))
    return Box(top, left, top + crop_height, left + crop_width)


# ---------------------------------------------------------------- blending

def blend_alpha(mask: np.ndarray) -> np.ndarray:
    """Float alpha in [0, 1]: the 0/255 mask blurred 10 times with a 3x3 Gaussian (released)."""
    alpha = mask.astype(np.float32) * 255.0
    for _ in range(BLEND_BLUR_PASSES):
        alpha = cv2.GaussianBlur(alpha, (3, 3), 0)
    return alpha / 255.0


def paste_back(source: np.ndarray, prediction: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`prediction·alpha + source·(1 − alpha)`; pixels where alpha is 0 stay exactly the source's."""
    alpha = blend_alpha(mask)[..., None]
    blended = prediction.astype(np.float32) * alpha + source.astype(np.float32) * (1.0 - alpha)
    result = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    untouched = alpha[..., 0] == 0
    result[untouched] = source[untouched]
    return result


# ---------------------------------------------------------------- model-facing conversions

def to_model_range(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) → float32 (3, H, W) in [-1, 1]."""
    return (image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


def from_model_range(pixels: np.ndarray) -> np.ndarray:
    """float (3, H, W) in [-1, 1] → uint8 (H, W, 3)."""
    return np.clip(np.rint((pixels.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def black_out_mask(image_model_range: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The masked source: masked pixels painted black (-1), not grey, as the released model expects."""
    return np.where(mask[None], np.float32(-1.0), image_model_range).astype(np.float32)


@dataclass(frozen=True)
class PreparedEdit:
    """One edit brought to working resolution, plus what is needed to paste the result back."""

    source: np.ndarray          # (R, R, 3) uint8, padded square source at working size
    reference: np.ndarray       # (R, R, 3) uint8, padded square reference at working size
    reference_square: np.ndarray  # padded square reference at its own size (CLIP input)
    source_square: np.ndarray   # padded square source at its own size (depth input)
    mask: np.ndarray            # (R, R) bool
    crop: Box                   # where the edited region sits in the full source
    pad: Box                    # where the crop sits inside its square canvas


def prepare_edit(source: np.ndarray, reference: np.ndarray, mask: np.ndarray, resolution: int,
                 crop: bool) -> PreparedEdit:
    """Crop (optionally), pad to square and resize to the working resolution."""
    check_edit_inputs(source, reference, mask)
    crop_box = context_crop_box(mask, min_side=resolution) if crop else Box(0, 0, *source.shape[:2])
    source_crop, mask_crop = source[crop_box.slices()], mask[crop_box.slices()]
    source_square, pad_box = pad_to_square(source_crop, WHITE)
    mask_square, _ = pad_to_square(mask_crop, False)
    reference_square, _ = pad_to_square(reference, WHITE)
    return PreparedEdit(
        source=resize_image(source_square, resolution), reference=resize_image(reference_square, resolution),
        reference_square=reference_square, source_square=source_square,
        mask=resize_mask(mask_square, resolution), crop=crop_box, pad=pad_box)


def finish_edit(source: np.ndarray, mask: np.ndarray, prepared: PreparedEdit, prediction: np.ndarray) -> np.ndarray:
    """Bring a working-resolution prediction back to the full source and blend it in."""
    side = prepared.source_square.shape[0]
    prediction_crop = unpad(resize_image(prediction, side), prepared.pad)
    rows, cols = prepared.crop.slices()
    result = source.copy()
    result[rows, cols] = paste_back(source[rows, cols], prediction_crop, mask[rows, cols])
    return result
