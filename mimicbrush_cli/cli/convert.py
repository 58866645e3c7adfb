"""`mimicbrush convert`: released weights → our safetensors model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .app import app, quiet_libraries

console = Console(stderr=True)


@app.command("convert")
def convert_command(
    source: Annotated[Path, typer.Argument(help="Released layout folder (cleansd/ + MimicBrush/).")],
    destination: Annotated[Path, typer.Argument(help="New model folder (safetensors) that `edit --weights` loads.")],
) -> None:
    """Convert the released MimicBrush weights (pickles) into a safe, faster-loading safetensors folder."""
    quiet_libraries()
    from ..loading import convert_released_weights
    from ..outputs import check_folder_output_path, check_model_output_folder

    check_folder_output_path(destination, renamed_into_place=True)  # before the ~10 GB load
    check_model_output_folder(destination)
    with console.status("converting (the released checkpoint needs ~10 GB of RAM)"):
        convert_released_weights(source, destination)
    console.print(f"[green]wrote[/] {destination}")
