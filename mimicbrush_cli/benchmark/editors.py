"""What the benchmark drives: any callable that edits one image, and the MimicBrush pipeline as one.

An `Editor` takes a uint8 (H, W, 3) source, a uint8 (h, w, 3) reference and a bool (H, W) mask
(True = repaint) and returns a uint8 (H, W, 3) result; `keep_shape` asks for depth-conditioned
texture transfer and `seed` fixes the noise; an editor that takes a reference hint also takes
`reference_region`, a bool (h, w) mask of the reference (True = copy from here). Tests drive the runner with trivial editors; the
CLI drives it with `PipelineEditor`: a model (`ModelSpec`) and its `EditSettings`.
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
class ModelSpec:
    """Which MimicBrush model to run, where: `--weights DIR` or `--model NAME`, `--device`, `--dtype`."""

    weights: str | None = None
    model: str | None = None
    device: str = "auto"
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.weights is not None and self.model is not None:
            raise MimicBrushError("pass either --weights or --model, not both")

    def edit_defaults(self) -> EditSettings:
        from ..model_names import edit_defaults

        return edit_defaults(None if self.weights is None else Path(self.weights), self.model)

    def load(self):
        from ..loading import load_pipeline

        return load_pipeline(weights=Path(self.weights) if self.weights else None, model=self.model,
                             device=self.device, dtype=self.dtype)


# The settings a results record always holds (those it held before any other existed); the others it holds only
# where they differ from the released defaults, so that the records of runs made before a setting existed still
# match when resuming or with `--against`. Per-edit settings (the seed, keep-shape) are the benchmark's own.
RECORDED_ALWAYS = ("steps", "scheduler", "guidance", "crop", "reference_cache", "reference_attention")
NOT_RECORDED = ("keep_shape", "seed", "num_samples")


class PipelineEditor:
    """An `Editor` running `MimicBrushPipeline` at `settings`; the model loads on the first edit, so a benchmark
    whose samples are all finished, or whose metric networks are missing, never loads it."""

    def __init__(self, model: ModelSpec, settings: EditSettings, shares_with: PipelineEditor | None = None) -> None:
        self.model = model
        self.settings = replace(settings, num_samples=1)
        self._pipeline = None
        self._shares_with = shares_with

    def varied(self, **changes: Any) -> PipelineEditor:
        """The same model (loaded once, shared) at these settings changed."""
        return PipelineEditor(self.model, replace(self.settings, **changes), shares_with=self)

    def with_reference_attention_off(self) -> PipelineEditor:
        """The same model with its reference attention switched off."""
        return self.varied(reference_attention=False)

    @property
    def record(self) -> dict[str, Any]:
        """What identifies this editor's results (stored with them, compared when resuming)."""
        released = asdict(EditSettings())
        settings = {name: value for name, value in asdict(self.settings).items()
                    if name not in NOT_RECORDED and (name in RECORDED_ALWAYS or value != released[name])}
        return {"weights": self.model.weights, "model": self.model.model, **settings}

    @property
    def pipeline(self):
        if self._shares_with is not None:
            return self._shares_with.pipeline
        if self._pipeline is None:
            self._pipeline = self.model.load()
        return self._pipeline

    def autoencode(self, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The source through the model's VAE and back, pasted as an edit: this model's ceiling."""
        return self.pipeline.autoencode(source, mask, self.settings)

    def __call__(self, source: np.ndarray, reference: np.ndarray, mask: np.ndarray, *,
                 keep_shape: bool, seed: int, reference_region: np.ndarray | None = None) -> np.ndarray:
        pipeline = self.pipeline  # it refuses keep_shape without a depth model
        return pipeline(source, reference, mask, replace(self.settings, keep_shape=keep_shape, seed=seed),
                        reference_regions=[reference_region])[0][0]


def make_pipeline_editor(weights: str | Path | None = None, model: str | None = None, device: str = "auto",
                         dtype: str | None = None, settings: EditSettings | None = None) -> PipelineEditor:
    """The `Editor` for `--weights DIR` or `--model NAME` (as in `mimicbrush edit`), loaded lazily, at `settings`
    (default: the model's own edit settings)."""
    spec = ModelSpec(weights=None if weights is None else str(weights), model=model, device=device, dtype=dtype)
    return PipelineEditor(spec, spec.edit_defaults() if settings is None else settings)
