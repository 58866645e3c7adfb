"""Write scikit-image's bundled photos as an SA-1B-style folder, for an offline SAM-like set.

The object masks are stand-ins for SAM's: regions of a Felzenszwalb over-segmentation, which follow
real object and texture boundaries of the photo. Usage: python -m mimicbrush_cli.data.offline_photos DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .sam import rle_encode

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "retina", "immunohistochemistry", "motorcycle_left")


def write_offline_sa1b(folder: Path, min_area: float = 0.02, max_side: int = 512) -> list[Path]:
    import cv2
    from skimage import data
    from skimage.segmentation import felzenszwalb

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number, name in enumerate(PHOTOS, start=1):
        try:
            image = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a photo needing a download (pooch) is simply left out offline
            continue
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
    for written_path in write_offline_sa1b(Path(sys.argv[1] if len(sys.argv) > 1 else "skimage_sa1b")):
        print(written_path)
