"""`mimicbrush edit`: repaint the masked region of a source by imitating a reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import MimicBrushError
from ..imaging import parse_box
from ..model_names import edit_defaults
from ..speedups import SpeedOptions
from .app import app, quiet_libraries
from .options import (ChosenSettings, Device, DeviceOption, DType, DTypeOption, Model, Weights, dtype_name,
                      edit_setting_options)

console = Console(stderr=True)


@app.command("edit")
@edit_setting_options()
def edit_command(
    inputs: Annotated[list[Path], typer.Argument(metavar="SRC REF MASK", help="SRC REF MASK, repeated for several edits in one call "
                                                  "(SRC REF pairs with --mask-box).", show_default=False)],
    mask_box: Annotated[str | None, typer.Option("--mask-box", metavar="X0,Y0,X1,Y1",
                                                 help="Edit this pixel box of every source (X1, Y1 exclusive) "
                                                 "instead of reading MASK files; inputs are then SRC REF pairs.",
                                                 show_default=False)] = None,
    reference_mask: Annotated[Path | None, typer.Option(
        "--reference-mask", metavar="FILE", help="A hint: white = the part of every reference to copy from (the "
        "reference's size); reference attention leaves the rest out (see --reference-hint-strength) and CLIP sees "
        "the region's square crop.", show_default=False)] = None,
    reference_box: Annotated[str | None, typer.Option(
        "--reference-box", metavar="X0,Y0,X1,Y1", help="A hint as a pixel box of every reference (X1, Y1 "
        "exclusive), as --reference-mask.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Result image (default: <SRC>_edited.png "
                                                "in the current folder); several results get -<edit>-<sample> suffixes.")] = None,
    invert_mask: Annotated[bool, typer.Option("--invert-mask", help="Edit the black part of the mask instead.")] = False,
    chosen: ChosenSettings = None,
    weights: Weights = None,
    model: Model = None,
    device: DeviceOption = Device.auto,
    dtype: DTypeOption = DType.auto,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory layout for the U-Nets and VAE "
                                                "(same output to rounding; faster on some GPUs).")] = SpeedOptions.channels_last,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the U-Nets (experimental: the first "
                                          "edit compiles for minutes, so on a CPU one edit is 1.5-1.7x slower; see "
                                          "docs/speed.md).")] = SpeedOptions.compile,
    cpu_offload: Annotated[bool, typer.Option("--cpu-offload", help="Keep models on the CPU and move each to the GPU "
                                              "only while it runs (small GPUs; slower).")] = SpeedOptions.cpu_offload,
    vae_tiling: Annotated[bool, typer.Option("--vae-tiling", help="Encode and decode in tiles (large images in less "
                                             "memory; output differs slightly).")] = SpeedOptions.vae_tiling,
) -> None:
    """Repaint the white part of MASK in SRC by imitating the matching part of REF.

    Every edit setting defaults to the model's own (a model folder's edit_settings.json: the bundled model's
    chosen settings; the released ones for the released weights); an option given overrides it."""
    from ..edit import EditJob, plan_output_paths, run_edits

    if reference_mask is not None and reference_box is not None:
        raise MimicBrushError("give one hint: --reference-mask or --reference-box, not both")
    region = parse_box(reference_box, "reference box") if reference_box is not None else reference_mask
    if region is None and "reference_hint_strength" in chosen.given:
        raise MimicBrushError("--reference-hint-strength sets how a reference hint acts: give one with "
                              "--reference-mask or --reference-box")
    if mask_box is not None:
        box = parse_box(mask_box)
        if len(inputs) % 2:
            raise MimicBrushError("with --mask-box give SRC REF pairs (no MASK file)")
        jobs = [EditJob(inputs[index], inputs[index + 1], box, region) for index in range(0, len(inputs), 2)]
    else:
        if len(inputs) % 3:
            raise typer.BadParameter("give SRC REF MASK triples (or SRC REF pairs with --mask-box)", param_hint="INPUTS")
        jobs = [EditJob(*inputs[index:index + 3], region) for index in range(0, len(inputs), 3)]
    settings = chosen.resolve(edit_defaults(weights, model))
    outputs = plan_output_paths(jobs, output, settings.num_samples)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("loading model", total=None)

        def on_step(step: int, total: int) -> None:
            progress.update(task, description="denoising", completed=step, total=total)

        written = run_edits(jobs, settings, outputs, weights=weights, model=model, device=device.value,
                            dtype=dtype_name(dtype), invert_mask=invert_mask,
                            callback=on_step, speed=SpeedOptions(channels_last, compile, cpu_offload, vae_tiling),
                            before_loading=quiet_libraries)
    for path in written:
        console.print(f"[green]wrote[/] {path}")
