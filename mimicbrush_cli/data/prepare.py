"""`prepare`: turn folders of videos and SA-1B-style images into sharded training data.

Videos give frame pairs (pairs.py picks them by SSIM and time gap); SAM images give one image with
its object masks (sam.py), made into pseudo-pairs at training time. Work is split three ways:
`num_shards`/`shard_index` pick a stable subset of inputs for one job of a cluster array, `workers`
processes run chunks of `inputs_per_shard` inputs, and each chunk becomes one shard (shards.py),
committed atomically. Re-running skips inputs that a committed shard already covers, unless the
input's size or modification time changed since (a truncated download completed, a file replaced):
then that shard's inputs are processed again into a shard that replaces it (shards.py).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import config_to_dict
from ..errors import MimicBrushError
from ..outputs import write_text_atomically
from .pairs import select_pairs
from .sam import SamSample, find_sam_images, read_sam_sample, rle_encode
from .shards import (SHARDS_FOLDER, ShardWriter, encode_jpeg, read_sidecars, remove_replaced_shards,
                     remove_stale_temporaries, shard_name, stable_id, write_manifest)
from .ssim import SsimBackend
from .summary import HISTOGRAM_BINS, write_histogram_png
from .video import VIDEO_SUFFIXES, CandidateFrames, SkippedInput, decode_candidates, decode_throughput, find_videos
from .workers import read_ahead, run_in_workers, sigterm_unwinds, stop_if_orphaned

MAX_CONFIG_INT = 2**31 - 1  # no count or size is meant past this, and FFmpeg and OpenCV take C ints
MAX_WORKERS = 1024          # far past any machine's useful number; the pool's queue sizes must fit a C int


@dataclass(frozen=True)
class SamConfig:
    """Which SA-1B masks become object masks. Defaults follow SAM's own automatic-mask thresholds."""

    min_area: float = 0.01             # of the image: smaller objects leave almost nothing to repaint
    max_area: float = 0.5              # masking more than half the source leaves too little context
    min_predicted_iou: float = 0.88    # SAM's pred_iou_thresh for automatic mask generation
    min_stability_score: float = 0.95  # SAM's stability_score_thresh
    max_masks: int = 16                # largest first; enough variety per image, bounded JSON size

    def __post_init__(self) -> None:
        check_ranges("sam.", {"min_area": (self.min_area, 0, 1), "max_area": (self.max_area, self.min_area, 1),
                              "min_predicted_iou": (self.min_predicted_iou, 0, 1),
                              "min_stability_score": (self.min_stability_score, 0, 1),
                              "max_masks": (self.max_masks, 1, None)})


