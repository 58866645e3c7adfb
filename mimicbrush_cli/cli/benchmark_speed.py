"""`mimicbrush benchmark speed`: the released per-step schedule against ours, and every opt-in speed-up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from ..errors import MimicBrushError
from .app import quiet_libraries
from .benchmark import benchmark_app, progress_reporter
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
    noise = report.noise(resolution)
    if noise is not None:
        out.print(f"noise at {resolution} px: repeats of one exact configuration differ by up to {noise:.0%} of "
                  "their median")


def _render(report: SpeedReport) -> None:
    Console().print(
        f"{report.repeats} interleaved repeats, median [min–max]. step: steady per-step time of the configuration's "
        "edit (fastest imitative step + reference passes spread over its steps); first step: as run (torch.compile "
        f"compiles in it); edit, N steps: the whole edit as run ({report.steps} steps"
        f"{', few because a full-size step takes seconds on a CPU' if report.device == 'cpu' else ''}); edit, full: "
        "extrapolated to the configuration's step count (50, the released one; fewer for --fast); ratio: against the "
        "released schedule in the same round; max |Δ| and PSNR: the generated square against our exact default, "
        "with the steps run.", highlight=False, markup=False)


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
    repeats: Annotated[int, typer.Option(min=1, help="Measurements of each configuration, interleaved with the "
                                         "others'.")] = 3,
    only: Annotated[list[str] | None, typer.Option("--only", help="Measure only these configurations besides the "
                                                   "released schedule and ours (repeat the option): reference-cache, "
                                                   "dtype, channels-last, vae-tiling, cpu-offload, compile, fast.",
                                                   show_default=False)] = None,
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
    from ..benchmark.speed import run_speed_benchmark, speed_configs
    from ..benchmark.throughput import measure_throughput
    from ..loading import resolve_device
    from ..outputs import write_bytes_atomically

    quiet_libraries()
    try:
        configs = speed_configs(resolve_device(device.value).type, tuple(only or ()))
    except ValueError as error:
        raise MimicBrushError(str(error)) from error
    with progress_reporter("speed") as report_progress:
        report = run_speed_benchmark(tuple(sizes), steps=steps, device=device.value, threads=threads, configs=configs,
                                     repeats=repeats, tolerance=tolerance, size=model_size,
                                     on_resolution=_render_resolution,
                                     progress=lambda name, done, total: report_progress(done, total, name))
    _render(report)
    markdown = report.to_markdown()
    if throughput:
        if not console.is_terminal:  # a status spinner shows nothing in a log
            console.print("measuring prepare and training throughput")
        with console.status("measuring prepare and training throughput"):
            figures = measure_throughput()
        Console().print(Markdown("### Data and training throughput\n\n" + figures.to_markdown()))
        markdown += "\n\n### Data and training throughput\n\n" + figures.to_markdown() + "\n"
    if output is not None:
        write_bytes_atomically(output, markdown.encode())
        console.print(f"[green]wrote[/] {output}")
