"""The demo model's splits: validation content is neither trained on nor held out, and every photo of it
becomes a video (a photo under the camera-motion size limit would silently drop out of the split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimicbrush_cli.data import demo_sources
from mimicbrush_cli.data.camera_motion import find_photos, write_camera_motion_videos
from mimicbrush_cli.data.demo_sources import HELD_OUT_EXTRA, HELD_OUT_SKIMAGE, OPENCV_DATA, VALIDATION_SKIMAGE
from mimicbrush_cli.imaging import load_image


def test_validation_photos_are_their_own_split_and_each_makes_a_video(tmp_path):
    assert not set(VALIDATION_SKIMAGE) & set(HELD_OUT_SKIMAGE + HELD_OUT_EXTRA)
    photos = demo_sources._skimage_photos(tmp_path / "photos", VALIDATION_SKIMAGE)
    assert [path.stem for path in photos] == list(VALIDATION_SKIMAGE)
    validation = [load_image(path) for path in photos]
    held_out = [load_image(path) for path in demo_sources._skimage_photos(tmp_path / "held", HELD_OUT_SKIMAGE)]
    # opencv-doc (the training photos) where installed: scripts/train_demo_model.sh installs it to build the splits
    training = [load_image(path) for path in find_photos([OPENCV_DATA])] if OPENCV_DATA.is_dir() else []
    for image in validation:  # no photo of another split, whatever its name
        assert not any(image.shape == other.shape and np.array_equal(image, other) for other in held_out + training)
    videos = write_camera_motion_videos(photos, tmp_path / "videos", num_frames=4)
    assert [path.stem for path in videos] == list(VALIDATION_SKIMAGE)
