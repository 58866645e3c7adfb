"""`mimicbrush edit`: repaint the masked region of a source by imitating a reference."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import MimicBrushError
from ..imaging import PASTE_BACK_KERNELS, parse_box
from ..settings import GENERATOR_DEVICES, MAX_SEED, EditSettings, edit_settings
from ..speedups import SpeedOptions
from .app import app, quiet_libraries
from .options import (DEFAULT_SCHEDULER, Device, DeviceOption, DType, DTypeOption, FastOption, Model,
                      MeanOfOption, ReferenceCacheOption, ReferenceLocalityOption, ReferenceTimestepOption,
                      SchedulerOption, Weights, dtype_name)

console = Console(stderr=True)


PasteBack = Enum("PasteBack", {kernel: kernel for kernel in PASTE_BACK_KERNELS}, type=str)
GeneratorDevice = Enum("GeneratorDevice", {device: device for device in GENERATOR_DEVICES}, type=str)


@app.command("edit")
def edit_command(
    inputs: Annotated[list[Path], typer.Argument(metavar="SRC REF MASK", help="SRC REF MASK, repeated for several edits in one call "
                                                  "(SRC REF pairs with --mask-box).", show_default=False)],
    mask_box: Annotated[str | None, typer.Option("--mask-box", metavar="X0,Y0,X1,Y1",
                                                 help="Edit this pixel box of every source (X1, Y1 exclusive) "
                                                 "instead of reading MASK files; inputs are then SRC REF pairs.",
                                                 show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Result image (default: <SRC>_edited.png "
                                                "in the current folder); several results get -<edit>-<sample> suffixes.")] = None,
    keep_shape: Annotated[bool, typer.Option("--keep-shape", help="Keep the source's shape (depth-conditioned texture transfer).")] = False,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Denoising steps.")] = EditSettings.steps,
    scheduler: SchedulerOption = DEFAULT_SCHEDULER,
    guidance: Annotated[float, typer.Option(min=0.0, help="Classifier-free guidance scale.")] = EditSettings.guidance,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed; the same seed gives the same result.")] = EditSettings.seed,
    num_samples: Annotated[int, typer.Option("--num-samples", min=1, max=64, help="Results per edit.")] = EditSettings.num_samples,
    mean_of: MeanOfOption = EditSettings.mean_of,
    crop: Annotated[bool, typer.Option("--crop/--no-crop", help="Edit a context crop around the mask at working "
                                       "resolution and paste it into the full-resolution source (sharp small edits "
                                       "on large photos); --no-crop is the released behaviour.")] = EditSettings.crop,
    invert_mask: Annotated[bool, typer.Option("--invert-mask", help="Edit the black part of the mask instead.")] = False,
    paste_back: Annotated[PasteBack, typer.Option("--paste-back", help="How the result goes back into the source: "
                                                  "released (cv2 bilinear resize, 8-bit mask blur, truncation) or "
                                                  "lanczos (Lanczos resize, float blur, rounding: sharper).")
                          ] = PasteBack(EditSettings.paste_back),
    generator_device: Annotated[GeneratorDevice, typer.Option("--generator-device", help="Where the noise is drawn: "
                                                              "cpu (the same result on every device) or device (on the "
                                                              "GPU, as the released code: reproduces its CUDA results).")
                                ] = GeneratorDevice(EditSettings.generator_device),
    reference_cache: ReferenceCacheOption = EditSettings.reference_cache,
    reference_locality: ReferenceLocalityOption = EditSettings.reference_locality,
    reference_timestep: ReferenceTimestepOption = EditSettings.reference_timestep,
    fast: FastOption = False,
    weights: Weights = None,
    model: Model = None,
    device: DeviceOption = Device.auto,
    dtype: DTypeOption = DType.auto,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC memory layout for the U-Nets and VAE "
                                                "(same output to rounding; faster on some GPUs).")] = SpeedOptions.channels_last,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the U-Nets (experimental: the first "
                                          "edit compiles for minutes, so on a CPU one edit is 1.5-1.7x slower; see "
                                          "README, Speed).")] = SpeedOptions.compile,
    cpu_offload: Annotated[bool, typer.Option("--cpu-offload", help="Keep models on the CPU and move each to the GPU "
                                              "only while it runs (small GPUs; slower).")] = SpeedOptions.cpu_offload,
    vae_tiling: Annotated[bool, typer.Option("--vae-tiling", help="Encode and decode in tiles (large images in less "
                                             "memory; output differs slightly).")] = SpeedOptions.vae_tiling,
) -> None:
    """Repaint the white part of MASK in SRC by imitating the matching part of REF."""
    from ..edit import EditJob, plan_output_paths, run_edits

    if mask_box is not None:
        box = parse_box(mask_box)
        if len(inputs) % 2:
            raise MimicBrushError("with --mask-box give SRC REF pairs (no MASK file)")
        jobs = [EditJob(inputs[index], inputs[index + 1], box) for index in range(0, len(inputs), 2)]
    else:
        if len(inputs) % 3:
            raise typer.BadParameter("give SRC REF MASK triples (or SRC REF pairs with --mask-box)", param_hint="INPUTS")
        jobs = [EditJob(*inputs[index:index + 3]) for index in range(0, len(inputs), 3)]
    settings = edit_settings(steps=steps, scheduler=scheduler.value, guidance=guidance, keep_shape=keep_shape, crop=crop,
                             seed=seed, num_samples=num_samples, mean_of=mean_of, reference_cache=reference_cache,
                             reference_locality=reference_locality, reference_timestep=reference_timestep,
                             paste_back=paste_back.value, generator_device=generator_device.value, fast=fast)
    outputs = plan_output_paths(jobs, output, num_samples)
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
