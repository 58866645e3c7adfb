"""How to run an edit (`EditSettings`), without torch: the CLI reads it to build its options and answer `--help`.

Every setting is one dataclass field, and the field carries all there is to say about it (`Setting`): its
help text, the values it takes (checked here, in one place, for the library, the commands and the page),
whether a model may set its default, and whether the page shows it under "Advanced". The commands'
options, the page's controls and the command line that repeats an edit are all made from these fields.

A model folder may carry its own default settings in `edit_settings.json` (`EditSettings.save_pretrained`,
`from_model_folder`), as transformers keeps `generation_config.json`: the bundled model carries the ones
chosen for it; a folder without one (the released weights) runs at the released defaults. An edit starts
from its model's defaults; `--fast` and then every option given override them (`resolve_settings`).

`pipeline.py` runs these settings and re-exports them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import imaging
from .errors import MimicBrushError

StepCallback = Callable[[int, int], None]
MAX_SEED = 2**63 - 1  # torch generators take a 64-bit seed
EDIT_SETTINGS_FILE = "edit_settings.json"

GENERATOR_DEVICES = ("cpu", "device")
# Denoising solvers (pipeline.py builds each from the model's own scheduler config): DDIM is the released one.
SCHEDULERS = ("ddim", "dpmpp-2m", "dpmpp-2m-karras", "unipc", "euler")

# `--fast`: fewer steps of a multistep solver, reference features from the first step only. Its speed
# (`benchmark speed`) and its quality against the exact 50-step edit (`benchmark recon`) are in docs/.
FAST_PRESET = {"scheduler": "dpmpp-2m", "steps": 6, "reference_cache": True}


@dataclass(frozen=True)
class Setting:
    """What a person is told of one edit setting, and the values it takes."""

    help: str
    low: float | None = None           # inclusive bounds of a number
    high: float | None = None
    choices: tuple[str, ...] = ()      # the words a text setting takes
    none_word: str | None = None       # an optional setting: the word that stands for None on the command line
    cli: bool = True                   # False: a library setting only (no option, no page control)
    per_edit: bool = False             # True: belongs to one edit (a seed), never a model's default
    advanced: bool = False             # True: a research setting, under "Advanced" on the page
    metavar: str | None = None


def _setting(default: Any, help: str, **details: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(help, **details)})


@dataclass(frozen=True)
class EditSettings:
    """How to run an edit; the defaults are the released ones (50 DDIM steps, guidance 5)."""

    steps: int = _setting(50, "Denoising steps.", low=1, high=1000)
    scheduler: str = _setting("ddim", "Denoising solver, from the model's own noise schedule: ddim (the released "
                              "one) or another, which needs fewer steps.",
                              choices=SCHEDULERS)  # DDIM runs with eta 0, as released
    guidance: float = _setting(5.0, "Classifier-free guidance scale.", low=0.0, high=50.0)
    keep_shape: bool = _setting(False, "Keep the source's shape (depth-conditioned texture transfer; needs a model "
                                "with a depth model).", per_edit=True)
    crop: bool = _setting(True, "Edit a context crop around the mask at working resolution and paste it into the "
                          "full-resolution source (sharp small edits on large photos); --no-crop is the released "
                          "behaviour.")
    seed: int = _setting(0, "Random seed; the same seed gives the same result.", low=0, high=MAX_SEED, per_edit=True)
    num_samples: int = _setting(1, "Results per edit.", low=1, high=64, per_edit=True)
    # An estimate of the posterior mean: less of one sample's own noise, and fewer of its details.
    mean_of: int = _setting(1, "Each result is the pixel mean of this many samples, each from its own noise: less "
                            "of one sample's noise, and less of its detail.", low=1, high=16, metavar="M")
    reference_cache: bool = _setting(False, "Compute the reference features once and reuse them every step (faster, "
                                     "approximate; see --reference-timestep).", advanced=True)
    reference_steps_per_pass: int = _setting(4, "Without the cache: timesteps batched per reference U-Net pass (the "
                                             "same result; memory grows with it).", low=1, high=64, advanced=True,
                                             metavar="K")
    paste_back: str = _setting("released", "How the result goes back into the source: released (cv2 bilinear "
                               "resize, 8-bit mask blur, truncation) or lanczos (Lanczos resize, float blur, rounding: "
                               "sharper).", choices=imaging.PASTE_BACK_KERNELS, advanced=True)
    # "device" draws as the released code does: its CUDA results need it.
    generator_device: str = _setting("cpu", "Where the noise is drawn: cpu (the same result on every device) or "
                                     "device (on the GPU, as the released code: reproduces its CUDA results).",
                                     choices=GENERATOR_DEVICES, advanced=True)
    # False: the same weights with reference attention off (an ablation); the conditional rows keep the
    # reference's CLIP tokens.
    reference_attention: bool = _setting(True, "Reference attention on (off: an ablation).", cli=False)
    # Models with a positional prior (`reference_positions: local`); None: the width they trained with (0.1).
    reference_locality: float | None = _setting(
        None, "Models with a positional prior on their reference attention (the bundled one): its width in image "
        "sides ('trained': the width it trained with, 0.1). Narrower takes more from the reference's same place.",
        low=0.001, high=10.0, none_word="trained", advanced=True, metavar="W|trained")
    # None: the first step's. Features of a noisier timestep can serve every step better (measured in docs/).
    reference_timestep: int | None = _setting(
        None, "With the reference cache: the timestep whose reference features every step reads ('first': the "
        "first step's).", low=0, high=10_000, none_word="first", advanced=True, metavar="T|first")

    # A hint (`--reference-mask`, `--reference-box`): how hard reference keys outside it are pushed away.
    reference_hint_strength: float | None = _setting(
        None, "With a reference hint (--reference-mask or --reference-box): the reference-attention keys outside it "
        "get the bias -S ('full': they are left out).", low=0.0, high=100.0, none_word="full", advanced=True,
        metavar="S|full")

    @property
    def samples_drawn(self) -> int:
        """Samples denoised per edit: `mean_of` for each of the `num_samples` results."""
        return self.num_samples * self.mean_of

    def __post_init__(self) -> None:
        for name in SETTINGS:
            problem = value_problem(name, getattr(self, name))
            if problem:
                raise ValueError(f"{name} {problem}")
        if self.reference_timestep is not None and not self.reference_cache:
            raise ValueError(REFERENCE_TIMESTEP_NEEDS_CACHE)

    # ------------------------------------------------------------------ a model's defaults

    def model_defaults(self) -> dict[str, Any]:
        """The settings a model folder keeps: those a model may set, where they differ from the released ones."""
        released = EditSettings()
        return {name: getattr(self, name) for name in MODEL_SETTINGS if getattr(self, name) != getattr(released, name)}

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write these settings as `folder`'s default edit settings (`edit_settings.json`)."""
        from .outputs import write_bytes_atomically

        path = Path(folder) / EDIT_SETTINGS_FILE
        write_bytes_atomically(path, (json.dumps(self.model_defaults(), indent=2) + "\n").encode())
        return path

    @classmethod
    def from_model_folder(cls, folder: str | Path) -> EditSettings:
        """`folder`'s default edit settings: its `edit_settings.json` over the released defaults, or the released
        defaults where it has none. A file that cannot be read, or holds a setting no model may set, is one line."""
        path = Path(folder) / EDIT_SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise MimicBrushError(f"cannot read {path}: {error}") from error
        if not isinstance(values, dict):
            raise MimicBrushError(f"{path} must hold an object of settings, not {type(values).__name__}")
        unknown = sorted(set(values) - set(MODEL_SETTINGS))
        if unknown:
            raise MimicBrushError(f"{path}: {', '.join(unknown)} cannot be a model's default (known: "
                                  f"{', '.join(MODEL_SETTINGS)})")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise MimicBrushError(f"{path}: {error}") from error


