"""SA-1B-style object masks: read `sa_*.jpg` + `sa_*.json`, decode RLE, keep the useful masks.

A SAM sample becomes a pseudo-pair at training time (one image, two strong augmentations) whose
source is masked by one of its object masks. Masks that are tiny (nothing to learn), nearly the
whole image (nothing left to imitate from), or that SAM itself was unsure of are dropped here, once.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from .video import SkippedInput


@dataclass(frozen=True)
class SamSample:
    """image: uint8 (H, W, 3) RGB; masks: bool (H, W) each, at the image's size; rejects: per-mask reasons."""

    image: np.ndarray
    masks: list[np.ndarray]
    rejects: Counter = field(default_factory=Counter)


def find_sam_images(root: Path) -> list[Path]:
    """Every `sa_*.jpg` under `root` (recursively), sorted."""
    return sorted(path for path in root.rglob("sa_*.jpg") if path.is_file())


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """bool (H, W) -> COCO compressed RLE with `counts` as a str (JSON-serialisable)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed str/bytes counts, or uncompressed list counts) -> bool (H, W)."""
    height, width = (int(size) for size in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (bytes, str)):
        counts = counts.encode("ascii") if isinstance(counts, str) else counts
        runs = rle_counts_from_string(counts)
    else:
        runs = [int(run) for run in counts]
    # pycocotools writes runs into an H*W buffer unchecked: validate before handing it the counts.
    if any(run < 0 for run in runs) or sum(runs) != height * width:
        raise ValueError(f"RLE covers {sum(runs)} pixels, its size says {height * width}")
    if not isinstance(counts, bytes):
        counts = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)["counts"]
    return mask_utils.decode({"size": [height, width], "counts": counts}).astype(bool)


def rle_counts_from_string(counts: bytes) -> list[int]:
    """The run lengths of a COCO compressed RLE string (pycocotools' rleFrString, in Python)."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError("compressed RLE ends inside a run")
            char = counts[position] - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def read_sam_sample(image_path: Path, *, min_area: float, max_area: float, min_predicted_iou: float,
                    min_stability_score: float, max_masks: int, max_side: int) -> SamSample:
    """Read one SA-1B image and its JSON; keep masks passing the filters, largest first, at most `max_masks`.

    Images are downscaled so their longer side is at most `max_side` (0: keep) and masks with them.
    Raises `SkippedInput` when the image or its JSON is unusable or no mask survives.
    """
    json_path = image_path.with_suffix(".json")
    if not json_path.is_file():
        raise SkippedInput("missing-json", json_path.name)
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
        annotations = record["annotations"]
        if not isinstance(annotations, list):
            raise TypeError("annotations is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise SkippedInput("malformed-json", str(error).splitlines()[0][:200] if str(error) else "") from None
    try:
        with Image.open(image_path) as opened:
            image = np.asarray(opened.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise SkippedInput("unreadable-image", str(error)[:200]) from None
    height, width = image.shape[:2]
    rejects: Counter = Counter()
    kept: list[tuple[int, np.ndarray]] = []
    for annotation in annotations:
        reason, mask = _check_annotation(annotation, height, width, min_area, max_area, min_predicted_iou,
                                         min_stability_score)
        if mask is None:
            rejects[reason] += 1
        else:
            kept.append((int(mask.sum()), mask))
    if not kept:
        raise SkippedInput("no-usable-masks", ", ".join(f"{k}={v}" for k, v in sorted(rejects.items())))
    kept.sort(key=lambda item: -item[0])
    if len(kept) > max_masks:
        rejects["over-mask-cap"] += len(kept) - max_masks
    masks = [mask for _, mask in kept[:max_masks]]
    scale = max_side / max(height, width) if max_side else 1.0
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        masks = [cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
                 for mask in masks]
    return SamSample(image, masks, rejects)


def _check_annotation(annotation: Any, height: int, width: int, min_area: float, max_area: float,
                      min_predicted_iou: float, min_stability_score: float) -> tuple[str, np.ndarray | None]:
    try:
        segmentation = annotation["segmentation"]
        size = [int(value) for value in segmentation["size"]]
        predicted_iou = float(annotation.get("predicted_iou", 1.0))
        stability = float(annotation.get("stability_score", 1.0))
    except (KeyError, TypeError, ValueError):
        return "malformed-annotation", None
    if size != [height, width]:
        return "rle-size-mismatch", None
    if predicted_iou < min_predicted_iou:
        return "low-predicted-iou", None
    if stability < min_stability_score:
        return "low-stability-score", None
    try:
        mask = rle_decode(segmentation)
    except (ValueError, TypeError, AttributeError, UnicodeError):
        return "malformed-rle", None
    fraction = mask.mean()
    if fraction < min_area:
        return "mask-too-small", None
    if fraction > max_area:
        return "mask-too-large", None
    return "", mask
