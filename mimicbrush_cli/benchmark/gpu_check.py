"""One GPU check of the full-size pipeline: precision parity, noise placement, speed, memory, torch.compile.

`scripts/gpu_check.sh` runs `python -m mimicbrush_cli.benchmark.gpu_check --device cuda --size released`
(under 8 minutes on one H200) and writes a markdown table. Every measurement is a function of a device
and a model size, so the test suite runs the same code on the CPU with the `tiny` size.

1. Random weights of the size (seed 0) are written in the released layout (`cleansd/` + `MimicBrush/`,
   as the released Hub repos hold them) and loaded back through `loading.load_pipeline_folder`, the
   `--weights DIR` path; every loaded tensor is compared with the one written.
2. Parity, on the generated square (decoded, uint8, before paste-back) of the same edit (chelsea, a mask
   over the cat's head, coffee as the reference; seed 0; a few DDIM steps) with the same weights:
   - the device in half precision (fp16 on CUDA; fp32 on a CPU, where the comparison is fp32 against
     itself) against fp32 on the CPU, noise drawn on the CPU (`generator_device="cpu"`, the default);
   - the same with the noise drawn on the device (`generator_device="device"`, as the released code draws
     it), the CPU edit fed that same noise;
   - whether the device-drawn noise changes the edit (on CUDA it should: another random stream; on a CPU
     both draw from a CPU generator, so it must not).
3. Speed (`benchmark.speed.measure`, its configurations from `speed_configs`, on copies of the loaded
   weights): seconds per denoising step of the released reference schedule, our default and `--fast`;
   peak VRAM with and without `--cpu-offload`; `--compile`'s first step (it compiles) and steady step.

Rows that cannot be measured on the device say so in their result: "needs CUDA" (peak VRAM on a CPU;
`--compile` on a CPU unless asked, where inductor compiles the U-Nets for minutes).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import MimicBrushError
from ..settings import EditSettings
from .speed import Deviation, Measurement, SpeedConfig, benchmark_inputs, deviation, measure, speed_configs

NEEDS_CUDA = "needs CUDA"
SEED = 0  # the weights' seed: `measure` builds its random weights with seed 0 too

Progress = Callable[[str], None]


def print_progress(started: float | None = None) -> Progress:
    """A progress callback printing one flushed line per event to stderr (a terminal or not), with the time elapsed."""
    started = time.perf_counter() if started is None else started

    def progress(message: str) -> None:
        print(f"[gpu_check {time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    return progress


def _quiet(_message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    check: str
    result: str
    detail: str = ""


@dataclass
class GpuCheckReport:
    device: str              # e.g. "cuda (NVIDIA H200)"
    size: str
    steps: int
    resolution: int
    threads: int
    weights_folder: Path
    weights_bytes: int
    tensors_compared: int
    measured_on_loaded_weights: int = 0  # `measure` calls that timed copies of the loaded weights
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, check_start: str) -> Row:
        """The one row whose check starts with `check_start`."""
        [row] = [row for row in self.rows if row.check.startswith(check_start)]
        return row

    def to_markdown(self) -> str:
        escape = lambda text: text.replace("|", "\\|")  # noqa: E731
        lines = [
            "# GPU check", "",
            f"Device: {self.device}, torch {torch.__version__}, {self.threads} CPU threads. Model: the `{self.size}` "
            f"architecture with random weights (seed {SEED}), written in the released layout "
            f"({self.weights_bytes / 2 ** 30:.2f} GiB) and loaded from it with `load_pipeline_folder`. Edits: chelsea "
            f"with a mask over the cat's head, coffee as the reference, seed 0, {self.resolution} px, {self.steps} "
            f"steps run. The whole check took {self.seconds:.0f} s.", "",
            "| check | result | detail |", "|---|---|---|"]
        lines += [f"| {escape(row.check)} | {escape(row.result)} | {escape(row.detail)} |" for row in self.rows]
        return "\n".join(lines) + "\n"


def _deviation_text(value: Deviation) -> str:
    psnr = "inf (identical)" if math.isinf(value.psnr_db) else f"{value.psnr_db:.1f} dB"
    return f"max |Δ| {value.max_abs} px, PSNR {psnr}"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- the weights


def folder_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in Path(root).rglob("*") if path.is_file())


def load_released_weights(root: Path):
    """The pipeline in `root`, loaded as `--weights root` loads it, fp32 on the CPU; `root` must be in the
    released layout (not our own model folder)."""
    from ..loading import load_pipeline_folder, place_pipeline
    from ..models.checkpoints import is_released_layout

    root = Path(root)
    if (root / "model_index.json").exists() or not is_released_layout(root):
        raise MimicBrushError(f"{root} is not in the released layout")
    return place_pipeline(load_pipeline_folder(root), "cpu", "fp32")


def compare_weights(written, loaded) -> int:
    """The number of tensors compared; a loaded tensor that differs from the one written is an error. The
    reference U-Net's unused tail is not in the released file (it loads as initialised), so it is left out."""
    from ..models.reference_attention import unused_reference_unet_parameters

    unused = {f"reference_unet.{name}" for name in unused_reference_unet_parameters(written.reference_unet)}
    compared = 0
    for name in ("imitative_unet", "reference_unet", "vae", "image_encoder", "image_projection", "depth_guider",
                 "depth_estimator"):
        theirs = getattr(loaded, name).state_dict()
        for key, tensor in getattr(written, name).state_dict().items():
            if f"{name}.{key}" in unused:
                continue
            if key not in theirs or not torch.equal(theirs[key].cpu(), tensor.cpu()):
                raise MimicBrushError(f"the weights loaded from the released layout differ from those written: {name}.{key}")
            compared += 1
    return compared


