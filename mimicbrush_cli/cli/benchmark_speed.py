"""`mimicbrush benchmark speed`: the released per-step schedule against ours, and every opt-in speed-up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import MimicBrushError
from .app import quiet_libraries
from .benchmark import benchmark_app
from .options import Device

if TYPE_CHECKING:
    from ..benchmark.speed import SpeedReport

console = Console(stderr=True)


def _table(title: str, rows) -> Table:
    from ..benchmark.speed import COLUMNS, row_cells

    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for row in rows:
        table.add_row(*row_cells(row))
    return table


def _render_resolution(report: SpeedReport, resolution: int) -> None:
    out = Console()
    out.print(_table(f"{resolution} px, {report.steps} steps run, {report.device}", report.rows[resolution]))
    verdict = "[green]match[/]" if report.released_matches_ours(resolution) else "[red]DIFFER[/]"
    out.print(f"released schedule vs ours at {resolution} px: {verdict} (tolerance {report.tolerance} px)")


def _render(report: SpeedReport) -> None:
    out = Console()
    if report.compile_rows:
        out.print(_table("torch.compile, tiny size (compiling the full size on a CPU takes too long)",
                         report.compile_rows))
    out.print(f"step: steady per-step time of a 50-step edit (fastest imitative step + reference passes spread "
              f"over 50 steps); edit, N steps: the whole edit as run ({report.steps} steps"
              f"{', few because a full-size step takes seconds on a CPU' if report.device == 'cpu' else ''}); "
              f"edit, 50 steps: extrapolated; ratio: against the released schedule; max |Δ| and PSNR: the generated "
              "square against our exact default.")


@benchmark_app.command("speed")
def speed_command(
    sizes: Annotated[list[int], typer.Option("--sizes", help="Working resolutions in px (multiples of 64); "
                                             "repeat the option for several.")] = [256, 512],  # noqa: B006
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Denoising steps run per edit (the released "
                                       "count, 50, is extrapolated).")] = 4,
    device: Annotated[Device, typer.Option(help="Where to run.")] = Device.auto,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads per run (0: torch's default).")] = 0,
    tolerance: Annotated[int, typer.Option(min=0, help="Largest pixel difference at which the released "
                                           "schedule and ours count as the same output.")] = 2,
    compile_check: Annotated[bool, typer.Option("--compile-check/--no-compile-check",
                                                help="Also measure torch.compile (on the tiny size on a CPU).")] = True,
    model_size: Annotated[str, typer.Option("--model-size", help="released (the real architecture) or tiny "
                                            "(a quick check that everything runs).")] = "released",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Also write the tables as markdown here.")] = None,
    throughput: Annotated[bool, typer.Option("--throughput/--no-throughput", help="Also measure `prepare` against "
                                             "plain decoding (in turn, repeated: median and range), and training "
                                             "steps/s of the tiny model.")] = True,
) -> None:
    """Time the released schedule and ours on the full-size architecture with random weights (no download),
    each option alone, each configuration in a fresh process; check that the outputs match."""
    if output is not None and output.suffix != ".md":
        raise MimicBrushError(f"--output must be a .md file, got {output}")
    from ..benchmark.speed import run_speed_benchmark
    from ..benchmark.throughput import measure_throughput
    from ..outputs import write_bytes_atomically

    quiet_libraries()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("building", total=None)
        report = run_speed_benchmark(tuple(sizes), steps=steps, device=device.value, threads=threads,
                                     compile_check=compile_check, tolerance=tolerance, size=model_size,
                                     on_resolution=_render_resolution,
                                     progress=lambda name, done, total: progress.update(
                                         task, description=name, completed=done, total=total))
    _render(report)
    markdown = report.to_markdown()
    if throughput:
        with console.status("measuring prepare and training throughput"):
            figures = measure_throughput()
        Console().print(Markdown("### Data and training throughput\n\n" + figures.to_markdown()))
        markdown += "\n\n### Data and training throughput\n\n" + figures.to_markdown() + "\n"
    if output is not None:
        write_bytes_atomically(output, markdown.encode())
        console.print(f"[green]wrote[/] {output}")
