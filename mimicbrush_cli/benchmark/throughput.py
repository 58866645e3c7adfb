"""Data and training throughput for `mimicbrush benchmark speed`, measured on inputs made on the spot.

- `prepare`: camera-motion videos of scikit-image's photos (real photos, virtual camera; see
  `data/camera_motion.py`) go through `prepare` (one worker), each run followed by plain PyAV decoding
  of the same videos, repeated, so that load that comes and goes touches both alike. Two ratios: wall
  time (the worker's decode threads and its read-ahead thread use every core they find) and CPU time
  (frames per CPU-second: what one core per worker would give). Two workloads: the stock-video recipe
  on HD clips (what a corpus run does: decoding dominates) and dense sampling of small clips (a third
  of the decoded frames are stored, so JPEG encoding costs as much as decoding: the worst case).
- training: the tiny model trains a few steps on the pairs just prepared (`mimicbrush train`'s loop).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..data.prepare import PrepareConfig

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


class Spread(NamedTuple):
    """Median and range of one figure over the repeats."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values) -> Spread:
        return cls(float(np.median(values)), float(np.min(values)), float(np.max(values)))

    def format(self, digits: int = 0) -> str:
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}–{self.high:,.{digits}f})"


@dataclass(frozen=True)
class Workload:
    """Videos to make (one per photo of PHOTOS) and the recipe `prepare` runs on them."""

    name: str
    size: tuple[int, int]               # (width, height)
    fps: int
    frames_per_video: int
    config: PrepareConfig = field(default_factory=PrepareConfig)


WORKLOADS = (
    Workload("stock-video recipe (data_recipes/stock_video.yaml: 2 candidates/s, ≤ 8 pairs), 1280×720 at 24 fps, "
             "10 s", (1280, 720), 24, 240),
    Workload("dense sampling (6 candidates/s, every other frame), 320×240 at 12 fps, 4 s", (320, 240), 12, 48,
             PrepareConfig(sample_fps=6.0, min_gap_s=0.5, max_gap_s=4.0, ssim_min=0.3, ssim_max=0.9,
                           frame_max_side=384)),
)


@dataclass(frozen=True)
class PrepareFigures:
    workload: str
    videos: int
    frames: int                         # decoded per prepare run (and per plain-decode run)
    prepare_frames_per_s: Spread        # frames decoded per second of the whole prepare run
    prepare_pairs_per_s: Spread
    raw_decode_frames_per_s: Spread     # plain PyAV decoding of the same videos
    wall_ratio: Spread                  # prepare frames/s over plain decode frames/s, per repeat
    cpu_ratio: Spread                   # the same in frames per CPU-second of the process (all its threads)
    stage_seconds: dict[str, float]     # decode / ssim / write inside prepare (medians; decode overlaps the rest)


@dataclass(frozen=True)
class Throughput:
    prepare: list[PrepareFigures]
    repeats: int
    load_average: tuple[float, float]   # 1-minute load average before and after the prepare runs
    cores: int
    training_steps_per_s: float
    training_batch_size: int
    training_resolution: int

    def to_markdown(self) -> str:
        lines = [
            f"`prepare` (1 worker) and plain PyAV decode of the same camera-motion videos, run in turn "
            f"{self.repeats} times: median (min–max); load average {self.load_average[0]:.2f} → "
            f"{self.load_average[1]:.2f} on {self.cores} cores.", ""]
        for figures in self.prepare:
            stages = " / ".join(f"{seconds:.3f}" for seconds in figures.stage_seconds.values())
            lines += [
                f"**{figures.workload}**: {figures.videos} videos, {figures.frames} frames", "",
                "| what | figure |", "|---|---|",
                f"| `prepare` | {figures.prepare_frames_per_s.format()} frames/s, "
                f"{figures.prepare_pairs_per_s.format(1)} pairs/s |",
                f"| plain PyAV decode, same videos | {figures.raw_decode_frames_per_s.format()} frames/s |",
                f"| `prepare` / plain decode, wall time | **{figures.wall_ratio.format(2)}** |",
                f"| `prepare` / plain decode, frames per CPU-second (one core per worker) | "
                f"**{figures.cpu_ratio.format(2)}** |",
                f"| inside `prepare`: {' / '.join(figures.stage_seconds)} (s, busy; decode runs beside the rest) "
                f"| {stages} |", ""]
        lines.append(f"Training, tiny model, {self.training_resolution} px, batch {self.training_batch_size}: "
                     f"{self.training_steps_per_s:.2f} steps/s.")
        return "\n".join(lines)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process, FFmpeg's too
    return usage.ru_utime + usage.ru_stime


