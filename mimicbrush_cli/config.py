"""Typed, frozen dataclass configs loaded strictly from YAML.

Every config in the project (prepare recipes, training runs, benchmarks) is a frozen dataclass whose
defaults are written once, in the class. `load_config` builds one from a YAML file or a mapping and
rejects unknown keys and wrongly-typed values with a one-line `MimicBrushError` naming the key, so a
typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .errors import MimicBrushError, first_line

ConfigT = TypeVar("ConfigT")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable or non-mapping file is a user error."""
    path = Path(path)
    if not path.is_file():
        raise MimicBrushError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise MimicBrushError(f"cannot read config {path}{where}: {error.problem or error.context}") from error
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise MimicBrushError(f"cannot read config {path}: {first_line(error)}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MimicBrushError(f"config {path} must be a YAML mapping, got {type(data).__name__}")
    return data


def parse_value(text: str) -> Any:
    """A `--set` value: a YAML scalar, except that `1e-4` is a number (YAML 1.1 would keep it a string)."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """`--set KEY=VALUE` options as {dotted key: value text}; `load_config` parses the values."""
    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise MimicBrushError(f"--set expects KEY=VALUE (e.g. optimizer.lr=1e-4), got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def load_config(cls: type[ConfigT], source: str | Path | Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | None = None) -> ConfigT:
    """Build dataclass `cls` from a YAML file or mapping, then apply dotted-key `overrides`.

    `overrides` maps dotted keys (`"optimizer.lr"`) to values, as given on a command line; strings
    are parsed by `parse_value`, so `--set optimizer.lr=1e-4` yields a float.
    """
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        data = read_yaml(source)
    for dotted_key, value in (overrides or {}).items():
        _set_dotted(data, dotted_key, parse_value(value) if isinstance(value, str) else value)
    return _build(cls, data, prefix="")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-serialisable dict of a config (tuples become lists, paths strings)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, Path):
            return str(value)
        return value
    return plain(config)


def _set_dotted(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MimicBrushError(f"cannot set {dotted_key}: {part} is not a section")
        node = child
    node[leaf] = value


def _build(cls: type[ConfigT], data: Any, prefix: str) -> ConfigT:
    if not isinstance(data, Mapping):
        raise MimicBrushError(f"config key {prefix.rstrip('.') or '<root>'} must be a mapping")
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise MimicBrushError(
            f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})")
    hints = get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    return cls(**values)


def _coerce(annotation: Any, value: Any, key: str) -> Any:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (arg for arg in args if arg is not type(None)):
            try:
                return _coerce(option, value, key)
            except MimicBrushError as error:
                errors.append(str(error))
        raise MimicBrushError(errors[0] if errors else f"config key {key} has an invalid value")
    if origin is Literal:
        if value not in args:
            raise MimicBrushError(f"config key {key} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise MimicBrushError(f"config key {key} must be a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise MimicBrushError(f"config key {key} must have {len(args)} items, got {len(value)}")
            return tuple(_coerce(arg, item, f"{key}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
        item_type = args[0] if args else Any
        items = [_coerce(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if not isinstance(value, bool):
            raise MimicBrushError(f"config key {key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MimicBrushError(f"config key {key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-5` (no dot) as a string; a number is what was meant.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MimicBrushError(f"config key {key} must be a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # a whole number beyond any float
            raise MimicBrushError(f"config key {key} is too large a number") from None
    if annotation is str:
        if not isinstance(value, str):
            raise MimicBrushError(f"config key {key} must be a string, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, (str, Path)):
            raise MimicBrushError(f"config key {key} must be a path, got {value!r}")
        return Path(value)
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")
