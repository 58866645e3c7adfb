"""The promise to a user who gives bad input: exit code 2 and exactly one line, `error: ...` (no traceback)."""

from __future__ import annotations

from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app

runner = CliRunner()


def assert_one_error_line(result) -> str:
    """The one line of a refused command's `CliRunner` result."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def one_error_line(*args) -> str:
    """Run `mimicbrush ARGS...`; it must be refused in one line, which is returned."""
    return assert_one_error_line(runner.invoke(app, [str(arg) for arg in args]))
