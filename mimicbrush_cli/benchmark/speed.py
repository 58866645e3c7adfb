"""Speed of an edit: the released per-step schedule against ours, and each opt-in speed-up against exact output.

Every configuration edits the same photo (chelsea, a mask over the cat's head, coffee as the
reference) with the same seed, using the full-size `released` architecture with random weights
(no download) at each working resolution, in a fresh process, so that its peak memory is its own.

Measured per configuration:
- encode, decode and each denoising step (wall clock around the pipeline's public steps; CUDA
  synchronised), and each reference U-Net pass (forward hooks on the reference U-Net);
- the steady per-step cost of a 50-step edit: the fastest imitative step (on a shared machine the
  fastest repeat is the one least disturbed) plus the reference passes a 50-step edit needs,
  spread over its 50 steps (50 for the released schedule, ceil(50 / K) for ours, 1 with the cache);
- the whole edit with the steps run, and extrapolated to the configuration's step count (50, the
  released one, except for a preset with fewer steps, such as `--fast`);
- the first step (torch.compile compiles during it) against the steady step; torch.compile also once
  warm (`warm`: an untimed edit first, as a later edit of a `serve` session would run);
- peak memory: `max_memory_allocated` on CUDA, the process's peak RSS on CPU (weights included);
- deviation of the generated square (decoded, uint8, before paste-back) from that of our exact default:
  max absolute difference and PSNR (with the steps run: it says nothing of a solver's quality, which
  `benchmark recon` measures on a trained model).

Every configuration is measured `repeats` times, the configurations interleaved (round r measures all
of them before round r + 1), so that a change in the machine's load falls on all of them alike; the
report gives the median and the range over the repeats, and each ratio is taken within a round.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import resource
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..settings import EditSettings
from .editors import ModelSpec


@dataclass(frozen=True)
class SpeedConfig:
    """One measured way of running an edit: a model (random weights of a named size, in a precision), the edit's
    settings (their steps: those of the edit this configuration stands for), and how the pipeline runs."""

    name: str
    settings: EditSettings = EditSettings()
    model: ModelSpec = ModelSpec(model="random-released")  # its dtype None: fp32 on CPU, as the pipeline loads
    schedule: str = "batched"          # the pipeline's `reference_schedule`: "released" (reference U-Net at
                                       # batch 2·E every step) or "batched" (ours)
    channels_last: bool = False
    compile: bool = False
    cpu_offload: bool = False
    vae_tiling: bool = False
    exact: bool = True                 # meant to reproduce the default's output (to float rounding)
    warm: bool = False                 # time a second edit in the same process (a first, untimed, warms up)

    @property
    def key(self) -> str:
        """The name's first word: released, ours, reference-cache, dtype, compile, fast, ..."""
        return self.name.split()[0].strip("-,")

    @property
    def size(self) -> str:
        return self.model.model.removeprefix("random-")

    def at_size(self, size: str) -> SpeedConfig:
        return replace(self, model=replace(self.model, model=f"random-{size}"))

    def run_settings(self, steps: int, seed: int = 0) -> EditSettings:
        """The settings of a measured edit: this configuration's, with the steps run."""
        return replace(self.settings, steps=steps, seed=seed)


RELEASED = SpeedConfig("released schedule (a)", schedule="released")
OURS = SpeedConfig("ours, default (b)")


def fast_config() -> SpeedConfig:
    from ..settings import FAST_PRESET, resolve_settings

    return SpeedConfig(f"--fast ({FAST_PRESET['scheduler']}, {FAST_PRESET['steps']} steps, reference cache)",
                       settings=resolve_settings(EditSettings(), {}, fast=True), exact=False)


def speed_configs(device: str, only: tuple[str, ...] = ()) -> list[SpeedConfig]:
    """The released schedule, our default, each opt-in option alone, and the `--fast` preset; with `only`
    (`SpeedConfig.key`s), the first two and those."""
    half = "fp16" if device == "cuda" else "bf16"
    configs = [RELEASED, OURS,
               SpeedConfig("--reference-cache", settings=EditSettings(reference_cache=True), exact=False),
               SpeedConfig(f"--dtype {half}", model=ModelSpec(model="random-released", dtype=half), exact=False),
               SpeedConfig("--channels-last", channels_last=True),
               SpeedConfig("--vae-tiling", vae_tiling=True, exact=False),
               SpeedConfig("--cpu-offload", cpu_offload=True),
               SpeedConfig("--compile", compile=True),
               SpeedConfig("--compile, warm (a later edit of the same process)", compile=True, warm=True),
               fast_config()]
    unknown = set(only) - {config.key for config in configs}
    if unknown:
        raise ValueError(f"unknown configurations {sorted(unknown)}; known: {[config.key for config in configs]}")
    return [config for config in configs if not only or config in (RELEASED, OURS) or config.key in only]


