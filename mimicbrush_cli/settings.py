"""How to run an edit (`EditSettings`), without torch: the CLI reads its defaults to answer `--help`.

`pipeline.py` runs these settings and re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import imaging
from .errors import MimicBrushError

StepCallback = Callable[[int, int], None]
MAX_SEED = 2**63 - 1  # torch generators take a 64-bit seed


GENERATOR_DEVICES = ("cpu", "device")
# Denoising solvers (pipeline.py builds each from the model's own scheduler config): DDIM is the released one.
SCHEDULERS = ("ddim", "dpmpp-2m", "dpmpp-2m-karras", "unipc", "euler")

# `--fast`: fewer steps of a multistep solver, reference features from the first step only. Its speed
# (`benchmark speed`) and its quality against the exact 50-step edit (`benchmark recon`) are in the README.
FAST_PRESET = {"scheduler": "dpmpp-2m", "steps": 6, "reference_cache": True}
REFERENCE_TIMESTEP_NEEDS_CACHE = ("--reference-timestep sets the timestep of the reference cache: add "
                                  "--reference-cache (or --fast)")


@dataclass(frozen=True)
class EditSettings:
    """How to run an edit; the defaults are the released ones (50 DDIM steps, guidance 5)."""

    steps: int = 50
    scheduler: str = "ddim"  # SCHEDULERS; DDIM runs with eta 0, as released
    guidance: float = 5.0
    keep_shape: bool = False
    crop: bool = True
    seed: int = 0
    num_samples: int = 1
    # Each result is the pixel mean of this many samples, each from its own noise: an estimate of the
    # posterior mean, with less of one sample's own noise and fewer of its details. 1: a plain sample.
    mean_of: int = 1
    reference_cache: bool = False  # opt-in approximation: reference features computed once (see reference_timestep)
    reference_steps_per_pass: int = 4  # >= 1; exact: timesteps batched per reference U-Net pass (memory grows with it)
    paste_back: str = "released"   # imaging.PASTE_BACK_KERNELS: "released" or "lanczos" (sharper, rounds to nearest)
    # "cpu": noise from a CPU generator, the same on every device; "device": from a generator on the
    # pipeline's device in the model's dtypes, as the released code draws (its CUDA results need this).
    generator_device: str = "cpu"
    reference_attention: bool = True  # False: the same weights with reference attention off (an ablation);
                                      # the conditional rows keep the reference's CLIP tokens
    # Models with a positional prior (`reference_positions: local`): its width in image sides for this edit;
    # None: the width they trained with (0.1). Narrower takes more from the reference's same place.
    reference_locality: float | None = None
    # With the reference cache: the timestep of the reference features that every step reads; None: the
    # first step's. Features of a noisier timestep can serve every step better (the README has it measured).
    reference_timestep: int | None = None

    @property
    def samples_drawn(self) -> int:
        """Samples denoised per edit: `mean_of` for each of the `num_samples` results."""
        return self.num_samples * self.mean_of

    def __post_init__(self) -> None:
        if self.paste_back not in imaging.PASTE_BACK_KERNELS:
            raise ValueError(f"paste_back must be one of {imaging.PASTE_BACK_KERNELS}, not {self.paste_back!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {self.scheduler!r}")
        if self.num_samples < 1 or self.mean_of < 1:
            raise ValueError(f"num_samples and mean_of must be >= 1, not {self.num_samples} and {self.mean_of}")
        if self.reference_locality is not None and not self.reference_locality > 0:
            raise ValueError(f"reference_locality must be > 0, not {self.reference_locality}")
        if self.reference_timestep is not None:
            if not self.reference_cache:
                raise ValueError(REFERENCE_TIMESTEP_NEEDS_CACHE)
            if self.reference_timestep < 0:
                raise ValueError(f"reference_timestep must be >= 0, not {self.reference_timestep}")
        if self.generator_device not in GENERATOR_DEVICES:
            raise ValueError(f"generator_device must be one of {GENERATOR_DEVICES}, not {self.generator_device!r}")


def edit_settings(*, fast: bool = False, **values) -> EditSettings:
    """`EditSettings` from a command's or the page's options, `--fast` applied; what they cannot combine is
    one line (`MimicBrushError`)."""
    if values.get("reference_timestep") is not None and not (values.get("reference_cache") or fast):
        raise MimicBrushError(REFERENCE_TIMESTEP_NEEDS_CACHE)
    return EditSettings(**{**values, **(FAST_PRESET if fast else {})})
