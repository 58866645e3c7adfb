"""Source folders of the bundled demo model, from data on this machine only, split by content.

- training: camera-motion videos of Debian's opencv-doc photos, the real opencv-doc clips vtest.avi and
  Megamind.avi, and the same photos as an SA-1B-style folder (stand-in object masks);
- held out: camera-motion videos of scikit-image's photos and the real clip tree.avi. None of this
  content is seen in training, so `benchmark recon` on it measures imitation, not memory;
- validation: camera-motion videos of scikit-image's other photos (textures, cells, the moon, a colour
  wheel, a logo), neither trained on nor held out: inference settings are chosen on it, so the held-out
  figures are not the figures they were picked by.

    python -m mimicbrush_cli.data.demo_sources OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from ..errors import MimicBrushError
from ..imaging import load_image
from .camera_motion import find_photos, write_camera_motion_videos
from .offline_photos import write_offline_sa1b

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
TRAIN_CLIPS = ("vtest.avi", "Megamind.avi")  # Megamind_bugy.avi is a damaged copy of Megamind: not used
HELD_OUT_CLIPS = ("tree.avi",)
HELD_OUT_SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                    "retina", "camera", "coins", "clock", "brick")
HELD_OUT_EXTRA = ("stereo_motorcycle",)  # a stereo pair: its left view
VALIDATION_SKIMAGE = ("grass", "gravel", "moon", "cell", "colorwheel", "logo")


def _skimage_photos(folder: Path, names: tuple[str, ...]) -> list[Path]:
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.png"
        if not path.exists():
            image = getattr(data, name)()
            image = image[0] if isinstance(image, tuple) else image
            image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
            Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def write_demo_sources(output_dir: Path, opencv_data: Path = OPENCV_DATA, seed: int = 0) -> dict[str, Path]:
    if not all((opencv_data / clip).is_file() for clip in TRAIN_CLIPS + HELD_OUT_CLIPS):
        raise MimicBrushError(f"opencv-doc sample data not found in {opencv_data} (apt-get install opencv-doc)")
    folders = {name: Path(output_dir) / name for name in ("train_videos", "train_sam", "heldout_videos", "heldout_photos",
                                                          "val_videos", "val_photos")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    train_photos = [path for path in find_photos([opencv_data]) if min(load_image(path).shape[:2]) >= 200]
    write_camera_motion_videos(train_photos, folders["train_videos"], seed=seed)
    for clip in TRAIN_CLIPS:
        shutil.copyfile(opencv_data / clip, folders["train_videos"] / clip)
    if not any(folders["train_sam"].glob("sa_*.json")):
        write_offline_sa1b(folders["train_sam"], photos=[load_image(path) for path in train_photos])
    write_camera_motion_videos(_skimage_photos(folders["heldout_photos"], HELD_OUT_SKIMAGE + HELD_OUT_EXTRA),
                               folders["heldout_videos"], seed=seed)
    for clip in HELD_OUT_CLIPS:
        shutil.copyfile(opencv_data / clip, folders["heldout_videos"] / clip)
    write_camera_motion_videos(_skimage_photos(folders["val_photos"], VALIDATION_SKIMAGE), folders["val_videos"],
                               seed=seed)
    return folders


if __name__ == "__main__":
    for name, folder in write_demo_sources(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/sources")).items():
        print(f"{name}: {folder}")
