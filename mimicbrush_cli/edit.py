"""Edits from files: read and check every input, load the model, edit in one batch, write atomically.

This is what `mimicbrush edit` runs; it is usable from Python without the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import imaging
from .errors import MimicBrushError
from .outputs import check_image_output_path, save_image_atomically
from .pipeline import EditSettings, StepCallback
from .speedups import SpeedOptions


@dataclass(frozen=True)
class EditJob:
    source: Path
    reference: Path
    mask: Path


def plan_output_paths(jobs: Sequence[EditJob], output: Path | None, num_samples: int) -> list[list[Path]]:
    """Output paths per edit and sample: OUT itself for one result, OUT-<edit>-<sample> otherwise."""
    base = output if output is not None else Path(f"{jobs[0].source.stem}_edited.png")
    check_image_output_path(base)
    paths = []
    for edit_index in range(len(jobs)):
        row = []
        for sample_index in range(num_samples):
            parts = ([f"{edit_index:02d}"] if len(jobs) > 1 else []) + ([f"{sample_index:02d}"] if num_samples > 1 else [])
            row.append(base.with_name("-".join([base.stem, *parts]) + base.suffix) if parts else base)
        paths.append(row)
    return paths


def read_job(job: EditJob, invert_mask: bool):
    source = imaging.load_image(job.source, "source image")
    reference = imaging.load_image(job.reference, "reference image")
    mask = imaging.load_mask(job.mask, invert=invert_mask)
    try:
        imaging.check_edit_inputs(source, reference, mask)
    except MimicBrushError as error:
        raise MimicBrushError(f"{job.source.name}: {error}") from None
    return source, reference, mask


def run_edits(jobs: Sequence[EditJob], settings: EditSettings, outputs: Sequence[Sequence[Path]],
              weights: Path | None = None, model: str | None = None, device: str = "auto",
              dtype: str | None = None, invert_mask: bool = False, callback: StepCallback | None = None,
              pipeline=None, speed: SpeedOptions = SpeedOptions()) -> list[Path]:
    """Run `jobs` as one batch and write each result to its planned path. Returns the written paths."""
    from .loading import load_pipeline

    inputs = [read_job(job, invert_mask) for job in jobs]  # every input checked before the model loads
    if pipeline is None:
        pipeline = load_pipeline(weights=weights, model=model, device=device, dtype=dtype, speed=speed)
    if settings.keep_shape and not pipeline.has_depth_model:
        raise MimicBrushError("--keep-shape needs a depth model, and this model has none (the bundled demo model "
                              "is trained without depth); use the released weights (--model released or --weights DIR)")
    sources, references, masks = zip(*inputs)
    results = pipeline(list(sources), list(references), list(masks), settings, callback=callback)
    written = []
    for samples, paths in zip(results, outputs):
        for image, path in zip(samples, paths):
            save_image_atomically(image, path)
            written.append(path)
    return written
