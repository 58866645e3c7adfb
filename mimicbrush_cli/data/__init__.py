"""Training data: videos -> frame pairs (SSIM), SA-1B -> object masks, tar shards, augmentation, masking, Dataset.

Where things live: video.py decodes, ssim.py scores, pairs.py selects, sam.py reads SA-1B masks,
shards.py is the on-disk layout, prepare.py runs it all (`mimicbrush prepare`) in worker processes
that stop with it (workers.py), augment.py and masking.py are the training-time transforms,
dataset.py is the torch Dataset.
"""

from importlib import import_module

from .prepare import PrepareConfig, PrepareSummary, SamConfig, prepare

# The training-time modules load on first use, so that `prepare` and its errors start without torch.
_LAZY = {"MimicBrushTrainingSet": "dataset", "TrainingDataConfig": "dataset", "iter_video_pairs": "dataset",
         "AugmentationConfig": "augment", "build_augmentation": "augment", "PAPER_MASKING": "masking",
         "MaskingConfig": "masking", "grid_mask": "masking"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_LAZY[name]}", __name__), name)


__all__ = [
    "AugmentationConfig", "MaskingConfig", "MimicBrushTrainingSet", "PAPER_MASKING", "PrepareConfig",
    "PrepareSummary", "SamConfig", "TrainingDataConfig", "build_augmentation", "grid_mask", "iter_video_pairs",
    "prepare",
]