def copier(template, calls: list[int]) -> Callable[[], object]:
    """`measure`'s `build`: a copy of `template` (the weights loaded from the released layout) takes seconds, a
    full-size random build most of a minute. Each copy appends to `calls`."""
    def copy_of_template():
        calls.append(1)
        return copy.deepcopy(template)
    return copy_of_template


# ---------------------------------------------------------------------------------------------- parity


@dataclass
class SquareEdit:
    prediction: np.ndarray   # (R, R, 3) uint8: the generated square before paste-back
    noise: object            # the pipeline's EditNoise
    finite: bool             # the denoised latents were all finite


def edit_square(pipeline, settings: EditSettings, noise=None) -> SquareEdit:
    """The benchmark edit through the pipeline's public steps (those `MimicBrushPipeline.__call__` makes), with
    the given noise (an `EditNoise`, on any device and dtype) or the noise `settings` draws."""
    from .. import imaging

    source, reference, mask = benchmark_inputs()
    with torch.no_grad():
        prepared = imaging.prepare_edit(source, reference, mask, pipeline.resolution, settings.crop)
        noise = pipeline.draw_noise(1, settings) if noise is None else noise
        encoded = pipeline.encode_edits([prepared], settings.keep_shape, noise)
        latents = pipeline.denoise(encoded, settings, noise.initial_latents)
        [prediction] = pipeline.decode(latents)
    return SquareEdit(prediction, noise, bool(torch.isfinite(latents).all()))


def _on_cpu(noise):
    """An `EditNoise` moved to the CPU in float32 (fp16 values are exact in float32)."""
    return type(noise)(**{name: tensor.detach().to("cpu", torch.float32) for name, tensor in vars(noise).items()})


def half_dtype(device: torch.device) -> str:
    """The precision a device edits in by default: fp16 on CUDA, fp32 on a CPU."""
    return "fp16" if device.type in ("cuda", "mps") else "fp32"


def parity_rows(template, device: str, steps: int, progress: Progress = _quiet) -> list[Row]:
    """fp32 on the CPU (`template`: fp32, on the CPU) against the device in its half precision, noise drawn on
    the CPU and on the device."""
    from ..loading import place_pipeline, resolve_device

    torch_device = resolve_device(device)
    half = half_dtype(torch_device)
    here = f"{half} {torch_device.type}"
    settings = EditSettings(steps=steps, seed=0)
    on_device = replace(settings, generator_device="device")
    problems: list[str] = []

    progress(f"parity: fp32 cpu edit, {steps} steps, noise drawn on the CPU")
    cpu_edit = edit_square(template, settings)
    progress(f"parity: moving a copy of the weights to {here}")
    accelerated = place_pipeline(copy.deepcopy(template), device, half)
    progress(f"parity: {here} edit, noise drawn on the CPU")
    device_edit = edit_square(accelerated, settings)
    progress(f"parity: {here} edit, noise drawn on {torch_device.type} (generator_device=\"device\")")
    device_noise_edit = edit_square(accelerated, on_device)
    del accelerated
    _free_memory()
    progress(f"parity: fp32 cpu edit fed the noise drawn on {torch_device.type}")
    cpu_same_noise_edit = edit_square(template, settings, noise=_on_cpu(device_noise_edit.noise))
    for name, edit in (("fp32 cpu", cpu_edit), (here, device_edit), (f"{here}, device noise", device_noise_edit),
                       ("fp32 cpu, device noise", cpu_same_noise_edit)):
        if not edit.finite:
            problems.append(f"the {name} edit's latents are not all finite")
    square = f"the generated {template.resolution} px square (before paste-back), {steps} DDIM steps, same weights and seed"
    noise_change = deviation(device_noise_edit.prediction, device_edit.prediction)
    if torch_device.type == "cpu":
        expected_change = "the same, as it must be: on a CPU both draw from a CPU generator"
        surprise = noise_change.max_abs > 0
    else:
        expected_change = (f"expected to differ: a {torch_device.type} generator draws another stream than a CPU one "
                           "(the released CUDA results need the device's)")
        surprise = noise_change.max_abs == 0
    rows = [
        Row(f"{here} vs fp32 cpu, noise drawn on the CPU (generator_device=\"cpu\", the default)",
            _deviation_text(deviation(device_edit.prediction, cpu_edit.prediction)), square),
        Row(f"{here} vs fp32 cpu, noise drawn on {torch_device.type} (generator_device=\"device\")",
            _deviation_text(deviation(device_noise_edit.prediction, cpu_same_noise_edit.prediction)),
            f"the CPU edit is fed the noise the {torch_device.type} generator drew; {square}"),
        Row(f"generator_device=\"device\" vs \"cpu\", {here} edit",
            ("differs: " if noise_change.max_abs else "identical: ") + _deviation_text(noise_change),
            ("UNEXPECTED; " if surprise else "") + expected_change),
    ]
    if problems:
        rows = [replace(row, detail=f"{row.detail}; {'; '.join(problems)}") for row in rows]
    return rows


