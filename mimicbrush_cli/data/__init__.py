"""Training data: videos -> frame pairs (SSIM), SA-1B -> object masks, tar shards, augmentation, masking, Dataset.

Where things live: video.py decodes, ssim.py scores, pairs.py selects, sam.py reads SA-1B masks,
shards.py is the on-disk layout, prepare.py runs it all (`mimicbrush prepare`) in worker processes
that stop with it (workers.py), augment.py and masking.py are the training-time transforms,
dataset.py is the torch Dataset.
"""

from .augment import AugmentationConfig, build_augmentation
from .dataset import MimicBrushTrainingSet, TrainingDataConfig, iter_video_pairs
from .masking import PAPER_MASKING, MaskingConfig, grid_mask
from .prepare import PrepareConfig, PrepareSummary, SamConfig, prepare

__all__ = [
    "AugmentationConfig", "MaskingConfig", "MimicBrushTrainingSet", "PAPER_MASKING", "PrepareConfig",
    "PrepareSummary", "SamConfig", "TrainingDataConfig", "build_augmentation", "grid_mask", "iter_video_pairs",
    "prepare",
]