@dataclass(frozen=True)
class PrepareConfig:
    """Every knob of `prepare`; a recipe in data_recipes/ is a YAML file of these keys."""

    videos: Path | None = None         # folder of videos (searched recursively); the CLI argument overrides
    sam_images: Path | None = None     # folder of sa_*.jpg + sa_*.json; --sam overrides
    sample_fps: float = 2.0            # candidate frames per second: 0.5 s apart is finer than any useful gap
    max_candidate_frames: int = 48     # per video; spread over the video when longer. 48 frames = 1128 pairs scored
    min_gap_s: float = 1.0             # pairs closer in time are near-copies whatever their SSIM
    max_gap_s: float = 10.0            # 0 = none; far-apart frames are usually different shots
    ssim_min: float = 0.4              # below: the frames share too little to imitate (cuts, fast motion)
    ssim_max: float = 0.85             # above: almost nothing changes, the model would learn to copy
    max_pairs_per_video: int = 8       # long videos must not dominate the mix
    ssim_side: int = 96                # longer side for SSIM: structure survives, cost is ~1/100 of 1080p
    ssim_backend: SsimBackend = "opencv"  # fastest of the three on CPU; all agree to 1e-5 (tests)
    frame_max_side: int = 1024         # stored frames: 2x the 512 training size leaves room for crops
    jpeg_quality: int = 95             # visually lossless; JPEG artefacts would otherwise be learnt
    inputs_per_shard: int = 64         # inputs (videos or images) per shard: ~100-300 MB tars for stock video
    seek_gap_s: float = 4.0            # seek (to the keyframe before) when the next candidate is further away
    sam: SamConfig = field(default_factory=SamConfig)

    def __post_init__(self) -> None:
        if not math.isfinite(self.sample_fps):
            raise MimicBrushError(f"config key sample_fps must be a finite number, got {self.sample_fps}")
        if not self.sample_fps > 0:
            raise MimicBrushError(f"config key sample_fps must be above 0, got {self.sample_fps}")
        check_ranges("", {
            "max_candidate_frames": (self.max_candidate_frames, 2, None),  # a pair needs two frames
            "min_gap_s": (self.min_gap_s, 0, None), "max_gap_s": (self.max_gap_s, 0, None),
            "ssim_min": (self.ssim_min, -1, 1), "ssim_max": (self.ssim_max, self.ssim_min, 1),
            "max_pairs_per_video": (self.max_pairs_per_video, 1, None),
            "ssim_side": (self.ssim_side, 7, None),  # the SSIM window is 7x7
            "frame_max_side": (self.frame_max_side, 1, None), "jpeg_quality": (self.jpeg_quality, 1, 100),
            "inputs_per_shard": (self.inputs_per_shard, 1, None), "seek_gap_s": (self.seek_gap_s, 0, None)})
        if 0 < self.max_gap_s < self.min_gap_s:
            raise MimicBrushError(f"config key max_gap_s must be 0 (no limit) or at least min_gap_s "
                                  f"({self.min_gap_s}), got {self.max_gap_s}")


def check_ranges(prefix: str, ranges: dict[str, tuple[float, float, float | None]]) -> None:
    """{key: (value, lowest, highest or None)} -> a user error naming the first key outside its range. Numbers must
    be finite (NaN compares false with every bound), integers at most `MAX_CONFIG_INT`."""
    for key, (value, lowest, highest) in ranges.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise MimicBrushError(f"config key {prefix}{key} must be a finite number, got {value}")
        if highest is None and isinstance(value, int):
            highest = MAX_CONFIG_INT
        if value < lowest:
            raise MimicBrushError(f"config key {prefix}{key} must be at least {lowest}, got {value}")
        if highest is not None and value > highest:
            raise MimicBrushError(f"config key {prefix}{key} must be at most {highest}, got {value}")


@dataclass
class PrepareSummary:
    """What a run did (`run_*`, this invocation) and what the output folder holds (totals)."""

    output: Path
    manifest: Path
    histogram: Path
    video_pairs: int = 0
    sam_samples: int = 0
    inputs_done: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    ssim_histogram: list[int] = field(default_factory=list)
    run_inputs: int = 0                # inputs this job was given
    run_already_done: int = 0          # of those, covered by shards from earlier runs
    run_processed: int = 0
    run_video_pairs: int = 0
    run_sam_samples: int = 0
    run_decoded_frames: int = 0
    run_candidate_frames: int = 0
    run_wall_s: float = 0.0
    run_stage_s: dict[str, float] = field(default_factory=dict)  # decode / ssim / write, summed over workers
    raw_decode_frames: int = 0         # filled when asked to measure plain PyAV decode of the same videos
    raw_decode_s: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.run_decoded_frames / self.run_wall_s if self.run_wall_s else 0.0

    @property
    def pairs_per_s(self) -> float:
        return self.run_video_pairs / self.run_wall_s if self.run_wall_s else 0.0

    @property
    def raw_decode_fps(self) -> float:
        return self.raw_decode_frames / self.raw_decode_s if self.raw_decode_s else 0.0


ProgressCallback = Callable[[int, int], None]


