"""Options shared by the commands that run a model: which weights, which device, which precision."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..settings import FAST_PRESET, SCHEDULERS, EditSettings


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class DType(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


# Every name of `loading.MODEL_NAMES`, described.
MODEL_HELP = ("demo (bundled, default), released (Hugging Face Hub), random-tiny, random-demo, random-released "
              "(random weights of that size: noise, for tests and speed checks).")

Weights = Annotated[Path | None, typer.Option(help="Local weights folder: our format or the released layout.")]
Model = Annotated[str | None, typer.Option(help=MODEL_HELP)]
DeviceOption = Annotated[Device, typer.Option(help="Where to run.")]
DTypeOption = Annotated[DType, typer.Option(help="Compute precision (auto: fp16 on GPU, fp32 on CPU).")]

Scheduler = Enum("Scheduler", {name: name for name in SCHEDULERS}, type=str)
SchedulerOption = Annotated[Scheduler, typer.Option(
    "--scheduler", help="Denoising solver, from the model's own noise schedule: ddim (released) or a multistep "
    "solver (dpmpp-2m, dpmpp-2m-karras, unipc) or euler, which need fewer steps.")]
ReferenceCacheOption = Annotated[bool, typer.Option(
    "--reference-cache", help="Compute reference features once and reuse them every step (faster, approximate).")]
ReferenceLocalityOption = Annotated[float | None, typer.Option(
    "--reference-locality", min=0.001, help="Models with a positional prior on their reference attention (the "
    "bundled one): its width in image sides (trained: 0.1). Narrower takes more from the reference's same place; "
    "the README has the setting measured for the bundled model.")]
MeanOfOption = Annotated[int, typer.Option(
    "--mean-of", min=1, max=16, metavar="M", help="Each result is the pixel mean of M samples (1-16), each from "
    "its own noise: less of one sample's noise, and less of its detail (the README has it measured for the bundled "
    "model).")]
ReferenceTimestepOption = Annotated[int | None, typer.Option(
    "--reference-timestep", min=0, metavar="T", help="With --reference-cache (or --fast): the timestep whose "
    "reference features every step reads (default: the first step's). The README has it measured for the bundled "
    "model (999: the noisiest).")]
FastOption = Annotated[bool, typer.Option(
    "--fast", help="A measured faster preset (see README, Speed): " + " ".join(
        f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}") for key, value in FAST_PRESET.items())
    + "; it replaces those options.")]
DEFAULT_SCHEDULER = Scheduler(EditSettings.scheduler)


def dtype_name(dtype: DType) -> str | None:
    """The `--dtype` value as `loading.load_pipeline` takes it (None: the device's default)."""
    return None if dtype is DType.auto else dtype.value