# ---------------------------------------------------------------------------------------------- speed


def _config(device: torch.device, key: str, size: str) -> SpeedConfig:
    """`speed_configs`' configuration of `key` (the eager one, for `compile`), at `size`."""
    [config] = [config for config in speed_configs(device.type) if config.key == key and not config.warm]
    return config.at_size(size)


def _gib(measurement: Measurement) -> str:
    return f"{measurement.peak_memory_bytes / 2 ** 30:.2f}"


def _timed(template, device: torch.device, size: str, key: str, steps: int, progress: Progress,
           calls: list[int]) -> Measurement:
    """`measure` of `speed_configs`' configuration `key`, on a copy of `template`."""
    config = _config(device, key, size)
    progress(f"speed: {config.name}, {steps} steps")
    measurement = measure(config, None, steps, str(device), seed=0, build=copier(template, calls))
    _free_memory()
    if not measurement.skipped and not all(math.isfinite(s) and s > 0 for s in measurement.step_s):
        raise MimicBrushError(f"{config.name}: step times {measurement.step_s} are not all positive")
    return measurement


def speed_rows(template, device: str, size: str, steps: int, progress: Progress = _quiet,
               include_compile: bool | None = None, calls: list[int] | None = None) -> list[Row]:
    """Per-step seconds, peak VRAM and torch.compile, timed by `benchmark.speed.measure` on copies of `template`
    (the weights of `size`, seed 0). `include_compile` (default: on CUDA only) runs `--compile` on a CPU too."""
    from ..loading import resolve_device

    torch_device = resolve_device(device)
    cuda = torch_device.type == "cuda"
    include_compile = cuda if include_compile is None else include_compile
    calls = [] if calls is None else calls
    where = f"{half_dtype(torch_device)} {torch_device.type}, {template.resolution} px"

    def timed(key: str) -> Measurement:
        return _timed(template, torch_device, size, key, steps, progress, calls)

    released, ours, fast = timed("released"), timed("ours"), timed("fast")
    offload = timed("cpu-offload")
    rows = [
        Row("s/step, released reference schedule (reference U-Net every step, batch 2)", f"{released.per_step_s:.3f}",
            f"{where}; steady step of a 50-step edit (benchmark.speed.measure, {steps} steps run); a whole 50-step "
            f"edit ≈ {released.edit_full_s:.1f} s"),
        Row("s/step, ours (the default)", f"{ours.per_step_s:.3f}",
            f"{where}; {ours.per_step_s / released.per_step_s:.2f} × the released schedule's; a whole 50-step edit ≈ "
            f"{ours.edit_full_s:.1f} s"),
        Row(f"s/step, {fast.config.name}", f"{fast.per_step_s:.3f}",
            f"{where}; {fast.per_step_s / released.per_step_s:.2f} × the released schedule's; a whole "
            f"{fast.config.settings.steps}-step edit ≈ {fast.edit_full_s:.1f} s"),
    ]
    if cuda:
        offload_ratio = offload.per_step_s / ours.per_step_s
        rows += [Row("peak VRAM (GiB), the default", _gib(ours),
                     "torch.cuda.max_memory_allocated over one edit, weights included"),
                 Row("peak VRAM (GiB), --cpu-offload", _gib(offload),
                     f"the same; s/step {offload.per_step_s:.3f} ({offload_ratio:.1f} × the default's)")]
    else:
        rss = (f"on {torch_device.type} only the process's peak RSS is known ({_gib(ours)} GiB, every model of the "
               "check included)")
        rows += [Row("peak VRAM (GiB), the default", NEEDS_CUDA, f"torch.cuda.max_memory_allocated; {rss}"),
                 Row("peak VRAM (GiB), --cpu-offload", NEEDS_CUDA,
                     f"--cpu-offload on {torch_device.type}: {offload.skipped}")]
    if include_compile:
        rows += compile_rows(template, device, size, ours, progress, calls)
    else:
        why = f"not run on {torch_device.type}: inductor compiles the U-Nets for minutes there; run with --device cuda"
        rows += [Row("--compile, first call (s)", NEEDS_CUDA, why),
                 Row("--compile, s/step once compiled", NEEDS_CUDA, why)]
    return rows


