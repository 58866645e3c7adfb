"""The paper's per-sample scores (REFERENCE.md §6), from a result, its sample and the loaded networks.

- inner-ID: SSIM, PSNR and LPIPS between the source-mask boxes of the result and the ground truth;
- inter-ID: DINO-I and CLIP-I between the background-removed crops of the result (source mask)
  and the reference (reference mask); CLIP-T between the whole result and the prompt.

A score whose network is not loaded (its weights are absent) is left out; `None` means that the sample
has no such score (CLIP-T without a prompt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .crops import box_crop, foreground_crop
from .metrics import cosine_score, psnr, ssim
from .samples import BenchmarkSample

if TYPE_CHECKING:
    from .backbones import MetricBackbones

INNER_METRICS = ("ssim", "psnr", "lpips")
INTER_METRICS = ("dino_i", "clip_i", "clip_t")
SPLIT_METRICS = {"inner": INNER_METRICS, "inter": INTER_METRICS}


def inner_id_scores(result: np.ndarray, sample: BenchmarkSample, backbones: MetricBackbones) -> dict[str, float]:
    if sample.ground_truth is None:
        raise ValueError("inner-ID scores need a ground truth")
    generated = box_crop(result, sample.source_mask)
    truth = box_crop(sample.ground_truth, sample.source_mask)
    scores = {"ssim": ssim(generated, truth), "psnr": psnr(generated, truth)}
    if backbones.lpips is not None:
        scores["lpips"] = backbones.lpips.distance(generated, truth)
    return scores


def inter_id_scores(result: np.ndarray, sample: BenchmarkSample, backbones: MetricBackbones) -> dict[str, float | None]:
    if sample.reference_mask is None:
        raise ValueError("inter-ID scores need a reference mask")
    generated = foreground_crop(result, sample.source_mask)
    reference = foreground_crop(sample.reference, sample.reference_mask)
    scores: dict[str, float | None] = {}
    if backbones.dino is not None:
        dino = backbones.dino([generated, reference])
        scores["dino_i"] = cosine_score(dino[0], dino[1])
    if backbones.clip is not None:
        clip = backbones.clip.images([generated, reference, result])
        scores["clip_i"] = cosine_score(clip[0], clip[1])
        scores["clip_t"] = cosine_score(clip[2], backbones.clip.texts([sample.prompt])[0]) if sample.prompt else None
    return scores


def sample_scores(split: str, result: np.ndarray, sample: BenchmarkSample,
                  backbones: MetricBackbones) -> dict[str, float | None]:
    return (inner_id_scores if split == "inner" else inter_id_scores)(result, sample, backbones)
