from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mimicbrush_cli.config import load_config, read_yaml
from mimicbrush_cli.errors import MimicBrushError


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-4
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    steps: int = 10
    path: Path | None = None


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  lr: 1e-5\n")
    assert load_config(Outer, path).inner.lr == 1e-5


def test_unknown_key_names_its_full_path():
    with pytest.raises(MimicBrushError, match="unknown config key inner.lrr"):
        load_config(Outer, {"inner": {"lrr": 1}})


def test_wrong_type_is_a_user_error():
    with pytest.raises(MimicBrushError, match="steps must be an integer"):
        load_config(Outer, {"steps": "many"})


def test_dotted_overrides_are_parsed_as_yaml():
    config = load_config(Outer, {}, {"inner.lr": "3e-4", "steps": "7", "path": "runs/x", "inner.names": "[a, b]"})
    assert config.inner.lr == 3e-4 and config.steps == 7 and config.path == Path("runs/x")
    assert config.inner.names == ("a", "b")


def test_a_yaml_syntax_error_names_its_line_and_column(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("sample_fps: 2\nssim_min: [0.2\nssim_max: 0.8\n")
    with pytest.raises(MimicBrushError) as caught:
        read_yaml(path)
    assert str(caught.value).startswith(f"cannot read config {path} at line 3, column 9: ")
    assert "\n" not in str(caught.value)


def test_a_whole_number_beyond_any_float_is_a_user_error():
    with pytest.raises(MimicBrushError, match="config key inner.lr is too large a number"):
        load_config(Outer, {}, {"inner.lr": "1" + "0" * 400})
