"""Write photos as an SA-1B-style folder, for an offline SAM-like set.

The object masks are stand-ins for SAM's: regions of a Felzenszwalb over-segmentation, which follow
real object and texture boundaries of the photo. By default the photos are scikit-image's bundled ones.
Usage: python -m mimicbrush_cli.data.offline_photos DIR [PHOTO_FILE_OR_DIR ...]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .sam import rle_encode

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "retina", "immunohistochemistry", "motorcycle_left")


def _skimage_photos() -> list[np.ndarray]:
    from skimage import data

    photos = []
    for name in PHOTOS:
        try:
            photos.append(getattr(data, name)())
        except Exception:  # noqa: BLE001 - a photo needing a download (pooch) is simply left out offline
            continue
    return photos


def write_offline_sa1b(folder: Path, min_area: float = 0.02, max_side: int = 512,
                       photos: Sequence[np.ndarray] | None = None) -> list[Path]:
    """`photos` (RGB uint8; default: scikit-image's) as `sa_<n>.jpg` + `sa_<n>.json` in `folder`."""
    import cv2
    from skimage.segmentation import felzenszwalb

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number, image in enumerate(_skimage_photos() if photos is None else photos, start=1):
        image = np.ascontiguousarray(image[..., :3])
        scale = max_side / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        segments = felzenszwalb(image, scale=400, sigma=0.8, min_size=int(min_area * image.shape[0] * image.shape[1]))
        annotations = []
        for label in np.unique(segments):
            mask = segments == label
            annotations.append({"id": int(label), "segmentation": rle_encode(mask), "area": int(mask.sum()),
                                "predicted_iou": 1.0, "stability_score": 1.0})
        path = folder / f"sa_{number}.jpg"
        Image.fromarray(image).save(path, quality=95)
        record = {"image": {"image_id": number, "height": image.shape[0], "width": image.shape[1],
                            "file_name": path.name}, "annotations": annotations}
        path.with_suffix(".json").write_text(json.dumps(record))
        written.append(path)
    return written


if __name__ == "__main__":
    from ..imaging import load_image
    from .camera_motion import find_photos

    given = [load_image(path) for path in find_photos([Path(arg) for arg in sys.argv[2:]])] if len(sys.argv) > 2 else None
    for written_path in write_offline_sa1b(Path(sys.argv[1] if len(sys.argv) > 1 else "skimage_sa1b"), photos=given):
        print(written_path)
