"""The resumable benchmark loop: read a sample, edit it, score it, write it; skip what is done.

Output folder:
- `run.json`: the settings and editor the results belong to; resuming with different ones is refused;
- `samples/<id>.json`: one finished sample (written last, atomically: its presence means done);
- `samples/<id>_result.png` and `grids/<id>.png` (source | mask | reference | result | ground truth);
- `results.json` (per-sample scores, means, broken samples, settings, metrics not measured and why,
  metrics measured with other networks than the paper's) and `results.md` (the paper's rows beside
  this run), rewritten at the end of every run.
Broken samples (missing file, unreadable image, size mismatch) are reported and skipped, and tried
again on the next run, since the user may have fixed them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import MimicBrushError
from ..outputs import save_image_atomically, write_bytes_atomically
from .editors import Editor
from .report import SPLIT_TITLES, grid_image, json_scores, markdown_report, mean_scores, write_json
from .samples import BrokenSample, read_sample, sample_files
from .scores import SPLIT_METRICS, sample_scores

if TYPE_CHECKING:
    from .backbones import MetricModels

KEEP_SHAPE = {"texture": True, "part": False}  # texture transfer is depth-conditioned, part composition is not
ProgressCallback = Callable[[int, int, str], None]  # (samples handled, total, sample id)


@dataclass(frozen=True)
class BenchmarkSettings:
    task: Literal["texture", "part"] = "part"
    split: Literal["inner", "inter"] = "inner"
    seed: int = 0
    long_side: int = 512  # the released benchmark runner resizes every input's long side to 512
    reference_hint: bool = False  # each sample's <id>_reference_mask.png is the edit's reference hint

    @property
    def record(self) -> dict[str, Any]:
        """What identifies the run's results: `reference_hint` only where on, so that the records of runs made
        before it existed still match when resuming."""
        return {name: value for name, value in asdict(self).items() if name != "reference_hint" or value}


@dataclass
class BenchmarkResults:
    task: str
    split: str
    samples: dict[str, dict[str, Any]]       # id -> stored record (scores under "scores")
    means: dict[str, Any]
    broken: dict[str, str]                   # id -> reason
    edited: int                              # samples edited by this run
    resumed: int                             # samples found finished and skipped
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    not_measured: dict[str, str] = field(default_factory=dict)  # metric -> why (its network's weights were absent)
    stand_ins: dict[str, str] = field(default_factory=dict)     # metric -> the network it was measured with, when
                                                                # not the paper's


def safe_name(sample_id: str) -> str:
    """A file-name stem for an id (ids from video shards may hold slashes)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", sample_id)