SETTINGS: dict[str, Setting] = {item.name: item.metadata["setting"] for item in fields(EditSettings)}
OPTION_SETTINGS = tuple(name for name, setting in SETTINGS.items() if setting.cli)
MODEL_SETTINGS = tuple(name for name in OPTION_SETTINGS if not SETTINGS[name].per_edit)
REFERENCE_TIMESTEP_NEEDS_CACHE = ("--reference-timestep sets the timestep of the reference cache: add "
                                  "--reference-cache (or --fast)")


def flag(name: str) -> str:
    """A setting's command-line option: `--reference-timestep` for `reference_timestep`."""
    return "--" + name.replace("_", "-")


_KINDS = {item.name: {"bool": bool, "int": int, "float": float, "str": str}[str(item.type).split()[0]]
          for item in fields(EditSettings)}  # "int | None" -> int


def kind_of(name: str) -> type:
    """The Python type of a setting's values: bool, int, float or str."""
    return _KINDS[name]


def value_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for setting `name` ("must be ..."), or None: the one check of every range."""
    setting, kind = SETTINGS[name], kind_of(name)
    if value is None:
        return None if setting.none_word else "must be set, not None"
    if kind is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if setting.choices:
        return None if value in setting.choices else f"must be one of {', '.join(setting.choices)}, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, not {value!r}"
    if kind is int and not float(value).is_integer():
        return f"must be a whole number, not {value!r}"
    if not (math.isfinite(value) and setting.low <= value <= setting.high):
        return f"must be {range_text(name)}, not {value!r}"
    return None


def range_text(name: str) -> str:
    setting = SETTINGS[name]
    if kind_of(name) is int:
        return f"between {int(setting.low)} and {int(setting.high)}"
    return f"between {setting.low:g} and {setting.high:g}"


def parse_value(name: str, text: str) -> Any:
    """A setting's value from the text of its command-line option or page control; a bad one is one line."""
    setting, kind = SETTINGS[name], kind_of(name)
    text = text.strip()
    if setting.none_word and text.lower() == setting.none_word:
        value: Any = None
    elif setting.choices:
        value = text
    else:
        try:
            number = int(text) if kind is int and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise MimicBrushError(f"{flag(name)} takes a number ({range_text(name)})"
                                  + (f" or {setting.none_word!r}" if setting.none_word else "")
                                  + f", not {text!r}") from None
        value = int(number) if kind is int and float(number).is_integer() else number
    problem = value_problem(name, value)
    if problem:
        raise MimicBrushError(f"{flag(name)} {problem}")
    return value