def measure_throughput(workdir: Path | None = None, workloads: tuple[Workload, ...] = WORKLOADS,
                       training_steps: int = 10, training_batch_size: int = 4, repeats: int = 5) -> Throughput:
    from skimage import data

    from ..data import TrainingDataConfig, prepare
    from ..data.camera_motion import write_camera_motion_videos
    from ..data.video import decode_throughput
    from ..training import load_train_config, train

    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        root = Path(folder)
        photos = []
        for name in PHOTOS:
            path = root / "photos" / f"{name}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(getattr(data, name)()[..., :3]).save(path)
            photos.append(path)
        videos = [write_camera_motion_videos(photos, root / f"videos-{number}", num_frames=workload.frames_per_video,
                                             fps=workload.fps, size=workload.size)
                  for number, workload in enumerate(workloads)]
        for number, workload in enumerate(workloads):  # first calls load codecs and libraries
            prepare(root / f"warm-up-{number}", workload.config, videos=root / f"videos-{number}")
        load_before = os.getloadavg()[0]
        runs: list[list[dict[str, float]]] = [[] for _ in workloads]
        frames = [0] * len(workloads)
        for index in range(repeats):
            for number, workload in enumerate(workloads):  # interleaved: load that comes and goes touches all
                cpu_start = _cpu_seconds()
                summary = prepare(root / f"prepared-{number}-{index}", workload.config,
                                  videos=root / f"videos-{number}")
                cpu_prepare = _cpu_seconds() - cpu_start
                wall_start, cpu_start = time.perf_counter(), _cpu_seconds()
                raw_frames = sum(decode_throughput(video)[0] for video in videos[number])
                wall_raw, cpu_raw = time.perf_counter() - wall_start, _cpu_seconds() - cpu_start
                frames[number] = summary.run_decoded_frames
                runs[number].append({
                    "prepare": summary.frames_per_s, "pairs": summary.pairs_per_s, "raw": raw_frames / wall_raw,
                    "wall_ratio": summary.frames_per_s / (raw_frames / wall_raw),
                    "cpu_ratio": (summary.run_decoded_frames / cpu_prepare) / (raw_frames / cpu_raw),
                    **{f"stage {name}": seconds for name, seconds in summary.run_stage_s.items()}})
        load_after = os.getloadavg()[0]
        config = load_train_config({
            "model": {"init": "random", "size": "tiny"}, "steps": training_steps, "batch_size": training_batch_size,
            "checkpoint_every": 0, "validation": {"every": 0}, "output_dir": str(root / "train")})
        data_config = TrainingDataConfig(shard_dirs=(root / f"prepared-{len(workloads) - 1}-0",), resolution=64)
        config = replace(config, data=data_config)
        result = train(config, show_progress=False)

    def spread(number: int, key: str) -> Spread:
        return Spread.of([run.get(key, 0.0) for run in runs[number]])

    figures = [PrepareFigures(
        workload=workload.name, videos=len(videos[number]), frames=frames[number],
        prepare_frames_per_s=spread(number, "prepare"), prepare_pairs_per_s=spread(number, "pairs"),
        raw_decode_frames_per_s=spread(number, "raw"), wall_ratio=spread(number, "wall_ratio"),
        cpu_ratio=spread(number, "cpu_ratio"),
        stage_seconds={name: spread(number, f"stage {name}").median for name in ("decode", "ssim", "write")})
        for number, workload in enumerate(workloads)]
    return Throughput(prepare=figures, repeats=repeats, load_average=(load_before, load_after),
                      cores=os.cpu_count() or 1, training_steps_per_s=result.steps_per_second,
                      training_batch_size=training_batch_size, training_resolution=64)
