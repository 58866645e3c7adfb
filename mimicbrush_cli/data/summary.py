"""The SSIM histogram of a prepared set, drawn as a PNG with PIL (no plotting dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..outputs import write_bytes_atomically

HISTOGRAM_BINS = np.linspace(-1.0, 1.0, 81)  # 0.025 wide; SSIM can be negative


def histogram_image(counts: np.ndarray, width: int = 640, height: int = 320) -> np.ndarray:
    """uint8 (H, W, 3) bar chart of SSIM counts over [-1, 1], with ticks every 0.25."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 40, width - 10, 24, height - 24
    peak = max(int(np.max(counts)) if len(counts) else 0, 1)
    bar = (right - left) / len(counts)
    for index, count in enumerate(counts):
        x0 = left + index * bar
        draw.rectangle([x0, bottom - (bottom - top) * count / peak, x0 + bar - 1, bottom], fill=(70, 110, 190))
    for tick in np.linspace(-1, 1, 9):
        x = left + (tick + 1) / 2 * (right - left)
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - 10, bottom + 6), f"{tick:+.2f}", fill="black")
    draw.line([left, bottom, right, bottom], fill="black")
    draw.text((left, 4), f"SSIM of scored candidate pairs (n={int(np.sum(counts))}, max bin {peak})", fill="black")
    return np.asarray(image)


def write_histogram_png(path: Path, counts: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    Image.fromarray(histogram_image(np.asarray(counts))).save(buffer, format="PNG")
    write_bytes_atomically(path, buffer.getvalue())
