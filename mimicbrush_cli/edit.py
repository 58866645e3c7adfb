"""Edits from files: read and check every input, load the model, edit in one batch, write atomically.

This is what `mimicbrush edit` runs; it is usable from Python without the CLI.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import imaging
from .errors import MimicBrushError
from .outputs import check_image_output_path, check_outputs_spare_inputs, save_image_atomically
from .reference_region import check_reference_region
from .settings import EditSettings, StepCallback, settings_words
from .speedups import SpeedOptions


@dataclass(frozen=True)
class EditJob:
    source: Path
    reference: Path
    mask: Path | imaging.Box  # a mask image, or a box (`--mask-box`) over the source
    # A hint: the part of the reference to copy from, a mask image (`--reference-mask`) or a box over the
    # reference (`--reference-box`); None: the whole reference.
    reference_region: Path | imaging.Box | None = None


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
    check_outputs_spare_inputs([path for row in paths for path in row], [(what, getattr(job, field)) for job in jobs for
                               field, what in (("source", "source image"), ("reference", "reference image"), ("mask", "mask"),
                                                         ("reference_region", "reference mask"))])
    return paths


def read_job(job: EditJob, invert_mask: bool):
    """(source, reference, mask, reference region or None) arrays of `job`, checked (one line where not)."""
    source = imaging.load_image(job.source, "source image")
    reference = imaging.load_image(job.reference, "reference image")
    try:
        if isinstance(job.mask, imaging.Box):
            mask = imaging.box_mask(source.shape, job.mask)
            mask = ~mask if invert_mask else mask
        else:
            mask = imaging.load_mask(job.mask, invert=invert_mask)
        imaging.check_edit_inputs(source, reference, mask)
        region = read_reference_region(job.reference_region, reference)
    except MimicBrushError as error:
        raise MimicBrushError(f"{job.source.name}: {error}") from error
    return source, reference, mask, region


def read_reference_region(region: Path | imaging.Box | None, reference: np.ndarray) -> np.ndarray | None:
    """A hint as a bool mask of the reference (None: none), checked."""
    if region is None:
        return None
    if isinstance(region, imaging.Box):
        return imaging.box_mask(reference.shape, region, "reference box", "reference")
    mask = imaging.load_mask(region, what="reference mask")
    check_reference_region(reference, mask)
    return mask


def edit_images(pipeline, inputs: Sequence[tuple], settings: EditSettings,
                callback: StepCallback | None = None) -> list[list]:
    """(source, reference, mask[, reference region]) arrays, already checked, -> per edit, its samples (uint8
    arrays)."""
    inputs = [tuple(item) + (None,) * (4 - len(item)) for item in inputs]
    sources, references, masks, regions = zip(*inputs)
    hints = {"reference_regions": list(regions)} if any(region is not None for region in regions) else {}
    return pipeline(list(sources), list(references), list(masks), settings, callback=callback, **hints)


def edit_command_line(source: str, reference: str, mask: str, output: str, settings: EditSettings,
                      model_options: Sequence[str] = (), defaults: EditSettings = EditSettings(),
                      region_words: Sequence[str] = ()) -> str:
    """The `mimicbrush edit` command that repeats an edit: only the settings that differ from `defaults`, the
    model's own (those `model_options` name); `region_words` the hint's (`--reference-box X0,Y0,X1,Y1`)."""
    words = ["mimicbrush", "edit", source, reference, mask, "-o", output, *region_words,
             *settings_words(settings, defaults)]
    return shlex.join(words + list(model_options))


def run_edits(jobs: Sequence[EditJob], settings: EditSettings, outputs: Sequence[Sequence[Path]],
              weights: Path | None = None, model: str | None = None, device: str = "auto",
              dtype: str | None = None, invert_mask: bool = False, callback: StepCallback | None = None,
              pipeline=None, speed: SpeedOptions = SpeedOptions(),
              before_loading: Callable[[], None] | None = None) -> list[Path]:
    """Run `jobs` as one batch and write each result to its planned path. Returns the written paths.

    `before_loading` runs once every input is read and checked, before the model loads (and torch is imported).
    """
    inputs = [read_job(job, invert_mask) for job in jobs]  # every input checked before the model loads
    if before_loading is not None:
        before_loading()
    if pipeline is None:
        from .loading import load_pipeline

        pipeline = load_pipeline(weights=weights, model=model, device=device, dtype=dtype, speed=speed)
    results = edit_images(pipeline, inputs, settings, callback)
    written = []
    for samples, paths in zip(results, outputs):
        for image, path in zip(samples, paths):
            save_image_atomically(image, path)
            written.append(path)
    return written
