"""When the reference U-Net runs during denoising, and which feature-bank rows each step reads.

The denoising loop asks its schedule once per step, before the imitative U-Net runs
(`ReferenceSchedule.rows`): the schedule fills the feature bank when it needs to, and answers the bank
rows (E,) that hold each edit's reference features for this step, or None for no reference at all.

- `Released`: the reference U-Net every step at batch 2·E, unconditional rows included (the released loop).
- `Batched(K)`: the conditional rows only, K timesteps per pass (the same features for less overhead; ours).
- `Cached(t)`: one pass, at the first step's timestep or at `t`, read by every step (approximate).
- `Off`: nothing runs and nothing is read (reference attention off: an ablation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .settings import EditSettings

# "batched": ours (`Batched`); "released": `Released` (the same output).
REFERENCE_SCHEDULES = ("batched", "released")


class ReferenceSchedule:
    def rows(self, step: int, timesteps: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError


@dataclass
class Off(ReferenceSchedule):
    def rows(self, step: int, timesteps: torch.Tensor) -> None:
        return None


@dataclass
class Released(ReferenceSchedule):
    pipeline: object
    encoded: object

    def rows(self, step: int, timesteps: torch.Tensor) -> torch.Tensor:
        self.pipeline.run_released_reference_pass(self.encoded, timesteps[step])
        return _edits(self.pipeline, self.encoded)


@dataclass
class Batched(ReferenceSchedule):
    pipeline: object
    encoded: object
    per_pass: int

    def rows(self, step: int, timesteps: torch.Tensor) -> torch.Tensor:
        if step % self.per_pass == 0:
            self.pipeline.run_reference_pass(
                self.encoded, self.pipeline.pass_timesteps(timesteps[step:step + self.per_pass], self.per_pass))
        edits = _edits(self.pipeline, self.encoded)
        return (step % self.per_pass) * len(edits) + edits  # bank row k·E + e: edit e at the pass's k-th timestep


@dataclass
class Cached(ReferenceSchedule):
    pipeline: object
    encoded: object
    timestep: int | None = None  # None: the first step's

    def rows(self, step: int, timesteps: torch.Tensor) -> torch.Tensor:
        if step == 0:
            cached = timesteps[:1] if self.timestep is None else torch.full_like(timesteps[:1], self.timestep)
            self.pipeline.run_reference_pass(self.encoded, cached)
        return _edits(self.pipeline, self.encoded)


def _edits(pipeline, encoded) -> torch.Tensor:
    return torch.arange(encoded.reference_latents.shape[0], device=pipeline.device)  # (E,)


def reference_schedule(pipeline, encoded, settings: EditSettings, name: str = "batched") -> ReferenceSchedule:
    """The schedule `settings` ask for; `name` "released" runs the released loop (which has no cache)."""
    if name not in REFERENCE_SCHEDULES:
        raise ValueError(f"reference_schedule must be one of {REFERENCE_SCHEDULES}, not {name!r}")
    if name == "released" and settings.reference_cache:
        raise ValueError("the released reference schedule has no reference cache")
    if not settings.reference_attention:
        return Off()
    if settings.reference_cache:
        return Cached(pipeline, encoded, settings.reference_timestep)
    if name == "released":
        return Released(pipeline, encoded)
    return Batched(pipeline, encoded, settings.reference_steps_per_pass)
