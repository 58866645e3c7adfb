"""Self-supervised check on held-out video pairs: does an edit imitate *its* reference, and does it
take from the reference more than a trivial editor could?

Each pair (id, source frame, reference frame from the same video) gets a box mask over the source. In
one run, on the same pairs and masks, these editors repaint it:

- `model`: the model under test, with the pair's own reference;
- `attention_off`: the same weights with reference attention switched off (CLIP tokens still the
  reference's): what the model does without its mechanism;
- `mean_fill`: the reference's mean colour (`baselines.py`): global colour, nothing else;
- `homography`: the reference warped into the source's frame by a SIFT + RANSAC homography fitted
  outside the mask (`baselines.py`): classical imitation, the target on camera motion;
- `model_mismatched`: the model with another pair's reference;
- `autoencoder` (optional): no edit at all, the source through the model's VAE and back: the ceiling
  that no edit by this model can pass.

Scores inside the mask against the untouched source: PSNR, SSIM, and `edge`, the correlation of gradient
magnitudes (`metrics.masked_edge_correlation`) over the mask minus the paste-back's blend band, a
structure score a flat fill cannot win (it scores 0). Per pair, per video and overall, three differences
(mean, median and how many pairs are positive): `attention_gain` = model − attention off (does the
mechanism help?), `fill_margin` = model − mean fill (more than colour?) and `reference_gain` = model −
model with a mismatched reference (does the result depend on the reference?). With `against` (the folder
of an earlier run on the same pairs and masks, e.g. the exact 50-step edit), a fourth: `against` = model −
that run's model, per pair: what another solver or preset costs, on the same pixels.

Distractor (`distractor=True`): each pair's reference is set beside its mismatched reference, both at the
reference's height, the true one on the left for even-numbered pairs and on the right for odd ones. The model
edits with this side-by-side reference, once without a hint and once as `model_hint`, with a box over the true
half as its reference hint (`reference_region.py`); attention off gets the side-by-side reference too; the
mean fill and homography take the true reference alone. `hint_gain` = model with the hint − model without.
The hint acts twice, on reference attention and on CLIP's view; `model_hint_clip` (optional: the same model at
hint strength 0, which biases no key) keeps only the second, and splits the gain in two: `hint_clip_gain` =
CLIP crop only − no hint, `hint_attention_gain` = the whole hint − CLIP crop only. There is no
`model_mismatched` row then.

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

import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MimicBrushError
from ..outputs import save_image_atomically, write_bytes_atomically
from .baselines import BLEND_MARGIN, homography_fill, mean_fill
from .editors import Editor
from .metrics import masked_edge_correlation, masked_psnr, masked_ssim
from .report import grid_image, json_scores, recon_markdown, summarise, write_json
from .runner import ProgressCallback, SampleStore, check_result, claim_output_dir, safe_name
from .samples import fit_long_side

# (pair id, source uint8 HxWx3, reference uint8 hxwx3[, video name]); without a video name, the id up to
# its last '/' or '_' names the video.
VideoPair = tuple
METRICS = ("psnr", "ssim", "edge")
EDITORS = ("model", "model_hint", "model_hint_clip", "attention_off", "mean_fill", "homography", "model_mismatched",
           "autoencoder")
OVERVIEW_VIDEOS = 6
# comparison name -> (editor, editor it is compared with)
COMPARISONS = {"attention_gain": ("model", "attention_off"), "fill_margin": ("model", "mean_fill"),
               "reference_gain": ("model", "model_mismatched"), "homography_margin": ("model", "homography"),
               "hint_gain": ("model_hint", "model"), "hint_clip_gain": ("model_hint_clip", "model"),
               "hint_attention_gain": ("model_hint", "model_hint_clip"), "hint_fill_margin": ("model_hint", "mean_fill")}
AGAINST = "against"  # model − the model of an earlier run (`load_against`)


@dataclass(frozen=True)
class ReconSettings:
    seed: int = 0
    box_fraction: float = 0.5
    jitter: float = 0.15
    long_side: int = 512


@dataclass
class ReconResults:
    samples: dict[str, dict[str, Any]]
    summary: dict[str, Any]           # see `summarise_recon`
    edited: int
    resumed: int
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def means(self) -> dict[str, float | None]:
        """Flat overall means, `<editor or comparison>.<metric>`."""
        return {f"{name}.{metric}": stats["mean"] for name, metrics in self.summary["overall"].items()
                for metric, stats in metrics.items()}


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


def distractor_reference(reference: np.ndarray, other: np.ndarray, true_on_left: bool) -> tuple[np.ndarray, np.ndarray]:
    """`reference` beside `other` (resized to its height), and the bool mask of the true half."""
    from ..imaging import resize_image

    height = reference.shape[0]
    other = resize_image(other, (height, max(1, round(other.shape[1] * height / other.shape[0]))))
    halves = [reference, other] if true_on_left else [other, reference]
    side_by_side = np.concatenate(halves, axis=1)
    region = np.zeros(side_by_side.shape[:2], bool)
    start = 0 if true_on_left else other.shape[1]
    region[:, start:start + reference.shape[1]] = True
    return side_by_side, region


def video_of(pair: Sequence[Any]) -> str:
    return str(pair[3]) if len(pair) > 3 else re.split(r"[/_](?=[^/_]*$)", str(pair[0]))[0]


def score_edit(result: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    return {"psnr": masked_psnr(result, truth, mask), "ssim": masked_ssim(result, truth, mask),
            "edge": masked_edge_correlation(result, truth, mask, margin=BLEND_MARGIN)}


def _differences(scores: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    differences: dict[str, dict[str, float | None]] = {}
    for name, (first, second) in COMPARISONS.items():
        if first in scores and second in scores:
            differences[name] = {}
            for metric in METRICS:
                a, b = scores[first].get(metric), scores[second].get(metric)
                differences[name][metric] = a - b if a is not None and b is not None else None
    return differences


def summarise_recon(samples: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Statistics (mean, median, count, positive) of every editor's scores and every comparison,
    overall and per video."""
    def table(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        names = [name for name in (*EDITORS, *COMPARISONS, AGAINST) if any(name in record["scores"] for record in records)]
        return {name: {metric: summarise([record["scores"][name].get(metric) for record in records
                                          if name in record["scores"]]) for metric in METRICS} for name in names}

    by_video: dict[str, list[Mapping[str, Any]]] = {}
    for record in samples.values():
        by_video.setdefault(record["video"], []).append(record)
    return {"overall": table(list(samples.values())),
            "videos": {video: table(records) for video, records in sorted(by_video.items())}}


@dataclass(frozen=True)
class AgainstRun:
    """The model's per-pair scores of an earlier recon run, to compare this run's model with."""

    folder: Path
    editor: dict[str, Any]
    scores: dict[str, dict[str, float | None]]  # pair id -> the model's scores


def load_against(folder: str | Path, settings: ReconSettings) -> AgainstRun:
    """The earlier run in `folder` (its results.json), checked to use the same masks as `settings`."""
    import json

    folder = Path(folder)
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MimicBrushError(f"{folder} holds no finished recon run (no results.json)") from None
    except (OSError, ValueError) as error:
        raise MimicBrushError(f"cannot read {folder / 'results.json'}: {error}") from None
    if not isinstance(results, dict) or results.get("task") != "recon":
        raise MimicBrushError(f"{folder / 'results.json'} is not the result of `benchmark recon`")
    if results.get("settings") != asdict(settings):
        raise MimicBrushError(f"{folder} was run with other masks ({results.get('settings')}); compare runs with "
                              "the same --seed, --box-fraction and --long-side")
    return AgainstRun(folder, dict(results.get("editor") or {}),
                      {pair_id: record["scores"]["model"] for pair_id, record in results["samples"].items()})


def check_against_covers(pair_ids: Iterable[str], against: AgainstRun) -> None:
    missing = sorted(set(pair_ids) - set(against.scores))
    if missing:
        raise MimicBrushError(f"{against.folder} has no result for {len(missing)} of these pairs (e.g. {missing[0]}); "
                              "compare runs on the same held-out data")


def with_against(samples: Mapping[str, Mapping[str, Any]], against: AgainstRun) -> dict[str, dict[str, Any]]:
    """`samples` with the per-pair difference model − `against`'s model added to their scores."""
    check_against_covers(samples, against)
    compared = {}
    for pair_id, record in samples.items():
        model, other = record["scores"]["model"], against.scores[pair_id]
        difference = {metric: model[metric] - other[metric]
                      if model.get(metric) is not None and other.get(metric) is not None else None for metric in METRICS}
        compared[pair_id] = {**record, "scores": {**record["scores"], AGAINST: difference}}
    return compared


def run_recon(pairs: Iterable[VideoPair], output_dir: str | Path, editor: Editor,
              settings: ReconSettings = ReconSettings(), editor_info: Mapping[str, Any] | None = None,
              progress: ProgressCallback | None = None, attention_off: Editor | None = None,
              autoencoder: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
              against: AgainstRun | None = None, distractor: bool = False,
              clip_only_hint: Editor | None = None) -> ReconResults:
    """Edit every pair with every editor of the module docstring; write per-pair records and reports.

    `attention_off` is the model with its reference attention switched off, `autoencoder(source, mask)`
    the model's VAE round trip; either omitted, its rows are left out. `against` (`load_against`): also
    compare the model with an earlier run's, pair by pair. `distractor`: the side-by-side variant of the module
    docstring (`editor` must take a `reference_region`), where `clip_only_hint` is the model at hint strength 0
    (omitted: no `model_hint_clip` row)."""
    output_dir = Path(output_dir)
    pairs = [(str(pair[0]), fit_long_side(pair[1], settings.long_side, False),
              fit_long_side(pair[2], settings.long_side, False), video_of(pair)) for pair in pairs]
    ids = [pair_id for pair_id, *_ in pairs]
    if len(set(ids)) != len(ids) or len({safe_name(pair_id) for pair_id in ids}) != len(ids):
        raise MimicBrushError("pair ids must be unique (also after replacing characters other than letters, digits, . _ -)")
    borrowed = mismatched_indices(len(pairs))
    if against is not None:  # before any editing: the comparison needs every pair
        check_against_covers(ids, against)
    optional = {"attention_off": attention_off, "autoencoder": autoencoder}
    if distractor:
        optional.update(model_mismatched=None, model_hint_clip=clip_only_hint)
    else:
        optional.update(model_hint=None, model_hint_clip=None)
    names = [name for name in EDITORS if optional.get(name, True) is not None]
    claim_output_dir(output_dir, {"recon": asdict(settings), "editor": dict(editor_info or {}), "editors": names,
                                  **({"distractor": True} if distractor else {})})
    store = SampleStore(output_dir)
    editors: dict[str, Callable[..., np.ndarray]] = {"model": editor}
    if attention_off is not None:
        editors["attention_off"] = attention_off
    editors.update(mean_fill=mean_fill, homography=homography_fill)
    edited = 0
    for index, (pair_id, source, reference, video) in enumerate(pairs):
        if not store.done(pair_id):
            mask = recon_mask(source.shape[:2], pair_id, settings.seed, settings.box_fraction, settings.jitter)
            other_id, _, other_reference, _ = pairs[borrowed[index]]
            started = time.perf_counter()
            shown, region = reference, None  # the reference the model and attention off see
            if distractor:
                shown, region = distractor_reference(reference, other_reference, index % 2 == 0)
            results = {name: check_result(edit(source, reference if name in ("mean_fill", "homography") else shown,
                                               mask, keep_shape=False, seed=settings.seed), source)
                       for name, edit in editors.items()}
            if distractor:
                hinted = {"model_hint": editor, "model_hint_clip": clip_only_hint}
                results.update({name: check_result(edit(source, shown, mask, keep_shape=False, seed=settings.seed,
                                                        reference_region=region), source)
                                for name, edit in hinted.items() if edit is not None})
            else:
                results["model_mismatched"] = check_result(
                    editor(source, other_reference, mask, keep_shape=False, seed=settings.seed), source)
            if autoencoder is not None:
                results["autoencoder"] = check_result(autoencoder(source, mask), source)
            seconds = time.perf_counter() - started
            scores: dict[str, Any] = {name: json_scores(score_edit(result, source, mask)) for name, result in results.items()}
            scores.update(_differences(scores))
            for name in ("model", "model_mismatched", "model_hint", "model_hint_clip"):
                if name in results:
                    save_image_atomically(results[name], store.image_path(pair_id, name))
            grid_path = output_dir / "grids" / f"{safe_name(pair_id)}.png"
            labels = {"model": "model", "model_hint": "model, hint on the true half",
                      "model_hint_clip": "hint as CLIP crop only", "attention_off": "attention off",
                      "mean_fill": "mean fill", "homography": "homography", "autoencoder": "VAE only (ceiling)",
                      "model_mismatched": "model, mismatched ref."}
            panels = ([("source (truth)", source), ("mask", mask), ("reference", reference)]
                      + ([("side-by-side reference", shown)] if distractor else [])
                      + [(labels[name], results[name]) for name in labels if name in results and name != "model_mismatched"])
            if not distractor:
                panels += [("mismatched ref.", other_reference), (labels["model_mismatched"], results["model_mismatched"])]
            save_image_atomically(grid_image(panels), grid_path)
            store.save(pair_id, {"id": pair_id, "video": video, "mismatched_with": other_id, "scores": scores,
                                 "edit_seconds": round(seconds, 3), "size": list(source.shape[:2]),
                                 "grid": str(grid_path.relative_to(output_dir))})
            edited += 1
        if progress is not None:
            progress(index + 1, len(pairs), pair_id)
    samples = {pair_id: store.load(pair_id) for pair_id in ids}
    if against is not None:
        samples = with_against(samples, against)
    summary = summarise_recon(samples)
    overview_path = output_dir / "overview.jpg"
    save_image_atomically(overview(output_dir, samples), overview_path)
    results_path, markdown_path = output_dir / "results.json", output_dir / "results.md"
    info = {**asdict(settings), **dict(editor_info or {})}
    record: dict[str, Any] = {"task": "recon", "settings": asdict(settings), "editor": dict(editor_info or {})}
    if distractor:
        info["distractor"] = record["distractor"] = True
    if against is not None:
        info["against"] = str(against.folder)
        record["against"] = {"folder": str(against.folder), "editor": against.editor}
    write_json(results_path, {**record, "count": len(samples), "summary": summary, "samples": samples})
    write_bytes_atomically(markdown_path, recon_markdown(summary, len(samples), info).encode())
    return ReconResults(samples=samples, summary=summary, edited=edited, resumed=len(samples) - edited,
                        output_dir=output_dir,
                        files={"results": results_path, "markdown": markdown_path, "overview": overview_path})


def overview(output_dir: Path, samples: Mapping[str, Mapping[str, Any]], videos: int = OVERVIEW_VIDEOS) -> np.ndarray:
    """The grids of the first pair of up to `videos` videos, at half size, stacked: every editor on several
    scenes in one picture."""
    from PIL import Image

    first_of_video: dict[str, str] = {}
    for record in samples.values():
        first_of_video.setdefault(record["video"], record["grid"])
    rows = []
    for grid in list(first_of_video.values())[:videos]:
        image = Image.open(output_dir / grid).convert("RGB")
        rows.append(np.asarray(image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)))
    width = max(row.shape[1] for row in rows)
    return np.concatenate([np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows])


def load_video_pairs(prepared_dirs: Iterable[str | Path]) -> Iterator[VideoPair]:
    """The video pairs of folders written by `mimicbrush prepare`, as (sample key, source, reference, video)."""
    from ..data.shards import SHARDS_FOLDER, decode_image, iter_samples, read_member

    for folder in map(Path, prepared_dirs):
        if not folder.is_dir():
            raise MimicBrushError(f"prepared data folder not found: {folder}")
        if not (folder / SHARDS_FOLDER).is_dir():
            raise MimicBrushError(f"{folder} is not a prepared data folder (it has no {SHARDS_FOLDER}/ folder); "
                                  "give folders written by `mimicbrush prepare`")
        for tar, record in iter_samples(folder, kind="video"):
            members = record["members"]
            yield (record["key"], decode_image(read_member(tar, members["source.jpg"])),
                   decode_image(read_member(tar, members["reference.jpg"])), str(record.get("input", record["key"])))
