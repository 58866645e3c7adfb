"""Self-supervised check on held-out video pairs: does an edit imitate *its* reference?

Each pair (id, source frame, reference frame from the same video) is edited twice: with its true
reference and with a mismatched one, the reference of another pair. The masked region's PSNR and
SSIM against the untouched source are reported for both; their difference, the *reference gain*,
is positive when the model takes the masked content from the reference rather than inventing it.

Mask: a box whose sides are `box_fraction` of the image's (0.5 → a quarter of the area), centred
and then moved by up to `jitter` of the image size in each direction by a generator seeded with
(`seed`, CRC32 of the pair id): deterministic per pair, independent of order, changed by `--seed`.
Unlike the training masks (keypoint-guided grid cells) it does not depend on image content, so
every checkpoint is scored on the same pixels.

Mismatched reference: the pairs are taken in the given order and pair i borrows the reference of
pair (i + n//2) mod n, a derangement that puts the borrowed reference as far down the list as
possible (neighbouring pairs often come from the same video). All pairs are held in memory, so the
check is meant for a held-out set of a few hundred pairs.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MimicBrushError
from ..outputs import save_image_atomically, write_bytes_atomically
from .editors import Editor
from .metrics import masked_psnr, masked_ssim
from .report import grid_image, json_scores, mean_scores, recon_markdown, write_json
from .runner import ProgressCallback, SampleStore, check_result, claim_output_dir, safe_name
from .samples import fit_long_side

VideoPair = tuple[str, np.ndarray, np.ndarray]  # (pair id, source uint8 HxWx3, reference uint8 hxwx3)
RECON_METRICS = ("psnr_true", "psnr_mismatched", "psnr_gain", "ssim_true", "ssim_mismatched", "ssim_gain")


@dataclass(frozen=True)
class ReconSettings:
    seed: int = 0
    box_fraction: float = 0.5
    jitter: float = 0.15
    long_side: int = 512


@dataclass
class ReconResults:
    samples: dict[str, dict[str, Any]]
    means: dict[str, Any]
    edited: int
    resumed: int
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def recon_mask(shape: tuple[int, int], pair_id: str, seed: int = ReconSettings.seed,
               box_fraction: float = ReconSettings.box_fraction, jitter: float = ReconSettings.jitter) -> np.ndarray:
    """The bool (H, W) box mask of one pair (see the module docstring)."""
    height, width = shape
    if not 0 < box_fraction <= 1 or not 0 <= jitter <= 1:
        raise MimicBrushError("box fraction must be in (0, 1] and jitter in [0, 1]")
    rng = np.random.default_rng([seed, zlib.crc32(pair_id.encode("utf-8"))])
    box_height, box_width = max(1, round(height * box_fraction)), max(1, round(width * box_fraction))
    shift_y, shift_x = rng.uniform(-jitter, jitter, size=2)
    top = int(np.clip(round((height - box_height) / 2 + shift_y * height), 0, height - box_height))
    left = int(np.clip(round((width - box_width) / 2 + shift_x * width), 0, width - box_width))
    mask = np.zeros(shape, bool)
    mask[top:top + box_height, left:left + box_width] = True
    return mask


def mismatched_indices(count: int) -> list[int]:
    """For each of `count` pairs, the index whose reference it borrows; never its own."""
    if count < 2:
        raise MimicBrushError("the reconstruction check needs at least 2 pairs (one pair's reference is the "
                              "mismatched reference of another)")
    return [(index + count // 2) % count for index in range(count)]


def _difference(first: float, second: float) -> float | None:
    return first - second if np.isfinite(first) and np.isfinite(second) else None


def run_recon(pairs: Iterable[VideoPair], output_dir: str | Path, editor: Editor,
              settings: ReconSettings = ReconSettings(), editor_info: Mapping[str, Any] | None = None,
              progress: ProgressCallback | None = None) -> ReconResults:
    """Edit every pair with its true and a mismatched reference; write per-pair records and reports."""
    output_dir = Path(output_dir)
    pairs = [(str(pair_id), fit_long_side(source, settings.long_side, False),
              fit_long_side(reference, settings.long_side, False)) for pair_id, source, reference in pairs]
    ids = [pair_id for pair_id, _, _ in pairs]
    if len(set(ids)) != len(ids) or len({safe_name(pair_id) for pair_id in ids}) != len(ids):
        raise MimicBrushError("pair ids must be unique (also after replacing characters other than letters, digits, . _ -)")
    borrowed = mismatched_indices(len(pairs))
    claim_output_dir(output_dir, {"recon": asdict(settings), "editor": dict(editor_info or {})})
    store = SampleStore(output_dir)
    edited = 0
    for index, (pair_id, source, reference) in enumerate(pairs):
        if not store.done(pair_id):
            mask = recon_mask(source.shape[:2], pair_id, settings.seed, settings.box_fraction, settings.jitter)
            other_id, _, other_reference = pairs[borrowed[index]]
            started = time.perf_counter()
            results = [check_result(editor(source, candidate, mask, keep_shape=False, seed=settings.seed), source)
                       for candidate in (reference, other_reference)]
            seconds = time.perf_counter() - started
            scores: dict[str, float | None] = {}
            for metric, function in (("psnr", masked_psnr), ("ssim", masked_ssim)):
                true, mismatched = (function(result, source, mask) for result in results)
                scores.update({f"{metric}_true": true, f"{metric}_mismatched": mismatched,
                               f"{metric}_gain": _difference(true, mismatched)})
            save_image_atomically(results[0], store.image_path(pair_id, "result"))
            save_image_atomically(results[1], store.image_path(pair_id, "mismatched"))
            grid_path = output_dir / "grids" / f"{safe_name(pair_id)}.png"
            save_image_atomically(grid_image([
                ("source", source), ("mask", mask), ("reference", reference), ("result", results[0]),
                ("mismatched ref.", other_reference), ("result (mismatched)", results[1])]), grid_path)
            store.save(pair_id, {"id": pair_id, "mismatched_with": other_id, "scores": json_scores(scores),
                                 "edit_seconds": round(seconds, 3), "size": list(source.shape[:2]),
                                 "grid": str(grid_path.relative_to(output_dir))})
            edited += 1
        if progress is not None:
            progress(index + 1, len(pairs), pair_id)
    samples = {pair_id: store.load(pair_id) for pair_id in ids}
    means = mean_scores((record["scores"] for record in samples.values()), RECON_METRICS)
    results_path, markdown_path = output_dir / "results.json", output_dir / "results.md"
    write_json(results_path, {"task": "recon", "settings": asdict(settings), "editor": dict(editor_info or {}),
                              "count": len(samples), "means": means, "samples": samples})
    write_bytes_atomically(markdown_path, recon_markdown(means, len(samples), {**asdict(settings),
                                                                                **dict(editor_info or {})}).encode())
    return ReconResults(samples=samples, means=means, edited=edited, resumed=len(samples) - edited,
                        output_dir=output_dir, files={"results": results_path, "markdown": markdown_path})


def load_video_pairs(prepared_dirs: Iterable[str | Path]) -> Iterator[VideoPair]:
    """The video pairs of folders written by `mimicbrush prepare`, as (sample key, source, reference)."""
    from ..data.shards import decode_image, iter_samples, read_member

    for folder in map(Path, prepared_dirs):
        if not folder.is_dir():
            raise MimicBrushError(f"prepared data folder not found: {folder}")
        for tar, record in iter_samples(folder, kind="video"):
            members = record["members"]
            yield (record["key"], decode_image(read_member(tar, members["source.jpg"])),
                   decode_image(read_member(tar, members["reference.jpg"])))