@dataclass
class Measurement:
    config: SpeedConfig
    resolution: int
    steps: int
    device: str
    skipped: str | None = None
    build_s: float = 0.0
    encode_s: float = 0.0
    decode_s: float = 0.0
    denoise_s: float = 0.0
    edit_s: float = 0.0
    step_s: list[float] = field(default_factory=list)
    reference_passes: list[tuple[int, float, int]] = field(default_factory=list)  # (step, seconds, timesteps)
    peak_memory_bytes: int = 0
    prediction: np.ndarray | None = None  # (R, R, 3) uint8: the generated square before paste-back

    @property
    def imitative_step_s(self) -> float:
        """Fastest step with the reference passes taken out."""
        reference = [0.0] * len(self.step_s)
        for step, seconds, _ in self.reference_passes:
            reference[step] += seconds
        return min(total - ref for total, ref in zip(self.step_s, reference))

    @property
    def reference_per_step_s(self) -> float:
        """Reference U-Net time per step of an edit of `config.settings.steps` steps."""
        if not self.reference_passes:
            return 0.0
        steps = self.config.settings.steps
        if self.config.settings.reference_cache:
            passes = 1
        else:
            passes = math.ceil(steps / max(timesteps for _, _, timesteps in self.reference_passes))
        widest = max(timesteps for _, _, timesteps in self.reference_passes)
        pass_s = min(seconds for _, seconds, timesteps in self.reference_passes if timesteps == widest)
        return passes * pass_s / steps

    @property
    def per_step_s(self) -> float:
        return self.imitative_step_s + self.reference_per_step_s

    @property
    def first_step_s(self) -> float:
        """The first step as run (it includes compiling, under torch.compile)."""
        return self.step_s[0]

    @property
    def edit_full_s(self) -> float:
        """The whole edit extrapolated to `config.settings.steps` steps."""
        return self.edit_s - self.denoise_s + self.config.settings.steps * self.per_step_s


@dataclass(frozen=True)
class Deviation:
    max_abs: int
    psnr_db: float


def deviation(image: np.ndarray, exact: np.ndarray) -> Deviation:
    difference = image.astype(np.float64) - exact.astype(np.float64)
    mse = float(np.mean(difference ** 2))
    return Deviation(int(np.abs(difference).max()), math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse))


def benchmark_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real photo with a mask over the cat's head, and a reference: (source, reference, mask)."""
    from skimage import data

    source = data.chelsea()  # (300, 451, 3)
    yy, xx = np.mgrid[:source.shape[0], :source.shape[1]]
    mask = ((yy - 110) / 90) ** 2 + ((xx - 230) / 100) ** 2 < 1
    return source, data.coffee(), mask


# ---------------------------------------------------------------------------------------------- measuring


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _clock(device: torch.device) -> float:
    _synchronise(device)
    return time.perf_counter()


