"""Write the bundled stereo example: scikit-image's Middlebury motorcycle pair and a mask.

The left view is the source, the right view (the same scene from another viewpoint, never seen in
training) is the reference, and the mask covers the fuel tank and engine. A model that imitates
the reference repaints the masked region with what the right view shows there.

    python scripts/make_stereo_example.py [OUT_DIR=examples]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

MASK_BOX = (140, 320, 370, 500)  # top, left, bottom, right in the 500 x 741 left view


def write_stereo_example(output_dir: Path) -> list[Path]:
    left, right, _disparity = data.stereo_motorcycle()
    mask = np.zeros(left.shape[:2], dtype=np.uint8)
    top, left_edge, bottom, right_edge = MASK_BOX
    mask[top:bottom, left_edge:right_edge] = 255
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [output_dir / name for name in ("motorcycle_left.png", "motorcycle_right.png", "motorcycle_mask.png")]
    for path, image in zip(paths, (left, right, mask)):
        Image.fromarray(image).save(path)
    return paths


if __name__ == "__main__":
    for path in write_stereo_example(Path(sys.argv[1] if len(sys.argv) > 1 else "examples")):
        print(path)
