"""`mimicbrush prepare`: videos (and SA-1B images) -> sharded training pairs, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..config import load_config, parse_overrides
from .app import app

if TYPE_CHECKING:
    from ..data.prepare import PrepareSummary

console = Console(stderr=True)


@app.command("prepare")
def prepare_command(
    videos: Annotated[Path | None, typer.Argument(help="Folder of videos (mp4, mov, mkv, webm, avi), searched "
                                                   "recursively.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder (resumable: rerun to continue).")] = Path("data"),
    sam: Annotated[Path | None, typer.Option("--sam", help="Folder of SA-1B-style sa_*.jpg + sa_*.json.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="YAML recipe (data_recipes/*.yaml) with PrepareConfig keys.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: --set ssim_min=0.5")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    shard_index: Annotated[int, typer.Option("--shard-index", min=0, help="This job's part (cluster array job).")] = 0,
    num_shards: Annotated[int, typer.Option("--num-shards", min=1, help="How many parts the inputs are split into.")] = 1,
    measure_decode: Annotated[bool, typer.Option("--measure-decode", help="Also time plain PyAV decoding of the same "
                                                 "videos, for comparison.")] = False,
) -> None:
    """Mine frame pairs from videos by SSIM (and object masks from SA-1B) into WebDataset tar shards."""
    from ..data.prepare import PrepareConfig, prepare, require_samples
    from ..outputs import check_folder_output_path

    config = load_config(PrepareConfig, recipe, parse_overrides(overrides or []))
    check_folder_output_path(output)
    with Progress(TextColumn("[bold]preparing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("inputs", total=None)
        summary = prepare(output, config, videos=videos, sam_images=sam, workers=workers, shard_index=shard_index,
                          num_shards=num_shards, measure_decode=measure_decode,
                          progress=lambda done, total: progress.update(task, completed=done, total=total))
    render_summary(summary)
    require_samples(summary)


def render_summary(summary: PrepareSummary) -> None:
    table = Table(title=f"prepared data in {summary.output}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("video pairs", str(summary.video_pairs))
    table.add_row("SAM samples", str(summary.sam_samples))
    table.add_row("inputs done", str(summary.inputs_done))
    table.add_row("this run: inputs / already done", f"{summary.run_inputs} / {summary.run_already_done}")
    table.add_row("this run: frames/s decoded", f"{summary.frames_per_s:.1f}")
    table.add_row("this run: pairs/s", f"{summary.pairs_per_s:.2f}")
    for stage, seconds in sorted(summary.run_stage_s.items()):
        table.add_row(f"this run: {stage} s", f"{seconds:.2f}")
    if summary.raw_decode_s:
        table.add_row("plain PyAV decode frames/s", f"{summary.raw_decode_fps:.1f}")
    for reason, count in summary.rejects.items():
        if count:
            table.add_row(f"rejected: {reason}", str(count))
    console.print(table)
    for entry in summary.skipped:
        console.print(f"[yellow]skipped[/] {entry['id']}: {entry['reason']} {entry['detail']}", highlight=False)
    console.print(f"manifest {summary.manifest}\nSSIM histogram {summary.histogram}")