def format_value(name: str, value: Any) -> str:
    """A setting's value as its command-line option takes it (`parse_value`'s inverse)."""
    if value is None:
        return SETTINGS[name].none_word
    return f"{value:g}" if isinstance(value, float) else str(value)


def resolve_settings(defaults: EditSettings, given: Mapping[str, Any], fast: bool = False) -> EditSettings:
    """The settings of an edit: `defaults` (its model's), then `--fast`'s preset, then every setting `given` (a
    person chose it; None too, for a setting whose "none" is a choice). A model's reference timestep applies
    only with the cache, so that turning the cache off needs no second option. What cannot combine is one
    line (`MimicBrushError`)."""
    chosen = dict(given)
    values = {**asdict(defaults), **(FAST_PRESET if fast else {}), **chosen}
    if values["reference_timestep"] is not None and not values["reference_cache"]:
        if "reference_timestep" in chosen:
            raise MimicBrushError(REFERENCE_TIMESTEP_NEEDS_CACHE)
        values["reference_timestep"] = None
    try:
        return EditSettings(**values)
    except ValueError as error:
        raise MimicBrushError(str(error)) from error


def changed_settings(settings: EditSettings, defaults: EditSettings = EditSettings()) -> dict[str, Any]:
    """The command-line settings in which `settings` differs from `defaults`, in field order."""
    return {name: getattr(settings, name) for name in OPTION_SETTINGS
            if getattr(settings, name) != getattr(defaults, name)}


def settings_words(settings: EditSettings, defaults: EditSettings = EditSettings()) -> list[str]:
    """The options that turn `defaults` into `settings` (`--steps 6 --no-crop ...`)."""
    words: list[str] = []
    for name, value in changed_settings(settings, defaults).items():
        if isinstance(value, bool):
            words.append(flag(name) if value else "--no-" + flag(name)[2:])
        else:
            words += [flag(name), format_value(name, value)]
    return words