def prepare(output: Path, config: PrepareConfig = PrepareConfig(), *, videos: Path | None = None,
            sam_images: Path | None = None, workers: int = 1, shard_index: int = 0, num_shards: int = 1,
            measure_decode: bool = False, progress: ProgressCallback | None = None) -> PrepareSummary:
    """Prepare (or resume preparing) a training set in `output`; returns what the folder now holds."""
    videos = videos or config.videos
    sam_images = sam_images or config.sam_images
    if videos is None and sam_images is None:
        raise MimicBrushError("nothing to prepare: give a videos folder and/or --sam DIR")
    for folder, holding in ((videos, "videos"), (sam_images, "SA-1B images")):
        if folder is not None and not Path(folder).is_dir():
            raise MimicBrushError(f"{folder} is a file, not a folder of {holding}" if Path(folder).exists()
                                  else f"no such folder: {folder}")
    if not 0 <= shard_index < num_shards:
        raise MimicBrushError(f"--shard-index must be in 0..{num_shards - 1}, got {shard_index}")
    if not 1 <= workers <= MAX_WORKERS:
        raise MimicBrushError(f"--workers must be in 1..{MAX_WORKERS}, got {workers}")
    if not 0 <= config.ssim_min <= config.ssim_max <= 1:
        raise MimicBrushError("need 0 <= ssim_min <= ssim_max <= 1")

    # Inputs are found before anything is written: a folder without any is refused with no output left behind.
    inputs: list[tuple[str, Path, str]] = []  # (kind, root, path relative to root)
    missing = []
    if videos is not None:
        found = [("video", Path(videos), path.relative_to(videos).as_posix()) for path in find_videos(Path(videos))]
        missing += [] if found else [f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {videos}"]
        inputs += found
    if sam_images is not None:
        found = [("sam", Path(sam_images), path.relative_to(sam_images).as_posix())
                 for path in find_sam_images(Path(sam_images))]
        missing += [] if found else [f"no SA-1B images (sa_*.jpg) in {sam_images}"]
        inputs += found
    if not inputs:
        raise MimicBrushError(f"nothing to prepare: {' and '.join(missing)}")
    # A hash of the input's id, not its position: adding files later does not move inputs between jobs.
    mine = [item for item in inputs if int(stable_id(_input_id(item), 8), 16) % num_shards == shard_index]
    if not mine:
        raise MimicBrushError(f"--shard-index {shard_index} of --num-shards {num_shards} is given none of the "
                              f"{len(inputs)} inputs (use fewer parts)")
    output = Path(output)
    (output / SHARDS_FOLDER).mkdir(parents=True, exist_ok=True)
    _check_same_recipe(output, config)
    remove_stale_temporaries(output)  # left by a run killed (kill -9, power cut) while it wrote a shard
    remove_replaced_shards(output)  # left by a run stopped between committing a replacement and this cleanup
    covered = {entry["id"]: (Path(sidecar["path"]).stem, entry.get("fingerprint"))
               for sidecar in read_sidecars(output) for entry in sidecar["inputs"]}
    # Shards written before inputs were fingerprinted (no "fingerprint") are taken as unchanged.
    stale = {covered[_input_id(item)][0] for item in mine if _input_id(item) in covered
             and covered[_input_id(item)][1] not in (None, input_fingerprint(item))}
    pending = [item for item in mine if _input_id(item) not in covered or covered[_input_id(item)][0] in stale]
    chunks = [(kind, [item for item in pending if item[0] == kind]) for kind in ("video", "sam")]
    tasks = [(kind, items[start:start + config.inputs_per_shard])
             for kind, items in chunks for start in range(0, len(items), config.inputs_per_shard)]
    tasks = [(kind, items, sorted({covered[_input_id(item)][0] for item in items if _input_id(item) in covered}))
             for kind, items in tasks]

    summary_run = Counter()
    stage_s: Counter = Counter()
    start = time.perf_counter()
    completed = 0
    if progress:
        progress(0, len(pending))
    with sigterm_unwinds(), closing(_run_tasks(tasks, output, config, workers)) as results:
        for result in results:
            completed += result["num_inputs"]
            for name in ("video_pairs", "sam_samples", "decoded_frames", "candidate_frames"):
                summary_run[name] += result["stats"][name]
            stage_s.update(result["stats"]["seconds"])
            if progress:
                progress(completed, len(pending))
    wall = time.perf_counter() - start
    remove_replaced_shards(output)

    raw_frames, raw_seconds = 0, 0.0
    if measure_decode:
        for kind, root, relative in mine:
            if kind == "video":
                try:
                    frames, seconds = decode_throughput(root / relative)
                except Exception:  # noqa: BLE001 - unreadable inputs are already counted by prepare
                    continue
                raw_frames += frames
                raw_seconds += seconds

    summary = collect_summary(output)
    summary.run_inputs, summary.run_already_done, summary.run_processed = len(mine), len(mine) - len(pending), completed
    summary.run_video_pairs, summary.run_sam_samples = summary_run["video_pairs"], summary_run["sam_samples"]
    summary.run_decoded_frames, summary.run_candidate_frames = summary_run["decoded_frames"], summary_run["candidate_frames"]
    summary.run_wall_s, summary.run_stage_s = wall, dict(stage_s)
    summary.raw_decode_frames, summary.raw_decode_s = raw_frames, raw_seconds
    record = asdict(summary) | {"frames_per_s": summary.frames_per_s, "pairs_per_s": summary.pairs_per_s,
                                "raw_decode_fps": summary.raw_decode_fps}
    write_text_atomically(output / "summary.json", json.dumps(record, indent=1, default=str))
    return summary


def require_samples(summary: PrepareSummary) -> None:
    """Raise when the output folder holds no training sample: nothing was found, or every input was skipped."""
    if summary.video_pairs or summary.sam_samples:
        return
    if summary.inputs_done == 0:
        raise MimicBrushError(f"nothing prepared: no videos ({', '.join(VIDEO_SUFFIXES)}) or SA-1B images "
                              f"(sa_*.jpg) found")
    # Which reasons, most frequent first: a recipe whose SSIM window or time gaps do not fit the videos skips
    # every good video as no-pair-in-ssim-window, and says so here.
    reasons = sorted(Counter(entry["reason"] for entry in summary.skipped).items(),
                     key=lambda item: (-item[1], item[0]))
    counts = ", ".join(f"{count} {reason}" for reason, count in reasons)
    raise MimicBrushError(f"nothing prepared: all {summary.inputs_done} inputs were skipped ({counts}; details in "
                          f"{summary.output / 'summary.json'})")


def collect_summary(output: Path) -> PrepareSummary:
    """Totals over every committed shard in `output`; rewrites the manifest and the SSIM histogram."""
    sidecars = read_sidecars(output)
    manifest = write_manifest(output, sidecars)
    rejects: Counter = Counter()
    histogram = np.zeros(len(HISTOGRAM_BINS) - 1, np.int64)
    skipped = []
    summary = PrepareSummary(output=output, manifest=manifest, histogram=output / "ssim_histogram.png")
    for sidecar in sidecars:
        rejects.update(sidecar["rejects"])
        histogram += np.asarray(sidecar["ssim_histogram"], np.int64)
        summary.inputs_done += len(sidecar["inputs"])
        skipped += [entry for entry in sidecar["inputs"] if entry["status"] == "skipped"]
        for sample in sidecar["samples"]:
            if sample["kind"] == "video":
                summary.video_pairs += 1
            else:
                summary.sam_samples += 1
    summary.rejects = dict(sorted(rejects.items()))
    summary.skipped = sorted(skipped, key=lambda entry: entry["id"])
    summary.ssim_histogram = histogram.tolist()
    write_histogram_png(summary.histogram, histogram)
    return summary


def _input_id(item: tuple[str, Path, str]) -> str:
    return f"{item[0]}:{item[2]}"


def input_fingerprint(item: tuple[str, Path, str]) -> str:
    """Size and modification time (ns) of the input's files; "" when they cannot be read.

    Not a content hash: hashing would read every byte of every input again on each resume (terabytes
    for a stock-video set), while a completed download, a copy or a re-encode all change the size or
    the modification time, the same quick check make and rsync rely on."""
    kind, root, relative = item
    paths = [root / relative] + ([(root / relative).with_suffix(".json")] if kind == "sam" else [])
    try:
        return ",".join(f"{stat.st_size}:{stat.st_mtime_ns}" for stat in (path.stat() for path in paths))
    except OSError:
        return ""


def _check_same_recipe(output: Path, config: PrepareConfig) -> None:
    """Appending with other settings would silently mix two recipes in one training set."""
    recipe = {key: value for key, value in config_to_dict(config).items() if key not in ("videos", "sam_images")}
    path = output / "prepare_config.json"
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")) != recipe:
            raise MimicBrushError(f"{output} was prepared with other settings ({path}); use a new output folder")
    else:
        write_text_atomically(path, json.dumps(recipe, indent=1, sort_keys=True))


def _run_tasks(tasks, output: Path, config: PrepareConfig, workers: int):
    if workers == 1 or len(tasks) <= 1:
        for kind, items, replaces in tasks:
            yield process_chunk(kind, items, output, config, replaces)
        return
    yield from run_in_workers(process_chunk, [(kind, items, output, config, replaces) for kind, items, replaces in tasks],
                              workers)


def process_chunk(kind: str, items: list[tuple[str, Path, str]], output: Path, config: PrepareConfig,
                  replaces: Sequence[str] = ()) -> dict[str, Any]:
    """Process one chunk of inputs into one committed shard (replacing the stale shards `replaces`);
    returns the shard's run statistics."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ids = [_input_id(item) for item in items]
    writer = ShardWriter(output / SHARDS_FOLDER, shard_name(kind, ids, replaces))
    rejects: Counter = Counter()
    histogram = np.zeros(len(HISTOGRAM_BINS) - 1, np.int64)
    stats: dict[str, Any] = {"video_pairs": 0, "sam_samples": 0, "decoded_frames": 0, "candidate_frames": 0,
                             "seconds": Counter()}
    entries = []
    # Taken before reading: an input that changes while it is read is seen as changed by the next run.
    fingerprints = [input_fingerprint(item) for item in items]
    try:
        with closing(read_ahead(lambda item: _read_input(item, config), items)) as reads:
            for item, fingerprint, read in zip(items, fingerprints, reads):
                entry = {"id": _input_id(item), "fingerprint": fingerprint, "status": "done", "reason": "",
                         "detail": ""}
                try:
                    content, seconds = read.result()
                    stats["seconds"]["decode"] += seconds
                    if kind == "video":
                        _add_video(writer, item, content, config, rejects, histogram, stats)
                    else:
                        _add_sam_image(writer, item, content, config, rejects, stats)
                except SkippedInput as skipped:
                    entry.update(status="skipped", reason=skipped.reason, detail=skipped.detail)
                except Exception as error:  # noqa: BLE001 - one hostile input must not stop a run of thousands
                    entry.update(status="skipped", reason="unexpected-error",
                                 detail=f"{type(error).__name__}: {error}"[:200])
                if entry["status"] == "skipped":
                    rejects[f"input:{entry['reason']}"] += 1
                entries.append(entry)
        stop_if_orphaned()
        writer.commit({"kind": kind, "inputs": entries, "rejects": dict(rejects),
                       "ssim_histogram": histogram.tolist(), "replaces": list(replaces)})
    except BaseException:
        writer.discard()
        raise
    stats["seconds"] = dict(stats["seconds"])
    return {"num_inputs": len(items), "stats": stats}


def _read_input(item, config: PrepareConfig) -> tuple[Any, float]:
    """Decode one input (in the read-ahead thread): a video's candidate frames or a SAM image with its
    masks; and the seconds it took."""
    kind, root, relative = item
    start = time.perf_counter()
    if kind == "video":
        content = decode_candidates(root / relative, config.sample_fps, config.max_candidate_frames,
                                    config.frame_max_side, config.seek_gap_s, config.ssim_side)
    else:
        sam = config.sam
        content = read_sam_sample(root / relative, min_area=sam.min_area, max_area=sam.max_area,
                                  min_predicted_iou=sam.min_predicted_iou, min_stability_score=sam.min_stability_score,
                                  max_masks=sam.max_masks, max_side=config.frame_max_side)
    return content, time.perf_counter() - start


def _add_video(writer: ShardWriter, item, candidates: CandidateFrames, config: PrepareConfig, rejects: Counter,
               histogram: np.ndarray, stats: dict[str, Any]) -> None:
    relative = item[2]
    decoded = time.perf_counter()
    selection = select_pairs(candidates.gray, candidates.times, ssim_min=config.ssim_min, ssim_max=config.ssim_max,
                             min_gap_s=config.min_gap_s, max_gap_s=config.max_gap_s,
                             max_pairs=config.max_pairs_per_video, ssim_side=config.ssim_side,
                             backend=config.ssim_backend)
    scored = time.perf_counter()
    histogram += np.histogram(np.clip(selection.all_scores, -1, 1), HISTOGRAM_BINS)[0]
    rejects["pair:too-similar"] += selection.rejected_too_similar
    rejects["pair:too-different"] += selection.rejected_too_different
    rejects["pair:not-chosen"] += selection.not_chosen
    stats["decoded_frames"] += candidates.decoded_frames
    stats["candidate_frames"] += len(candidates.times)
    stats["seconds"]["ssim"] += scored - decoded
    if len(candidates.times) < 2 or len(selection.all_scores) == 0:
        raise SkippedInput("too-short", f"{len(candidates.times)} candidate frames, none {config.min_gap_s}s apart")
    if len(selection.pairs) == 0:
        scores = selection.all_scores
        closest = scores[np.argmin(np.maximum(config.ssim_min - scores, scores - config.ssim_max))]
        raise SkippedInput("no-pair-in-ssim-window", f"closest SSIM {closest:.3f} of {len(scores)} scored pairs "
                                                     f"(range {scores.min():.3f}..{scores.max():.3f}), window "
                                                     f"[{config.ssim_min}, {config.ssim_max}]")
    video_id = stable_id(relative)
    for number, ((first, second), score) in enumerate(zip(selection.pairs, selection.scores)):
        record = {"kind": "video", "input": relative, "source_time": round(float(candidates.times[first]), 4),
                  "reference_time": round(float(candidates.times[second]), 4), "ssim": round(float(score), 5),
                  "rotation": candidates.rotation, "pixel_format": candidates.pixel_format}
        writer.add(f"v{video_id}_{number:03d}", {
            "source.jpg": encode_jpeg(candidates.rgb(first), config.jpeg_quality),
            "reference.jpg": encode_jpeg(candidates.rgb(second), config.jpeg_quality),
            "json": json.dumps(record, sort_keys=True).encode(),
        }, record)
    stats["video_pairs"] += len(selection.pairs)
    stats["seconds"]["write"] += time.perf_counter() - scored


def _add_sam_image(writer: ShardWriter, item, sample: SamSample, config: PrepareConfig, rejects: Counter,
                   stats: dict[str, Any]) -> None:
    relative = item[2]
    rejects.update({f"mask:{reason}": count for reason, count in sample.rejects.items()})
    read = time.perf_counter()
    record = {"kind": "sam", "input": relative, "num_masks": len(sample.masks)}
    masks = {"masks": [rle_encode(mask) for mask in sample.masks]}
    writer.add(f"s{stable_id(relative)}", {
        "image.jpg": encode_jpeg(sample.image, config.jpeg_quality),
        "json": json.dumps(record | masks, sort_keys=True).encode(),
    }, record)
    stats["sam_samples"] += 1
    stats["seconds"]["write"] += time.perf_counter() - read
