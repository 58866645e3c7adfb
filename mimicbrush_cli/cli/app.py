"""The `mimicbrush` Typer application and the user-error boundary shared by every command."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import MimicBrushError

app = typer.Typer(
    name="mimicbrush",
    help="Reference-imitation image editing (MimicBrush): edit, prepare data, train, benchmark.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
error_console = Console(stderr=True)

CommandT = TypeVar("CommandT", bound=Callable[..., Any])


def reports_user_errors(command: CommandT) -> CommandT:
    """Turn a `MimicBrushError` (or Ctrl-C) raised inside a command into one line and exit code 2 (130)."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MimicBrushError as error:
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False,
                                soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            error_console.print("[bold red]interrupted[/]")
            raise typer.Exit(code=130) from None
    return wrapper  # type: ignore[return-value]


def _quiet_libraries() -> None:
    """Library chatter (dtype notes, backend fallbacks) is not for CLI users; errors still show."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def _register_commands() -> None:
    # Each subcommand lives in its own module; importing it registers it on `app`.
    from . import commands  # noqa: F401


def main() -> None:
    app()


_quiet_libraries()
_register_commands()
