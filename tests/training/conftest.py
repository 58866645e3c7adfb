"""Training fixtures."""

from __future__ import annotations

import pytest
from PIL import Image
from skimage import data
from training_helpers import PhotoPairs

from mimicbrush_cli.data import PrepareConfig, prepare
from mimicbrush_cli.data.camera_motion import write_camera_motion_videos


@pytest.fixture(scope="session")
def photo_pairs():
    return PhotoPairs()


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """Prepared training data (`mimicbrush prepare`'s folder) from camera-motion videos of real photos."""
    root = tmp_path_factory.mktemp("stages")
    for name in ("chelsea", "coffee", "astronaut"):
        Image.fromarray(getattr(data, name)()).save(root / f"{name}.png")
    videos = write_camera_motion_videos(sorted(root.glob("*.png")), root / "videos", num_frames=24, size=(96, 72))
    assert len(videos) == 3
    config = PrepareConfig(sample_fps=6.0, min_gap_s=0.5, max_gap_s=4.0, ssim_min=0.2, ssim_max=0.95,
                           frame_max_side=96, inputs_per_shard=4)
    summary = prepare(root / "prepared", config, videos=root / "videos")
    assert summary.video_pairs > 0
    return root / "prepared"