class SampleStore:
    """Finished samples as `samples/<id>.json`; a record is written after its images."""

    def __init__(self, output_dir: Path) -> None:
        self.folder = Path(output_dir) / "samples"

    def record_path(self, sample_id: str) -> Path:
        return self.folder / f"{safe_name(sample_id)}.json"

    def image_path(self, sample_id: str, kind: str) -> Path:
        return self.folder / f"{safe_name(sample_id)}_{kind}.png"

    def done(self, sample_id: str) -> bool:
        return self.record_path(sample_id).is_file()

    def load(self, sample_id: str) -> dict[str, Any]:
        try:
            return json.loads(self.record_path(sample_id).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise MimicBrushError(f"cannot read {self.record_path(sample_id)}: {type(error).__name__}; "
                                  "delete it to redo that sample") from error

    def save(self, sample_id: str, record: Mapping[str, Any]) -> None:
        write_json(self.record_path(sample_id), dict(record))


def claim_output_dir(output_dir: Path, run_record: Mapping[str, Any]) -> None:
    """Create `output_dir`, or check that the results already in it come from the same run settings."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise MimicBrushError(f"output {output_dir} is a file, not a folder")
    path = output_dir / "run.json"
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous != json.loads(json.dumps(run_record)):
            raise MimicBrushError(f"{output_dir} holds results of a run with other settings or another model; "
                                  "choose another output folder (or delete it to start over)")
        return
    write_json(path, dict(run_record))


def check_result(result: np.ndarray, source: np.ndarray) -> np.ndarray:
    result = np.asarray(result)
    if result.shape != source.shape or result.dtype != np.uint8:
        raise ValueError(f"the editor returned {result.dtype} {result.shape}, expected uint8 {source.shape}")
    return result


def run_benchmark(data_dir: str | Path, output_dir: str | Path, settings: BenchmarkSettings, editor: Editor,
                  metric_models: MetricModels | None = None, editor_info: Mapping[str, Any] | None = None,
                  progress: ProgressCallback | None = None) -> BenchmarkResults:
    """Edit and score every sample of `data_dir` not yet finished in `output_dir`; write the reports.

    `metric_models`: where the metric networks come from (default: `MetricModels()`, the Hub ids).
    """
    from .backbones import MetricModels, load_backbones

    metric_models = metric_models or MetricModels()
    if settings.task not in KEEP_SHAPE or settings.split not in SPLIT_METRICS:
        raise MimicBrushError(f"unknown benchmark {settings.task}/{settings.split}")
    output_dir = Path(output_dir)
    files = sample_files(Path(data_dir))
    claim_output_dir(output_dir, {"benchmark": settings.record, "editor": dict(editor_info or {})})
    store = SampleStore(output_dir)
    pending = [sample_id for sample_id in files if not store.done(sample_id)]
    backbones = None
    not_measured: dict[str, str] = {}
    if pending:  # every network loads (or is found absent) before the first edit
        backbones = load_backbones(metric_models, need_identity=settings.split == "inter",
                                   need_perceptual=settings.split == "inner")
        not_measured = backbones.not_measured
        if set(not_measured) >= set(SPLIT_METRICS[settings.split]):
            reasons = "; ".join(dict.fromkeys(not_measured.values()))
            raise MimicBrushError(f"no {SPLIT_TITLES[settings.split]} metric can be measured: {reasons}")
    broken: dict[str, str] = {}
    edited = 0
    for index, sample_id in enumerate(files):
        if sample_id in pending:
            try:
                sample = read_sample(sample_id, files[sample_id], settings.split, settings.long_side)
                if settings.reference_hint and (sample.reference_mask is None or not sample.reference_mask.any()):
                    raise BrokenSample("no reference mask for the reference hint (--reference-hint)" if
                                       sample.reference_mask is None else "reference mask is empty")
            except BrokenSample as error:
                broken[sample_id] = str(error)
            else:
                started = time.perf_counter()
                hint = {"reference_region": sample.reference_mask} if settings.reference_hint else {}
                result = check_result(editor(sample.source, sample.reference, sample.source_mask,
                                             keep_shape=KEEP_SHAPE[settings.task], seed=settings.seed, **hint),
                                      sample.source)
                seconds = time.perf_counter() - started
                scores = sample_scores(settings.split, result, sample, backbones)
                save_image_atomically(result, store.image_path(sample_id, "result"))
                panels = [("source", sample.source), ("mask", sample.source_mask), ("reference", sample.reference),
                          ("result", result)]
                if sample.ground_truth is not None:
                    panels.append(("ground truth", sample.ground_truth))
                grid_path = output_dir / "grids" / f"{safe_name(sample_id)}.png"
                save_image_atomically(grid_image(panels), grid_path)
                store.save(sample_id, {
                    "id": sample_id, "scores": json_scores(scores), "edit_seconds": round(seconds, 3),
                    "size": list(sample.source.shape[:2]), "ground_truth": sample.ground_truth_file,
                    "prompt": sample.prompt, "result": str(store.image_path(sample_id, "result").relative_to(output_dir)),
                    "grid": str(grid_path.relative_to(output_dir))})
                edited += 1
        if progress is not None:
            progress(index + 1, len(files), sample_id)
    return write_benchmark_report(output_dir, settings, files.keys(), broken, edited, editor_info, not_measured,
                                  metric_models.stand_ins())


def write_benchmark_report(output_dir: Path, settings: BenchmarkSettings, sample_ids, broken: Mapping[str, str],
                           edited: int, editor_info: Mapping[str, Any] | None,
                           not_measured_now: Mapping[str, str] | None = None,
                           stand_ins: Mapping[str, str] | None = None) -> BenchmarkResults:
    """`not_measured_now`: why this run could not measure some metrics; `stand_ins`: the networks, other than the
    paper's, that measured others."""
    store = SampleStore(output_dir)
    samples = {sample_id: store.load(sample_id) for sample_id in sample_ids if store.done(sample_id)}
    names = SPLIT_METRICS[settings.split]
    means = mean_scores((record["scores"] for record in samples.values()), names)
    measured = {name for record in samples.values() for name in record["scores"]}
    reasons = dict(not_measured_now or {})
    not_measured = {name: reasons.get(name, "its network's weights were absent when the samples were scored")
                    for name in names if samples and name not in measured}
    stand_ins = {name: source for name, source in (stand_ins or {}).items() if name in names and name in measured}
    run_settings = {**settings.record, **dict(editor_info or {})}
    results_path, markdown_path = output_dir / "results.json", output_dir / "results.md"
    write_json(results_path, {
        "task": settings.task, "split": settings.split, "settings": settings.record, "editor": dict(editor_info or {}),
        "count": len(samples), "means": means, "not_measured": not_measured, "stand_in_networks": stand_ins,
        "broken_count": len(broken), "broken": dict(sorted(broken.items())), "samples": samples})
    markdown = markdown_report(settings.task, settings.split, means, len(samples), broken, run_settings,
                               not_measured, stand_ins)
    write_bytes_atomically(markdown_path, markdown.encode("utf-8"))
    return BenchmarkResults(task=settings.task, split=settings.split, samples=samples, means=means, broken=dict(broken),
                            edited=edited, resumed=len(samples) - edited, output_dir=output_dir,
                            files={"results": results_path, "markdown": markdown_path},
                            not_measured=not_measured, stand_ins=stand_ins)
