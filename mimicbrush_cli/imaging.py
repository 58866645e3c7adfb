"""Pre- and post-processing of edits as pure functions on numpy arrays (no model inside).

Images are uint8 (H, W, 3) RGB; masks are bool (H, W) with True = region to repaint.
The defaults are the released inference code's steps, kernel for kernel (REFERENCE.md §3): pad to
square (white for images, black for masks); black out the masked pixels at the padded native size,
then resize to the working size with PIL's Lanczos; resize the prediction back with OpenCV's
bilinear `cv2.resize`, and blend it in through the 8-bit mask blurred 10 times, truncating to uint8.
Pixels outside the blurred mask are exactly the source's.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MimicBrushError, first_line

WHITE = 255
MASK_THRESHOLD = 128          # released: mask = pixels > 128
BLEND_BLUR_PASSES = 10        # released: the 0/255 mask blurred 10 times with a 3x3 Gaussian
# How a prediction goes back into the source: "released" (cv2 bilinear resize, the blur rounded to
# 8 bits at every pass, the blend truncated) or "lanczos" (PIL Lanczos resize, the blur in float,
# the blend rounded to nearest: sharper and without the released code's rounding losses).
PASTE_BACK_KERNELS = ("released", "lanczos")


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

    def text(self) -> str:
        """`X0,Y0,X1,Y1`, as `parse_box` reads it (and `--mask-box`/`--reference-box` take it)."""
        return f"{self.left},{self.top},{self.right},{self.bottom}"


# ---------------------------------------------------------------- reading inputs
#
# Files are decoded by their content, whatever their name says (JPEG bytes in a .png are a JPEG). What a file
# decodes to is what a viewer shows: its EXIF orientation applied (to images and masks alike, so a mask painted
# over the shown photo lines up); an animation's first frame; CMYK as RGB = 255 (1 - C)(1 - K). A file whose
# header claims more than `max_pixels` is refused from the header, before anything is decoded.

# Pillow's own decompression-bomb threshold (twice `PIL.Image.MAX_IMAGE_PIXELS`, where it raises instead of warning):
# above it, files are refused before decoding; below it, decoded without Pillow's warning.
MAX_PIXELS = 2 * 89_478_485
# What Pillow raises on a file it cannot decode (its plugins let struct, zlib and index errors through on some).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error, zlib.error)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")


class UnreadableImage(MimicBrushError):
    """A file that is missing, not a file, empty, or not an image that can be decoded."""


class ImageTooLarge(MimicBrushError):
    """A file whose header claims more pixels than the limit (refused before it is decoded)."""

    def __init__(self, what: str, path: Path, pixels: int, limit: int, size: tuple[int, int] | None = None):
        self.what, self.path, self.pixels, self.limit, self.size = what, path, pixels, limit, size
        super().__init__(f"{self.describe(what)}: {path}")

    def describe(self, what: str) -> str:
        """`<what> is WxH = N MP, over the limit of M MP` (without the size when Pillow refused it unread)."""
        size = f"{self.size[0]}x{self.size[1]} = " if self.size else ""
        pixels = f"{size}{self.pixels / 1e6:.1f} MP, " if self.pixels else ""
        return f"{what} is {pixels}over the limit of {self.limit / 1e6:.1f} MP"


def _open_image(path: str | Path, what: str, max_pixels: int | None = None) -> Image.Image:
    """The decoded file (its first frame, EXIF orientation applied), or a one-line `MimicBrushError`."""
    path = Path(path)
    limit = min(max_pixels or MAX_PIXELS, MAX_PIXELS)
    if not path.exists():
        raise UnreadableImage(f"{what} not found: {path}")
    if path.is_dir():
        raise UnreadableImage(f"{what} is a folder, not an image file: {path}")
    if not path.is_file():
        raise UnreadableImage(f"{what} is not a file: {path}")
    try:
        if path.stat().st_size == 0:
            raise UnreadableImage(f"{what} is empty (0 bytes): {path}")
        with warnings.catch_warnings():
            # Pillow's warnings (a bomb under its limit, corrupt EXIF, palette transparency) would be lines of
            # their own; what matters is refused or handled here.
            warnings.simplefilter("ignore")
            with Image.open(path) as opened:
                width, height = opened.size
                if width * height > limit:
                    raise ImageTooLarge(what, path, width * height, limit, (width, height))
                opened.load()
                return ImageOps.exif_transpose(opened)  # a copy: the file is closed here
    except Image.DecompressionBombError as error:
        claimed = _BOMB_PIXELS.search(str(error))
        pixels, pillow_limit = (int(claimed[1]), int(claimed[2])) if claimed else (0, limit)
        raise ImageTooLarge(what, path, pixels, min(limit, pillow_limit)) from error
    except UnidentifiedImageError as error:
        raise UnreadableImage(f"{what} is not a readable image: {path} (not an image format that can be "
                              "decoded)") from error
    except _DECODE_ERRORS as error:
        raise UnreadableImage(f"{what} is not a readable image: {path} ({_decode_reason(error)})") from error


def _decode_reason(error: BaseException) -> str:
    reason = first_line(error)
    return "the file is truncated" if "truncated" in reason.lower() else reason


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits: Pillow's convert("L") clips at 255, which turns a photo (or a
    mask) all white."""
    values = np.asarray(image) if image.mode.startswith("I") else None
    if values is not None and (image.mode.startswith("I;16") or values.max() > 255):
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")
    return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def load_image(path: str | Path, what: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """An RGB uint8 image as a viewer shows the file (EXIF orientation applied; an animation's first frame);
    transparent pixels are composited on white, as padding is. More than `max_pixels` (default and at most
    `MAX_PIXELS`) is refused from the header."""
    return rgb_on_white(_open_image(path, what, max_pixels))


def rgb_on_white(image: Image.Image) -> np.ndarray:
    """A decoded image as RGB uint8; transparent pixels are composited on white, as padding is."""
    image = _eight_bit(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_mask(path: str | Path, invert: bool = False, max_pixels: int | None = None, what: str = "mask") -> np.ndarray:
    """A bool mask, True = edit, read as `load_image` reads files (EXIF orientation applied). White pixels edit;
    a mask with real transparency (RGBA, or a palette with transparent colours) uses its alpha."""
    return mask_from_image(_open_image(path, what, max_pixels), invert)


def mask_from_image(image: Image.Image, invert: bool = False) -> np.ndarray:
    """A decoded mask image as bool, True = edit, read as `load_mask` reads files."""
    image = _eight_bit(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")  # (a palette's transparency converts cleanly only to RGBA)
        alpha = np.asarray(rgba)[..., 3]
        values = alpha if alpha.min() < 255 else np.asarray(rgba.convert("L"))
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


def parse_box(text: str, what: str = "mask box") -> Box:
    """`X0,Y0,X1,Y1` in pixels (X1, Y1 exclusive, as PIL's crop) -> a Box; a clear error when malformed."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        x0, y0, x1, y1 = (int(part) for part in parts)
    except ValueError:
        raise MimicBrushError(f"{what} {text!r} must be four whole numbers X0,Y0,X1,Y1") from None
    if min(x0, y0) < 0 or x1 <= x0 or y1 <= y0:
        raise MimicBrushError(f"{what} {text!r} must have 0 <= X0 < X1 and 0 <= Y0 < Y1")
    return Box(top=y0, left=x0, bottom=y1, right=x1)


def box_mask(shape: tuple[int, ...], box: Box, what: str = "mask box", image: str = "image") -> np.ndarray:
    """A bool mask of `shape` (H, W, ...) that is True inside `box`, which must lie inside the image."""
    height, width = shape[:2]
    if box.right > width or box.bottom > height:
        raise MimicBrushError(f"{what} {box.text()} is outside the {width}x{height} {image}")
    mask = np.zeros((height, width), bool)
    mask[box.slices()] = True
    return mask


def check_pixel_count(image: np.ndarray, limit: int, what: str) -> None:
    """Reject an image with more than `limit` pixels (a server's guard against huge uploads)."""
    height, width = image.shape[:2]
    if height * width > limit:
        raise MimicBrushError(f"{what} is {width}x{height} = {height * width / 1e6:.1f} MP, over the limit of "
                              f"{limit / 1e6:.1f} MP")


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

def _check_paste_back(kernel: str) -> None:
    if kernel not in PASTE_BACK_KERNELS:
        raise ValueError(f"paste_back must be one of {PASTE_BACK_KERNELS}, not {kernel!r}")


def blend_alpha(mask: np.ndarray, kernel: str = "released") -> np.ndarray:
    """Alpha in [0, 1]: the 0/255 mask blurred 10 times with a 3x3 Gaussian.

    Released: the mask is an 8-bit image, so every pass rounds to whole levels (and the far tail of
    the blur rounds away to exactly 0); "lanczos" blurs in float32.
    """
    _check_paste_back(kernel)
    if kernel == "lanczos":
        alpha = mask.astype(np.float32) * 255.0
    else:
        alpha = mask.astype(np.uint8) * 255
    for _ in range(BLEND_BLUR_PASSES):
        alpha = cv2.GaussianBlur(alpha, (3, 3), 0)
    return alpha / 255.0


def paste_back(source: np.ndarray, prediction: np.ndarray, mask: np.ndarray, kernel: str = "released") -> np.ndarray:
    """`prediction·alpha + source·(1 − alpha)`; pixels where alpha is 0 stay exactly the source's.

    Released: in float64, then truncated to uint8 (`astype`); "lanczos": in float32, rounded to nearest.
    """
    alpha = blend_alpha(mask, kernel)[..., None]
    if kernel == "lanczos":
        blended = prediction.astype(np.float32) * alpha + source.astype(np.float32) * (1.0 - alpha)
        result = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    else:
        result = (prediction * alpha + source * (1 - alpha)).astype(np.uint8)
    untouched = alpha[..., 0] == 0
    result[untouched] = source[untouched]
    return result


def resize_prediction(prediction: np.ndarray, side: int, kernel: str = "released") -> np.ndarray:
    """A working-size square prediction back to the padded square's `side`.

    Released: `cv2.resize` with its default bilinear kernel (`crop_padding_and_resize`, which sizes
    it `int(R · side / R)`: exactly `side` for the power-of-two working sizes); "lanczos": PIL Lanczos.
    """
    _check_paste_back(kernel)
    if kernel == "lanczos":
        return resize_image(prediction, side)
    return cv2.resize(prediction, (side, side), interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------- model-facing conversions

def to_model_range(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) → float32 (3, H, W) in [-1, 1]."""
    return (image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


def from_model_range(pixels: np.ndarray) -> np.ndarray:
    """float (3, H, W) in [-1, 1] → uint8 (H, W, 3)."""
    return np.clip(np.rint((pixels.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_unit_range(pixels: np.ndarray) -> np.ndarray:
    """float (3, H, W) in [0, 1] → uint8 (H, W, 3), as diffusers' `numpy_to_pil`: `(x * 255).round()`."""
    return (pixels.transpose(1, 2, 0).astype(np.float32) * 255).round().astype(np.uint8)


def black_out_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The masked source: masked pixels painted black (0, i.e. -1 for the model), not grey, as the
    released model expects (`collage_region`)."""
    return np.where(mask[..., None], np.uint8(0), image)


@dataclass(frozen=True)
class PreparedEdit:
    """One edit brought to working resolution, plus what is needed to paste the result back."""

    masked_source: np.ndarray   # (R, R, 3) uint8: the padded source, masked pixels black, at working size
    reference: np.ndarray       # (R, R, 3) uint8, padded square reference at working size
    reference_square: np.ndarray  # padded square reference at its own size (CLIP input)
    source_square: np.ndarray   # padded square source at its own size (depth input)
    mask: np.ndarray            # (R, R) bool
    crop: Box                   # where the edited region sits in the full source
    pad: Box                    # where the crop sits inside its square canvas
    # A reference hint (`reference_region.with_reference_region`): the part of the reference to copy from, on
    # the padded reference square at working size, and the CLIP input cut around it; None: the whole reference.
    reference_region: np.ndarray | None = None  # (R, R) bool
    clip_square: np.ndarray | None = None

    @property
    def clip_input(self) -> np.ndarray:
        """The square image CLIP encodes: the hint's square crop, or the padded reference."""
        return self.reference_square if self.clip_square is None else self.clip_square


def prepare_edit(source: np.ndarray, reference: np.ndarray, mask: np.ndarray, resolution: int,
                 crop: bool) -> PreparedEdit:
    """Crop (optionally), pad to square and resize to the working resolution.

    The source is blacked out at its padded native size and then resized, as released: Lanczos
    spreads the black edge over the neighbouring pixels at working size, which the released model saw.
    """
    check_edit_inputs(source, reference, mask)
    crop_box = context_crop_box(mask, min_side=resolution) if crop else Box(0, 0, *source.shape[:2])
    source_crop, mask_crop = source[crop_box.slices()], mask[crop_box.slices()]
    source_square, pad_box = pad_to_square(source_crop, WHITE)
    mask_square, _ = pad_to_square(mask_crop, False)
    reference_square, _ = pad_to_square(reference, WHITE)
    return PreparedEdit(
        masked_source=resize_image(black_out_mask(source_square, mask_square), resolution),
        reference=resize_image(reference_square, resolution),
        reference_square=reference_square, source_square=source_square,
        mask=resize_mask(mask_square, resolution), crop=crop_box, pad=pad_box)


def finish_edit(source: np.ndarray, mask: np.ndarray, prepared: PreparedEdit, prediction: np.ndarray,
                paste_back_kernel: str = "released") -> np.ndarray:
    """Bring a working-resolution prediction back to the full source and blend it in."""
    side = prepared.source_square.shape[0]
    prediction_crop = unpad(resize_prediction(prediction, side, paste_back_kernel), prepared.pad)
    rows, cols = prepared.crop.slices()
    result = source.copy()
    result[rows, cols] = paste_back(source[rows, cols], prediction_crop, mask[rows, cols], paste_back_kernel)
    return result
