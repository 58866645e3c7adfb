"""The `mimicbrush` Typer application and its one error boundary.

A `MimicBrushError` (bad input, missing weights, an unreadable file) and an option value that does not
parse (`typer.BadParameter`: text for a number, a value out of an option's range) reach the user as one
line, `error: ...`, and exit code 2; Ctrl-C exits with 130. `MIMICBRUSH_DEBUG=1` shows the full traceback
instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ..errors import MimicBrushError
from ..libraries import quiet_libraries  # noqa: F401 (the commands' import)

DEBUG_VARIABLE = "MIMICBRUSH_DEBUG"
error_console = Console(stderr=True)


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


class ErrorBoundary(TyperGroup):
    """The root command group: every subcommand, its option parsing included, runs inside `invoke`.

    The boundary sits here rather than around `app()` in `main()` so that Typer's test runner, which
    calls the group directly, sees what a user sees.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MimicBrushError as error:
            if debugging():
                raise
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False,
                                soft_wrap=True)
            raise typer.Exit(code=2) from None
        except typer.BadParameter as error:
            if debugging():
                raise
            error_console.print(f"[bold red]error:[/] {escape(error.format_message())}", markup=True,
                                highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            if debugging():
                raise
            error_console.print("[bold red]interrupted[/]")
            raise typer.Exit(code=130) from None


app = typer.Typer(
    name="mimicbrush",
    cls=ErrorBoundary,
    help="Reference-imitation image editing (MimicBrush): edit, prepare data, train, benchmark.",
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _register_commands() -> None:
    # Each subcommand lives in its own module; importing it registers it on `app`.
    from . import commands  # noqa: F401


def main() -> None:
    app()


_register_commands()
