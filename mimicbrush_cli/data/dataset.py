"""The training set: prepared shards -> (source, reference, mask, depth source) tensors.

Each item is a video pair (two frames of one video, REFERENCE.md §5) with probability `video_ratio`,
else a SAM pseudo-pair (one image under two independent strong augmentations, masked by one of its
object masks). Every random choice of an item comes from a generator seeded by (seed, epoch, index),
so a training run resumed at any step sees exactly the data it would have seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import MimicBrushError
from .augment import AugmentationConfig, augment, build_augmentation
from .masking import MaskingConfig, box_mask, grid_mask, is_partial
from .sam import rle_decode
from .shards import decode_image, iter_samples, read_member


@dataclass(frozen=True)
class TrainingDataConfig:
    shard_dirs: tuple[Path, ...] = ()  # output folders of `mimicbrush prepare`
    resolution: int = 512
    video_ratio: float = 0.7           # paper: 70% video pairs, 30% SAM pseudo-pairs
    samples_per_epoch: int = 0         # 0: as many as there are prepared samples
    swap_pair_order: bool = True       # either frame of a video pair may be the one to repaint
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    seed: int = 0


def to_model_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


class MimicBrushTrainingSet(Dataset):
    """Items: dict(source, reference, depth_source: float32 (3, S, S) in [-1, 1]; mask: float32 (1, S, S),
    1 = region to generate; kind: "video" | "sam"; key: the sample's key in the shards)."""

    def __init__(self, config: TrainingDataConfig) -> None:
        if not config.shard_dirs:
            raise MimicBrushError("no prepared data: give at least one shard folder")
        if not 0 <= config.video_ratio <= 1:
            raise MimicBrushError("video_ratio must be in [0, 1]")
        self.config = config
        self.video: list[tuple[Path, dict[str, Any]]] = []
        self.sam: list[tuple[Path, dict[str, Any]]] = []
        for folder in config.shard_dirs:
            if not Path(folder).is_dir():
                raise MimicBrushError(f"prepared data folder not found: {folder}")
            for shard, sample in iter_samples(Path(folder)):
                (self.video if sample["kind"] == "video" else self.sam).append((shard, sample))
        if not self.video and not self.sam:
            raise MimicBrushError(f"no prepared samples in {', '.join(map(str, config.shard_dirs))}")
        self.transform = build_augmentation(config.resolution, config.augmentation)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.config.samples_per_epoch or len(self.video) + len(self.sam)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        use_video = bool(self.video) and (not self.sam or rng.random() < self.config.video_ratio)
        pool = self.video if use_video else self.sam
        shard, sample = pool[int(rng.integers(len(pool)))]
        seeds = [int(seed) for seed in rng.integers(0, 2**31 - 1, size=2)]
        if use_video:
            source, reference, mask = self._video_item(shard, sample, rng, seeds)
        else:
            source, reference, mask = self._sam_item(shard, sample, rng, seeds)
        source_tensor = to_model_tensor(source)
        return {
            "source": source_tensor,
            "reference": to_model_tensor(reference),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "depth_source": source_tensor.clone(),
            "kind": "video" if use_video else "sam",
            "key": sample["key"],
        }

    def _video_item(self, shard: Path, sample: dict[str, Any], rng: np.random.Generator, seeds: list[int]):
        first = decode_image(read_member(shard, sample["members"]["source.jpg"]))
        second = decode_image(read_member(shard, sample["members"]["reference.jpg"]))
        if self.config.swap_pair_order and rng.random() < 0.5:
            first, second = second, first
        source, _ = augment(self.transform, first, seeds[0])
        reference, _ = augment(self.transform, second, seeds[1])
        mask = grid_mask(source, rng, self.config.masking)
        # Drawn only when boxes are on, so configs without them replay the draws they always had.
        if self.config.masking.box_p and rng.random() < self.config.masking.box_p:
            mask = box_mask(mask.shape, rng, self.config.masking)
        return source, reference, mask

    def _sam_item(self, shard: Path, sample: dict[str, Any], rng: np.random.Generator, seeds: list[int]):
        image = decode_image(read_member(shard, sample["members"]["image.jpg"]))
        masks = json.loads(read_member(shard, sample["members"]["json"]))["masks"]
        object_mask = rle_decode(masks[int(rng.integers(len(masks)))])
        source, mask = augment(self.transform, image, seeds[0], object_mask)
        reference, _ = augment(self.transform, image, seeds[1])
        if not is_partial(mask):  # the object was cropped out (or fills the crop): fall back to the grid
            mask = grid_mask(source, rng, self.config.masking)
        return source, reference, mask


def iter_video_pairs(shard_dirs: list[Path] | tuple[Path, ...]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(pair key, source, reference) of every prepared video pair, un-augmented, uint8 (H, W, 3) RGB, key order."""
    for folder in shard_dirs:
        for shard, sample in iter_samples(Path(folder), kind="video"):
            yield (sample["key"], decode_image(read_member(shard, sample["members"]["source.jpg"])),
                   decode_image(read_member(shard, sample["members"]["reference.jpg"])))
