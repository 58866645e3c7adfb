"""Training test helpers: a small in-memory dataset of real photos and tiny-model configs."""

from __future__ import annotations

import numpy as np
import torch
from skimage import data
from torch.utils.data import Dataset

from mimicbrush_cli.training.config import load_train_config


class PhotoPairs(Dataset):
    """Source/reference crops of scikit-image photos with random box masks, deterministic per
    (seed, epoch, index) like the real training set."""

    def __init__(self, size: int = 64, length: int = 8, seed: int = 0) -> None:
        self.photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
        self.size, self.length, self.seed, self.epoch = size, length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _crop(self, photo: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        side = int(rng.integers(min(photo.shape[:2]) // 2, min(photo.shape[:2])))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = torch.from_numpy(photo[top:top + side, left:left + side]).permute(2, 0, 1).float()[None]
        crop = torch.nn.functional.interpolate(crop, size=(self.size, self.size), mode="bilinear", antialias=True)
        return (crop[0] / 127.5 - 1.0).clamp(-1.0, 1.0)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        photo = self.photos[index % len(self.photos)]
        source, reference = self._crop(photo, rng), self._crop(photo, rng)
        mask = torch.zeros(1, self.size, self.size)
        height, width = (int(v) for v in rng.integers(self.size // 4, self.size // 2, size=2))
        top, left = (int(v) for v in rng.integers(0, self.size - max(height, width), size=2))
        mask[:, top:top + height, left:left + width] = 1.0
        return {"source": source, "reference": reference, "mask": mask, "depth_source": source.clone(),
                "kind": "video"}


def tiny_config(output_dir, **overrides):
    """A tiny-model run on CPU: no validation, no logging noise."""
    base = {"model": {"init": "random", "size": "tiny"}, "data": {"resolution": 64}, "steps": 4,
            "batch_size": 2, "optimizer": {"lr": 1e-3}, "validation": {"every": 0},
            "checkpoint_every": 0, "output_dir": str(output_dir)}
    for key, value in overrides.items():
        node = base
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return load_train_config(base)
