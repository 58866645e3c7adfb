"""Strong augmentation (REFERENCE.md §5): colour jitter, rotation, resize/crop, flip, perspective.

Source and reference are augmented independently, so the model must find correspondences across
changes of colour, pose and view instead of copying pixels at the same place. Each call is seeded,
so a sample is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentationConfig:
    enabled: bool = True
    strength: float = 1.0           # scales every range below; 0 leaves only the crop to size
    rotation_deg: float = 20.0
    perspective: float = 0.08       # max corner displacement, as a fraction of the side
    perspective_p: float = 0.5
    crop_scale_min: float = 0.4     # RandomResizedCrop area fraction
    color_jitter: float = 0.4       # brightness / contrast / saturation range
    hue: float = 0.08
    flip_p: float = 0.5


def build_augmentation(resolution: int, config: AugmentationConfig = AugmentationConfig()) -> A.Compose:
    """An albumentations pipeline to `resolution` squared; masks follow the geometry, nearest-neighbour."""
    if not config.enabled:
        return A.Compose([A.SmallestMaxSize(max_size=resolution, interpolation=cv2.INTER_AREA),
                          A.CenterCrop(resolution, resolution)])
    strength = config.strength
    reflect = cv2.BORDER_REFLECT_101  # no black wedges for the model to learn as content
    return A.Compose([
        A.Affine(rotate=(-config.rotation_deg * strength, config.rotation_deg * strength), border_mode=reflect, p=0.7),
        A.Perspective(scale=(0.0, max(config.perspective * strength, 1e-3)), border_mode=reflect,
                      p=config.perspective_p if strength > 0 else 0.0),
        A.RandomResizedCrop(size=(resolution, resolution),
                            scale=(1 - (1 - config.crop_scale_min) * min(strength, 1.0), 1.0),
                            area_for_downscale="image"),
        A.HorizontalFlip(p=config.flip_p),
        A.ColorJitter(brightness=config.color_jitter * strength, contrast=config.color_jitter * strength,
                      saturation=config.color_jitter * strength, hue=min(config.hue * strength, 0.5),
                      p=0.8 if strength > 0 else 0.0),
    ])


def augment(transform: A.Compose, image: np.ndarray, seed: int,
            mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply `transform` with a fixed seed; uint8 (H, W, 3) and optional bool (H, W) mask in, same out."""
    transform.set_random_seed(seed)
    if mask is None:
        return transform(image=image)["image"], None
    result = transform(image=image, mask=mask.astype(np.uint8))
    return result["image"], result["mask"].astype(bool)
