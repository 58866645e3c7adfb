"""The CLI surface: one error boundary for every command, and help that reads right."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mimicbrush_cli.cli import prepare as prepare_module
from mimicbrush_cli.cli.app import app
from mimicbrush_cli.errors import MimicBrushError

runner = CliRunner()
WIDE = {"terminal_width": 300, "max_content_width": 300}  # one help entry per line


def run_module(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mimicbrush_cli", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=300)


def test_a_user_error_is_one_line_on_stderr_and_exit_code_2(tmp_path):
    result = run_module("benchmark", "speed", "-o", str(tmp_path / "results.txt"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: --output must be a .md file, got {tmp_path / 'results.txt'}"]
    assert result.stdout == ""


def test_mimicbrush_debug_shows_the_traceback_instead(tmp_path):
    result = run_module("benchmark", "speed", "-o", str(tmp_path / "results.txt"), MIMICBRUSH_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "MimicBrushError" in result.stderr


def test_the_test_runner_sees_the_same_boundary(tmp_path, monkeypatch):
    args = ["benchmark", "speed", "-o", str(tmp_path / "results.txt")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --output must be a .md file, got {tmp_path / 'results.txt'}"
    monkeypatch.setenv("MIMICBRUSH_DEBUG", "1")
    assert isinstance(runner.invoke(app, args).exception, MimicBrushError)


def test_ctrl_c_exits_130(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "load_config", interrupted)
    result = runner.invoke(app, ["prepare", str(tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 130
    assert result.output.strip() == "interrupted"


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(prepare_module, "load_config", broken)
    result = runner.invoke(app, ["prepare", str(tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert isinstance(result.exception, ZeroDivisionError)


@pytest.mark.parametrize("command", [[], ["edit"], ["prepare"], ["train"], ["serve"], ["benchmark", "texture"],
                                     ["benchmark", "recon"], ["benchmark", "speed"]])
def test_flags_show_no_value_placeholder(command):
    result = runner.invoke(app, [*command, "--help"], **WIDE)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help " in result.output


def test_edit_help_shows_flags_as_flags():
    lines = runner.invoke(app, ["edit", "--help"], **WIDE).output.splitlines()
    keep_shape = next(line for line in lines if line.strip().startswith("--keep-shape"))
    crop = next(line for line in lines if line.strip().startswith("--crop"))
    assert keep_shape.split()[:4] == ["--keep-shape", "/", "--no-keep-shape", "Keep"]
    assert crop.split()[:4] == ["--crop", "/", "--no-crop", "Edit"]


@pytest.mark.parametrize("command", [["edit"], ["serve"], ["benchmark", "part"], ["benchmark", "recon"]])
def test_model_help_lists_every_model_name(command):
    from mimicbrush_cli.loading import MODEL_NAMES

    output = runner.invoke(app, [*command, "--help"], **WIDE).output
    model = next(line for line in output.splitlines() if line.strip().startswith("--model"))
    assert [name for name in MODEL_NAMES if name not in model.replace(",", " ").split()] == []


def test_every_model_size_is_a_model_name():
    from mimicbrush_cli.loading import MODEL_NAMES
    from mimicbrush_cli.models.build import MODEL_SIZES

    assert sorted(f"random-{size}" for size in MODEL_SIZES) == sorted(name for name in MODEL_NAMES
                                                                       if name.startswith("random-"))


# Asks every command of the tree for its help in a fresh interpreter, then names the heavy libraries it imported.
HELP_IMPORTS = """
import contextlib, io, sys
import click
from typer.main import get_command
from mimicbrush_cli.cli.app import app

def walk(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, [*path, name])

root = get_command(app)
helped = []
for path in walk(root, []):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        root.main([*path, "--help"], prog_name="mimicbrush", standalone_mode=False)
    helped.append(" ".join(path))
print(helped)
print(sorted(name for name in ("torch", "diffusers", "transformers") if name in sys.modules))
"""


def test_help_of_every_command_imports_no_torch_diffusers_or_transformers():
    result = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    helped, imported = result.stdout.splitlines()
    assert {"", "edit", "prepare", "train", "serve", "convert", "benchmark", "benchmark texture", "benchmark part",
            "benchmark recon", "benchmark speed"} <= set(ast.literal_eval(helped))
    assert imported == "[]"


@pytest.mark.parametrize("args", [["edit", "a.png", "b.png"], ["edit", "missing.png", "missing.png", "missing.png"],
                                  ["edit", "--mask-box", "1,2,3", "a.png", "b.png"],
                                  ["benchmark", "speed", "-o", "results.txt"],
                                  ["train", "--config", "missing.yaml"],
                                  ["train", "--config", "missing.yaml", "--set", "steps"],
                                  ["prepare", ".", "-o", "out", "--set", "inputs_per_shard=0"]])
def test_a_one_line_error_imports_no_torch(args):
    script = ("import sys\nfrom mimicbrush_cli.cli.app import main\n"
              f"sys.argv = ['mimicbrush', *{args!r}]\n"
              "try:\n    main()\nexcept SystemExit as exit:\n    print('exit', exit.code, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.stdout.splitlines() == ["exit 2 False"], result.stderr
