"""What the benchmark drives: any callable that edits one image, and the MimicBrush pipeline as one.

An `Editor` takes a uint8 (H, W, 3) source, a uint8 (h, w, 3) reference and a bool (H, W) mask
(True = repaint) and returns a uint8 (H, W, 3) result; `keep_shape` asks for depth-conditioned
texture transfer and `seed` fixes the noise. Tests drive the runner with trivial editors; the
CLI drives it with `make_pipeline_editor`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import MimicBrushError
from ..settings import EditSettings


class Editor(Protocol):
    def __call__(self, source: np.ndarray, reference: np.ndarray, mask: np.ndarray, *,
                 keep_shape: bool, seed: int) -> np.ndarray: ...


@dataclass(frozen=True)
class PipelineOptions:
    """Which MimicBrush model to run and how (the `edit` command's defaults)."""

    weights: str | None = None
    model: str | None = None
    device: str = "auto"
    dtype: str | None = None
    steps: int = EditSettings.steps
    scheduler: str = EditSettings.scheduler
    guidance: float = EditSettings.guidance
    crop: bool = EditSettings.crop
    reference_cache: bool = EditSettings.reference_cache
    reference_attention: bool = EditSettings.reference_attention  # False: the same weights with it off (an ablation)
    reference_locality: float | None = EditSettings.reference_locality
    reference_timestep: int | None = EditSettings.reference_timestep
    mean_of: int = EditSettings.mean_of  # each edit the pixel mean of this many samples


# Options a record leaves out at these values (as trained, the first step's, a plain sample), so that the records
# of runs made before each option existed still match when resuming or with `--against`.
OMITTED_AT = {"reference_locality": None, "reference_timestep": None, "mean_of": 1}


class PipelineEditor:
    """An `Editor` running `MimicBrushPipeline`; the model loads on the first edit, so a benchmark
    whose samples are all finished, or whose metric networks are missing, never loads it."""

    def __init__(self, options: PipelineOptions, shares_with: PipelineEditor | None = None) -> None:
        self.options = options
        self._pipeline = None
        self._shares_with = shares_with

    def with_reference_attention_off(self) -> PipelineEditor:
        """The same model (loaded once, shared) with its reference attention switched off."""
        return PipelineEditor(replace(self.options, reference_attention=False), shares_with=self)

    @property
    def record(self) -> dict[str, Any]:
        """What identifies this editor's results (stored with them, compared when resuming)."""
        return {key: value for key, value in asdict(self.options).items()
                if key not in ("device", "dtype") and not (key in OMITTED_AT and OMITTED_AT[key] == value)}

    @property
    def pipeline(self):
        if self._shares_with is not None:
            return self._shares_with.pipeline
        if self._pipeline is None:
            from ..loading import load_pipeline

            options = self.options
            self._pipeline = load_pipeline(weights=Path(options.weights) if options.weights else None,
                                           model=options.model, device=options.device, dtype=options.dtype)
        return self._pipeline

    def autoencode(self, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The source through the model's VAE and back, pasted as an edit: this model's ceiling."""
        return self.pipeline.autoencode(source, mask, EditSettings(crop=self.options.crop))

    def __call__(self, source: np.ndarray, reference: np.ndarray, mask: np.ndarray, *,
                 keep_shape: bool, seed: int) -> np.ndarray:
        pipeline = self.pipeline  # it refuses keep_shape without a depth model
        options = self.options
        settings = EditSettings(steps=options.steps, scheduler=options.scheduler, guidance=options.guidance,
                                keep_shape=keep_shape, crop=options.crop, seed=seed, num_samples=1, reference_cache=options.reference_cache,
                                reference_attention=options.reference_attention,
                                reference_locality=options.reference_locality, mean_of=options.mean_of,
                                reference_timestep=options.reference_timestep)
        return pipeline(source, reference, mask, settings)[0][0]


def make_pipeline_editor(weights: str | Path | None = None, model: str | None = None, device: str = "auto",
                         dtype: str | None = None, steps: int = PipelineOptions.steps,
                         guidance: float = PipelineOptions.guidance, crop: bool = PipelineOptions.crop,
                         reference_cache: bool = PipelineOptions.reference_cache,
                         scheduler: str = PipelineOptions.scheduler,
                         reference_locality: float | None = PipelineOptions.reference_locality,
                         mean_of: int = PipelineOptions.mean_of,
                         reference_timestep: int | None = PipelineOptions.reference_timestep) -> PipelineEditor:
    """The `Editor` for `--weights DIR` or `--model NAME` (as in `mimicbrush edit`), loaded lazily."""
    if weights is not None and model is not None:
        raise MimicBrushError("pass either --weights or --model, not both")
    return PipelineEditor(PipelineOptions(weights=None if weights is None else str(weights), model=model, device=device,
                                          dtype=dtype, steps=steps, scheduler=scheduler, guidance=guidance,
                                          crop=crop, reference_cache=reference_cache,
                                          reference_locality=reference_locality, mean_of=mean_of,
                                          reference_timestep=reference_timestep))
