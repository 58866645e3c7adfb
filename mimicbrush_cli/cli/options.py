"""Options shared by the commands that run a model: which weights, which device, which precision, and every
edit setting (`edit_setting_options`, made from the fields of `EditSettings`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import MimicBrushError
from ..model_names import BUNDLED_MODEL_DIR, MODEL_HELP
from ..settings import (FAST_PRESET, OPTION_SETTINGS, SETTINGS, EditSettings, flag, format_value, kind_of, parse_value,
                        range_text, resolve_settings)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class DType(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


Weights = Annotated[Path | None, typer.Option(help="Local weights folder: our format or the released layout.")]
Model = Annotated[str | None, typer.Option(help=MODEL_HELP)]
DeviceOption = Annotated[Device, typer.Option(help="Where to run.")]
DTypeOption = Annotated[DType, typer.Option(help="Compute precision (auto: fp16 on GPU, fp32 on CPU).")]
FAST_HELP = ("A measured faster preset on top of the model's defaults: " + " ".join(
    flag(key) + ("" if value is True else f" {value}") for key, value in FAST_PRESET.items())
    + "; options given as well override it.")

RELEASED_DEFAULTS_HELP = ("Start from the released defaults (50 DDIM steps, guidance 5, ...) instead of the model's own "
                          "edit settings.")


def dtype_name(dtype: DType) -> str | None:
    """The `--dtype` value as `loading.load_pipeline` takes it (None: the device's default)."""
    return None if dtype is DType.auto else dtype.value


@dataclass(frozen=True)
class ChosenSettings:
    """The edit settings a person gave on the command line (parsed and checked), and `--fast`."""

    given: dict[str, Any]
    fast: bool = False
    released_defaults: bool = False  # start from the released defaults, not the model's

    def resolve(self, defaults: EditSettings) -> EditSettings:
        """The edit's settings: the model's `defaults` (or the released ones), then `--fast`, then what was given."""
        return resolve_settings(EditSettings() if self.released_defaults else defaults, self.given, self.fast)


def _bundled_defaults() -> EditSettings | None:
    try:
        return EditSettings.from_model_folder(BUNDLED_MODEL_DIR)
    except MimicBrushError:
        return None  # `edit` says what is wrong with the file; `--help` still answers


def _default_text(name: str, bundled: EditSettings | None) -> str:
    setting, released = SETTINGS[name], getattr(EditSettings(), name)
    word = lambda value: ("on" if value else "off") if isinstance(value, bool) else format_value(name, value)  # noqa: E731
    if setting.per_edit:
        return f"[default: {word(released)}]"
    text = f"[default: the model's edit settings; released: {word(released)}"
    if bundled is not None and getattr(bundled, name) != released:
        text += f"; bundled demo model: {word(getattr(bundled, name))}"
    return text + "]"


def _option(name: str, bundled: EditSettings | None) -> Any:
    """The Typer option of setting `name`: a flag pair for a yes/no setting, else text that `parse_value` reads
    (so that a bad value is one line from the one check). Its default, None, means "not given"."""
    setting, kind = SETTINGS[name], kind_of(name)
    help_text = f"{setting.help} {_default_text(name, bundled)}"
    if kind is bool:
        return Annotated[bool | None, typer.Option(f"{flag(name)}/--no-{flag(name)[2:]}", help=help_text,
                                                   show_default=False)]
    if setting.choices:
        metavar = "[" + "|".join(setting.choices) + "]"
    else:
        metavar = (setting.metavar or ("INTEGER" if kind is int else "NUMBER")) + f" ({range_text(name)})"
    return Annotated[str | None, typer.Option(flag(name), metavar=metavar, help=help_text, show_default=False)]


def edit_setting_options(exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Give a command an option for every edit setting (but `exclude`) and `--fast`, in the place of its
    parameter `chosen`, which receives them as `ChosenSettings`. A new `EditSettings` field is a new option of
    every such command (edit, benchmark texture|part|recon), with no change here."""
    names = [name for name in OPTION_SETTINGS if name not in exclude]
    bundled = _bundled_defaults()

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        parameters = []
        for parameter in signature.parameters.values():
            if parameter.name == "chosen":
                parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                                 annotation=_option(name, bundled)) for name in names]
                parameters.append(inspect.Parameter("fast", inspect.Parameter.KEYWORD_ONLY, default=False,
                                                    annotation=Annotated[bool, typer.Option("--fast", help=FAST_HELP)]))
                parameters.append(inspect.Parameter("released_defaults", inspect.Parameter.KEYWORD_ONLY, default=False,
                                                    annotation=Annotated[bool, typer.Option(
                                                        "--released-defaults", help=RELEASED_DEFAULTS_HELP)]))
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(command)
        def with_settings(**values: Any) -> Any:
            given, fast, released_defaults = {}, values.pop("fast"), values.pop("released_defaults")
            for name in names:
                value = values.pop(name)
                if value is not None:
                    given[name] = value if isinstance(value, bool) else parse_value(name, value)
            return command(**values, chosen=ChosenSettings(given, fast, released_defaults))

        with_settings.__signature__ = signature.replace(parameters=parameters)
        return with_settings

    return decorate