@contextmanager
def timed_reference_passes(pipeline, record: Callable[[float, int], None]) -> Iterator[None]:
    """Call `record(seconds, timesteps)` after every reference U-Net pass inside the block (hooks on the
    module; a pass batched over K timesteps runs them once each, so K is the number of distinct ones)."""
    device = pipeline.device
    started: list[float] = []

    # Kept out of a compiled graph: the clock must run where the pass starts and ends.
    @torch.compiler.disable
    def before(_module, _args) -> None:
        started.append(_clock(device))

    @torch.compiler.disable
    def after(_module, args, _output) -> None:
        record(_clock(device) - started.pop(), len(torch.unique(args[1])))

    handles = [pipeline.reference_unet.register_forward_pre_hook(before),
               pipeline.reference_unet.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def measure(config: SpeedConfig, resolution: int | None, steps: int, device: str = "cpu", seed: int = 0,
            threads: int = 0, build: Callable[[], object] | None = None) -> Measurement:
    """Build the pipeline for `config` and time one edit in this process, step by step through the
    pipeline's public calls (those `MimicBrushPipeline.__call__` makes). `build` makes the pipeline instead
    (weights already at hand, e.g. loaded from a folder): it is placed and configured as `config` says."""
    from .. import imaging
    from ..loading import build_random_pipeline, place_pipeline, resolve_device
    from ..speedups import SpeedOptions

    if threads:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    measurement = Measurement(config, resolution or 0, steps, torch_device.type)
    if config.cpu_offload and torch_device.type == "cpu":
        measurement.skipped = "needs a GPU"
        return measurement
    start = time.perf_counter()
    speed = SpeedOptions(channels_last=config.channels_last, compile=config.compile, cpu_offload=config.cpu_offload,
                         vae_tiling=config.vae_tiling)
    built = build() if build is not None else build_random_pipeline(config.size, seed=0, resolution=resolution)
    pipeline = place_pipeline(built, device, config.model.dtype, speed)
    measurement.resolution = pipeline.resolution
    measurement.build_s = time.perf_counter() - start
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)

    settings = config.run_settings(steps, seed)
    source, reference, mask = benchmark_inputs()
    if config.warm:
        with torch.no_grad():
            pipeline(source, reference, mask, settings)
    steps_done: list[float] = []  # the clock when encoding ended, then after each step

    def on_reference_pass(seconds: float, timesteps: int) -> None:
        measurement.reference_passes.append((len(steps_done) - 1, seconds, timesteps))

    def on_step(step: int, total: int) -> None:
        steps_done.append(_clock(torch_device))

    with torch.no_grad(), timed_reference_passes(pipeline, on_reference_pass):
        start = _clock(torch_device)
        prepared = imaging.prepare_edit(source, reference, mask, pipeline.resolution, settings.crop)
        noise = pipeline.draw_noise(1, settings)
        encode_start = _clock(torch_device)
        encoded = pipeline.encode_edits([prepared], settings.keep_shape, noise)
        steps_done.append(_clock(torch_device))
        measurement.encode_s = steps_done[0] - encode_start
        latents = pipeline.denoise(encoded, settings, noise.initial_latents, on_step, config.schedule)
        decode_start = _clock(torch_device)
        [measurement.prediction] = pipeline.decode(latents)
        measurement.decode_s = _clock(torch_device) - decode_start
        imaging.finish_edit(source, mask, prepared, measurement.prediction, settings.paste_back)
        measurement.edit_s = _clock(torch_device) - start
    measurement.step_s = list(np.diff(steps_done))
    measurement.denoise_s = steps_done[-1] - steps_done[0]
    measurement.peak_memory_bytes = _peak_memory_bytes(torch_device)
    return measurement


def measure_in_fresh_process(config: SpeedConfig, resolution: int | None, steps: int, device: str = "cpu",
                             seed: int = 0, threads: int = 0) -> Measurement:
    """`measure` in a new interpreter (spawned, not forked), so peak memory and caches are its own."""
    from ..libraries import quiet_libraries

    context = multiprocessing.get_context("spawn")  # the new interpreter gets the CLI's quiet logging too
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=quiet_libraries) as executor:
        return executor.submit(measure, config, resolution, steps, device, seed, threads).result()


# ---------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class SpeedRow:
    measurements: list[Measurement]     # one per repeat, in the order run
    step_ratios: list[float]            # per-step time / the released schedule's, within each round
    edit_ratios: list[float]            # whole edit (its own step count) / the released 50-step edit's, per round
    deviation: Deviation | None         # against our exact default at the same resolution

    @property
    def measurement(self) -> Measurement:
        return self.measurements[0]


def spread(values: list[float], digits: int) -> str:
    """`median [min–max]` of the repeats (the median alone for one)."""
    median = f"{statistics.median(values):.{digits}f}"
    return median if len(values) < 2 else f"{median} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


@dataclass
class SpeedReport:
    device: str
    steps: int
    threads: int
    repeats: int = 1
    rows: dict[int, list[SpeedRow]] = field(default_factory=dict)  # resolution -> rows
    tolerance: int = 0

    def released_matches_ours(self, resolution: int) -> bool:
        row = next(row for row in self.rows[resolution] if row.measurement.config.schedule == "released")
        return row.deviation is not None and row.deviation.max_abs <= self.tolerance

    def noise(self, resolution: int) -> float | None:
        """The spread of repeats of one configuration, as a fraction of its median: the largest (max − min) /
        median of the per-step time over the exact configurations (those whose timing nothing else varies)."""
        spreads = [(max(times) - min(times)) / statistics.median(times)
                   for row in self.rows[resolution] if row.measurement.config.exact and not row.measurement.skipped
                   for times in [[m.per_step_s for m in row.measurements]] if len(times) > 1]
        return max(spreads) if spreads else None

    def to_markdown(self) -> str:
        lines = [f"Device: {self.device}, {self.threads or torch.get_num_threads()} threads; "
                 f"{self.steps} denoising steps run per edit, extrapolated to the configuration's step count; "
                 f"full-size `released` architecture, random weights; {self.repeats} interleaved repeats, "
                 "median [min–max].", ""]
        for resolution, rows in self.rows.items():
            lines += [f"### {resolution} px", "", _MARKDOWN_HEADER, _MARKDOWN_RULE]
            lines += [_markdown_row(row) for row in rows]
            noise = self.noise(resolution)
            if noise is not None:
                lines += ["", f"Noise: repeats of one exact configuration differ by up to {noise:.0%} of their median."]
            lines.append("")
        return "\n".join(lines) + "\n"