def compile_rows(template, device: str, size: str, eager: Measurement, progress: Progress = _quiet,
                 calls: list[int] | None = None) -> list[Row]:
    """`--compile`: its first step (torch.compile compiles both U-Nets in it) and its steady step, against the
    eager default's (`eager`). Two reference passes of 4 timesteps: the first compiles, the second is steady
    (padded: no recompilation)."""
    from ..loading import resolve_device

    torch_device = resolve_device(device)
    steps = max(eager.steps, 2 * EditSettings().reference_steps_per_pass)
    compiled = _timed(template, torch_device, size, "compile", steps, progress, [] if calls is None else calls)
    where = f"{half_dtype(torch_device)} {torch_device.type}, {template.resolution} px"
    return [
        Row("--compile, first call (s)", f"{compiled.first_step_s:.2f}",
            f"{where}; the first denoising step, in which torch.compile compiles both U-Nets; the whole first "
            f"edit ({compiled.steps} steps) took {compiled.edit_s:.1f} s"),
        Row("--compile, s/step once compiled", f"{compiled.per_step_s:.3f}",
            f"{where}; steady, {compiled.per_step_s / eager.per_step_s:.2f} × the eager default's"),
    ]


# ---------------------------------------------------------------------------------------------- the check


def run_gpu_check(device: str = "cuda", size: str = "released", steps: int = 4, workdir: Path | None = None,
                  progress: Progress = _quiet, include_compile: bool | None = None) -> GpuCheckReport:
    """The whole check; the released-layout folder is written under `workdir` (default: a temporary folder,
    removed afterwards)."""
    from ..loading import build_random_pipeline, resolve_device
    from ..models.checkpoints import save_released_layout

    started = time.perf_counter()
    torch_device = resolve_device(device)  # no CUDA: one line, before anything is built
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="mimicbrush-gpu-check-") as folder:
            return run_gpu_check(device, size, steps, Path(folder), progress, include_compile)
    root = Path(workdir) / f"released-layout-{size}"
    progress(f"building random `{size}` weights (seed {SEED})")
    written = build_random_pipeline(size, seed=SEED)
    progress(f"writing them in the released layout to {root}")
    save_released_layout(written, root)
    progress("loading them back with load_pipeline_folder (the --weights path)")
    template = load_released_weights(root)
    tensors = compare_weights(written, template)
    del written
    _free_memory()
    report = GpuCheckReport(device=_device_name(torch_device), size=size, steps=steps, resolution=template.resolution,
                            threads=torch.get_num_threads(), weights_folder=root, weights_bytes=folder_bytes(root),
                            tensors_compared=tensors)
    files = sum(1 for path in root.rglob("*") if path.is_file())
    report.rows.append(Row("released layout written and loaded", "yes",
                           f"{files} files, {report.weights_bytes / 2 ** 30:.2f} GiB; {tensors} loaded tensors equal "
                           "those written; every edit below runs these weights"))
    report.rows += parity_rows(template, device, steps, progress)
    calls: list[int] = []
    report.rows += speed_rows(template, device, size, steps, progress, include_compile, calls)
    report.measured_on_loaded_weights = len(calls)
    report.seconds = time.perf_counter() - started
    progress(f"done in {report.seconds:.0f} s")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimicbrush_cli.benchmark.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu")
    parser.add_argument("--size", default="released", help="model size: released (default), tiny, demo")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per edit (default 4)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: every core this process may use)")
    parser.add_argument("--compile-on-cpu", action="store_true", help="run --compile on a CPU too (minutes)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the released-layout folder here")
    parser.add_argument("-o", "--output", type=Path, default=Path("gpu_check.md"), help="markdown table (gpu_check.md)")
    args = parser.parse_args(argv)
    from ..libraries import quiet_libraries
    from ..loading import resolve_device

    try:
        resolve_device(args.device)  # no CUDA: one line, before anything else
        quiet_libraries()
        torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
        progress = print_progress()
        progress(f"gpu check: --device {args.device} --size {args.size}, {args.steps} steps, "
                 f"{torch.get_num_threads()} CPU threads")
        report = run_gpu_check(args.device, args.size, args.steps, args.workdir, progress,
                               include_compile=True if args.compile_on_cpu else None)
        args.output.write_text(report.to_markdown(), encoding="utf-8")
    except MimicBrushError as error:
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return 1
    print(report.to_markdown(), end="")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
