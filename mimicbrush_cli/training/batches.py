"""Which items each process trains on, and where a resumed run picks up.

The order is a pure function of (seed, epoch): epoch e visits `randperm(N)` seeded by (seed, e),
cut into global micro-batches of `batch_size × world_size` items; process r takes the r-th slice.
A run's data position is therefore just (epoch, micro-batch within the epoch), and resuming skips
straight to it without loading the skipped items.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import MimicBrushError


@dataclass
class DataPosition:
    epoch: int = 0
    micro_batch: int = 0  # micro-batches of this epoch already consumed

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "micro_batch": self.micro_batch}


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this process's index lists for one epoch, starting at a given micro-batch."""

    def __init__(self, dataset_size: int, batch_size: int, seed: int, world_size: int = 1, rank: int = 0) -> None:
        self.dataset_size, self.batch_size, self.seed = dataset_size, batch_size, seed
        self.world_size, self.rank = world_size, rank
        if self.micro_batches_per_epoch == 0:
            raise MimicBrushError(f"the training data has {dataset_size} items, fewer than one batch "
                                  f"({batch_size} per process × {world_size} processes)")
        self.epoch, self.start = 0, 0

    @property
    def micro_batches_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.micro_batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list[int]]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        order = torch.randperm(self.dataset_size, generator=torch.Generator().manual_seed(seed)).tolist()
        global_batch = self.batch_size * self.world_size
        for index in range(self.start, self.micro_batches_per_epoch):
            first = index * global_batch + self.rank * self.batch_size
            yield order[first:first + self.batch_size]


class MicroBatchStream:
    """Endless micro-batches from a position; tells the dataset its epoch (`set_epoch`) when it has one."""

    def __init__(self, dataset: Dataset, sampler: ResumableBatchSampler, position: DataPosition,
                 num_workers: int = 0) -> None:
        self.dataset, self.sampler, self.position, self.num_workers = dataset, sampler, position, num_workers
        self._iterator: Iterator | None = None

    def _start_epoch(self) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.position.epoch)
        self.sampler.set_position(self.position.epoch, self.position.micro_batch)
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers)
        self._iterator = iter(loader)

    def next(self) -> dict:
        while True:
            if self._iterator is None:
                self._start_epoch()
            try:
                batch = next(self._iterator)
            except StopIteration:
                self.position = DataPosition(self.position.epoch + 1, 0)
                self._iterator = None
                continue
            self.position = DataPosition(self.position.epoch, self.position.micro_batch + 1)
            return batch


def open_training_data(config) -> Dataset:
    """The prepared training set a `TrainingDataConfig` names (shards, mix, augmentation, masking)."""
    from ..data.dataset import MimicBrushTrainingSet

    return MimicBrushTrainingSet(config)