COLUMNS = ("configuration", "step (s)", "ratio", "first step (s)", "edit, N steps (s)", "edit, full (s)", "ratio",
           "peak memory (GiB)", "max |Δ| (px)", "PSNR (dB)")
_MARKDOWN_HEADER = "| " + " | ".join(COLUMNS) + " |"
_MARKDOWN_RULE = "|" + "---|" * len(COLUMNS)


def row_cells(row: SpeedRow) -> list[str]:
    m = row.measurement
    if m.skipped:
        return [m.config.name, f"not applicable: {m.skipped}"] + [""] * (len(COLUMNS) - 2)
    runs = row.measurements
    deviation = row.deviation
    full = f"{spread([r.edit_full_s for r in runs], 0)} ({m.config.settings.steps} steps)"
    return [m.config.name, spread([r.per_step_s for r in runs], 2), spread(row.step_ratios, 2),
            spread([r.first_step_s for r in runs], 1), spread([r.edit_s for r in runs], 1), full,
            spread(row.edit_ratios, 3), f"{max(r.peak_memory_bytes for r in runs) / 2 ** 30:.2f}",
            "" if deviation is None else str(deviation.max_abs),
            "" if deviation is None else ("identical" if math.isinf(deviation.psnr_db) else f"{deviation.psnr_db:.1f}")]


def _markdown_row(row: SpeedRow) -> str:
    return "| " + " | ".join(row_cells(row)) + " |"


def _rows(rounds: list[list[Measurement]], baseline: SpeedConfig, exact: SpeedConfig) -> list[SpeedRow]:
    """Rows from `rounds` (each: one measurement of every configuration, in the same order)."""
    rows = []
    for index, runs in enumerate(zip(*rounds)):
        runs = list(runs)
        if runs[0].skipped:
            rows.append(SpeedRow(runs, [], [], None))
            continue
        step_ratios, edit_ratios = [], []
        for measurements, m in zip(rounds, runs):
            base = next((b for b in measurements if b.config == baseline and not b.skipped), None)
            if base is not None:
                step_ratios.append(m.per_step_s / base.per_step_s)
                edit_ratios.append(m.edit_full_s / base.edit_full_s)
        reference = next((m for m in rounds[0] if m.config == exact and not m.skipped), None)
        first = runs[0]
        compare = (reference is not None and first.config != exact
                   and first.prediction.shape == reference.prediction.shape)
        rows.append(SpeedRow(runs, step_ratios, edit_ratios,
                             deviation(first.prediction, reference.prediction) if compare else None))
    return rows


ProgressCallback = Callable[[str, int, int], None]


def run_speed_benchmark(resolutions: tuple[int, ...] = (256, 512), steps: int = 4, device: str = "cpu",
                        threads: int = 0, configs: list[SpeedConfig] | None = None, repeats: int = 3,
                        tolerance: int = 2, size: str = "released", progress: ProgressCallback | None = None,
                        on_resolution: Callable[[SpeedReport, int], None] | None = None) -> SpeedReport:
    """Measure every configuration `repeats` times at every resolution, interleaved, one fresh process at
    a time (never two full-size pipelines in memory at once); `on_resolution` sees the report as each
    resolution completes."""
    from ..loading import resolve_device

    torch_device = resolve_device(device).type
    configs = configs if configs is not None else speed_configs(torch_device)
    configs = [config.at_size(size) for config in configs]
    baseline, exact = RELEASED.at_size(size), OURS.at_size(size)
    report = SpeedReport(device=torch_device, steps=steps, threads=threads, repeats=repeats, tolerance=tolerance)
    total = len(configs) * len(resolutions) * repeats
    done = 0
    for resolution in resolutions:
        rounds = []
        for repeat in range(repeats):
            measurements = []
            for config in configs:
                if progress is not None:
                    progress(f"{config.name} @ {resolution} px, {repeat + 1}/{repeats}", done, total)
                measurements.append(measure_in_fresh_process(config, resolution, steps, device, threads=threads))
                done += 1
            rounds.append(measurements)
        report.rows[resolution] = _rows(rounds, baseline, exact)
        if on_resolution is not None:
            on_resolution(report, resolution)
    if progress is not None:
        progress("done", total, total)
    return report
