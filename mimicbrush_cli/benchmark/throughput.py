"""Data and training throughput for `mimicbrush benchmark speed`, measured on inputs made on the spot.

- `prepare`: camera-motion videos of scikit-image's photos (real photos, virtual camera; see
  `data/camera_motion.py`) go through `prepare` with plain PyAV decoding of the same videos timed
  alongside, so the cost of SSIM scoring and writing is seen against the decode itself.
- training: the tiny model trains a few steps on the pairs just prepared (`mimicbrush train`'s loop).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


@dataclass(frozen=True)
class Throughput:
    videos: int
    prepare_frames_per_s: float       # frames decoded per second of the whole prepare run
    prepare_pairs_per_s: float
    raw_decode_frames_per_s: float    # plain PyAV decoding of the same videos
    stage_seconds: dict[str, float]   # decode / ssim / write inside prepare
    training_steps_per_s: float
    training_batch_size: int
    training_resolution: int

    def to_markdown(self) -> str:
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.stage_seconds.items())
        return "\n".join([
            "| what | figure |", "|---|---|",
            f"| `prepare`, {self.videos} camera-motion videos | {self.prepare_frames_per_s:.0f} frames/s, "
            f"{self.prepare_pairs_per_s:.1f} pairs/s ({stages}) |",
            f"| plain PyAV decode, same videos | {self.raw_decode_frames_per_s:.0f} frames/s |",
            f"| training, tiny model, {self.training_resolution} px, batch {self.training_batch_size} | "
            f"{self.training_steps_per_s:.2f} steps/s |"])


def measure_throughput(workdir: Path | None = None, frames_per_video: int = 48, training_steps: int = 10,
                       training_batch_size: int = 4) -> Throughput:
    from skimage import data

    from ..data import PrepareConfig, TrainingDataConfig, prepare
    from ..data.camera_motion import write_camera_motion_videos
    from ..training import load_train_config, train

    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        root = Path(folder)
        photos = []
        for name in PHOTOS:
            path = root / "photos" / f"{name}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(getattr(data, name)()[..., :3]).save(path)
            photos.append(path)
        videos = write_camera_motion_videos(photos, root / "videos", num_frames=frames_per_video)
        summary = prepare(root / "prepared", PrepareConfig(sample_fps=6.0, min_gap_s=0.5, max_gap_s=4.0,
                                                           ssim_min=0.3, ssim_max=0.9, frame_max_side=384),
                          videos=root / "videos", measure_decode=True)
        config = load_train_config({
            "model": {"init": "random", "size": "tiny"}, "steps": training_steps, "batch_size": training_batch_size,
            "checkpoint_every": 0, "validation": {"every": 0}, "output_dir": str(root / "train")})
        data_config = TrainingDataConfig(shard_dirs=(root / "prepared",), resolution=64)
        config = replace(config, data=data_config)
        result = train(config, show_progress=False)
    return Throughput(
        videos=len(videos), prepare_frames_per_s=summary.frames_per_s, prepare_pairs_per_s=summary.pairs_per_s,
        raw_decode_frames_per_s=summary.raw_decode_fps, stage_seconds=dict(summary.run_stage_s),
        training_steps_per_s=result.steps_per_second, training_batch_size=training_batch_size, training_resolution=64)
