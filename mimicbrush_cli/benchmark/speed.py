"""Speed of an edit: the released per-step schedule against ours, and each opt-in speed-up against exact output.

Every configuration edits the same photo (chelsea, a mask over the cat's head, coffee as the
reference) with the same seed, using the full-size `released` architecture with random weights
(no download) at each working resolution, in a fresh process, so that its peak memory is its own.

Measured per configuration:
- encode, decode and each denoising step (wall clock; CUDA synchronised), and each reference U-Net pass;
- the steady per-step cost of a 50-step edit: the fastest imitative step (on a shared machine the
  fastest repeat is the one least disturbed) plus the reference passes a 50-step edit needs,
  spread over its 50 steps (50 for the released schedule, ceil(50 / K) for ours, 1 with the cache);
- the whole edit with the steps run, and extrapolated to 50 steps;
- peak memory: `max_memory_allocated` on CUDA, the process's peak RSS on CPU (weights included);
- deviation of the generated square (decoded, uint8, before paste-back) from that of our exact default:
  max absolute difference and PSNR.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

RELEASED_STEPS = 50


@dataclass(frozen=True)
class SpeedConfig:
    """One measured way of running an edit."""

    name: str
    schedule: str = "ours"             # "released": reference U-Net at batch 2·E every step; "ours": the pipeline
    reference_cache: bool = False
    dtype: str | None = None           # None: fp32 on CPU, as the pipeline loads by default
    channels_last: bool = False
    compile: bool = False
    cpu_offload: bool = False
    vae_tiling: bool = False
    size: str = "released"
    exact: bool = True                 # meant to reproduce the default's output (to float rounding)


RELEASED = SpeedConfig("released schedule (a)", schedule="released")
OURS = SpeedConfig("ours, default (b)")


def speed_configs(device: str) -> list[SpeedConfig]:
    """The released schedule, our default, and each opt-in option alone."""
    half = "fp16" if device == "cuda" else "bf16"
    return [RELEASED, OURS,
            SpeedConfig("--reference-cache", reference_cache=True, exact=False),
            SpeedConfig(f"--dtype {half}", dtype=half, exact=False),
            SpeedConfig("--channels-last", channels_last=True),
            SpeedConfig("--vae-tiling", vae_tiling=True, exact=False),
            SpeedConfig("--cpu-offload", cpu_offload=True)]


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
        """Reference U-Net time per step of a 50-step edit."""
        if not self.reference_passes:
            return 0.0
        if self.config.reference_cache:
            passes = 1
        else:
            passes = math.ceil(RELEASED_STEPS / max(timesteps for _, _, timesteps in self.reference_passes))
        widest = max(timesteps for _, _, timesteps in self.reference_passes)
        pass_s = min(seconds for _, seconds, timesteps in self.reference_passes if timesteps == widest)
        return passes * pass_s / RELEASED_STEPS

    @property
    def per_step_s(self) -> float:
        return self.imitative_step_s + self.reference_per_step_s

    @property
    def edit_50_s(self) -> float:
        return self.edit_s - self.denoise_s + RELEASED_STEPS * self.per_step_s


@dataclass(frozen=True)
class Deviation:
    max_abs: int
    psnr_db: float


def deviation(image: np.ndarray, exact: np.ndarray) -> Deviation:
    difference = image.astype(np.float64) - exact.astype(np.float64)
    mse = float(np.mean(difference ** 2))
    return Deviation(int(np.abs(difference).max()), math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse))


# ---------------------------------------------------------------------------------------------- schedules


@contextmanager
def released_schedule(pipeline):
    """Run `pipeline` the way the released code schedules its reference U-Net: every step, at batch 2·E,
    for the unconditional rows (zero-image tokens) as well as the conditional ones, although no
    imitative row ever reads the unconditional half. Use with `reference_steps_per_pass=1`."""
    def run_reference_pass(encoded, timesteps: torch.Tensor) -> None:
        if len(timesteps) != 1:
            raise ValueError("the released schedule runs one timestep per reference pass")
        num_edits = encoded.reference_latents.shape[0]
        # Conditional rows first: bank row e then holds edit e's conditional features, where the
        # pipeline points the conditional imitative rows; rows E..2E-1 are written and never read.
        tokens = torch.cat([encoded.reference_tokens, encoded.unconditional_tokens.expand(num_edits, -1, -1)])
        pipeline.run_reference_unet(encoded.reference_latents.repeat(2, 1, 1, 1), timesteps, tokens)

    pipeline.run_reference_pass = run_reference_pass
    try:
        yield pipeline
    finally:
        del pipeline.run_reference_pass


def edit_settings(config: SpeedConfig, steps: int, seed: int = 0):
    from ..pipeline import EditSettings

    settings = EditSettings(steps=steps, seed=seed, reference_cache=config.reference_cache)
    return replace(settings, reference_steps_per_pass=1) if config.schedule == "released" else settings


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


def _instrument(pipeline, measurement: Measurement, steps_done: list[float]) -> None:
    """Time the pipeline's phases by wrapping its bound methods on the instance."""
    device = pipeline.device

    def wrap(name: str, record: Callable[[float, tuple], None]) -> None:
        original = getattr(pipeline, name)

        def timed(*args, **kwargs):
            _synchronise(device)
            start = time.perf_counter()
            result = original(*args, **kwargs)
            _synchronise(device)
            record(time.perf_counter() - start, args)
            return result

        setattr(pipeline, name, timed)

    def on_encode(seconds, _):
        measurement.encode_s = seconds
        steps_done.append(time.perf_counter())  # the denoising clock starts here

    wrap("encode_edits", on_encode)
    wrap("decode", lambda seconds, _: setattr(measurement, "decode_s", seconds))
    wrap("run_reference_pass", lambda seconds, args: measurement.reference_passes.append(
        (len(steps_done) - 1, seconds, len(args[1]))))


def measure(config: SpeedConfig, resolution: int | None, steps: int, device: str = "cpu", seed: int = 0,
            threads: int = 0) -> Measurement:
    """Build the pipeline for `config` and time one edit in this process."""
    from ..loading import resolve_device, resolve_dtype
    from ..models.build import build_random_pipeline
    from ..speedups import configure_pipeline_speed

    if threads:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    measurement = Measurement(config, resolution or 0, steps, torch_device.type)
    if config.cpu_offload and torch_device.type == "cpu":
        measurement.skipped = "needs a GPU"
        return measurement
    start = time.perf_counter()
    pipeline = build_random_pipeline(config.size, seed=0, resolution=resolution)
    measurement.resolution = pipeline.resolution
    dtype = resolve_dtype(config.dtype, torch_device)
    pipeline.to(torch_device) if dtype == torch.float32 else pipeline.to(torch_device, dtype)
    pipeline.set_progress_bar_config(disable=True)
    configure_pipeline_speed(pipeline, channels_last=config.channels_last, compile=config.compile,
                             cpu_offload=config.cpu_offload, vae_tiling=config.vae_tiling)
    measurement.build_s = time.perf_counter() - start
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)

    steps_done: list[float] = []
    predictions: list[np.ndarray] = []
    decode = pipeline.decode
    pipeline.decode = lambda latents: predictions.extend(decode(latents)) or predictions
    schedule = released_schedule(pipeline) if config.schedule == "released" else _nothing()
    with schedule:
        _instrument(pipeline, measurement, steps_done)

        def on_step(step: int, total: int) -> None:
            _synchronise(torch_device)
            steps_done.append(time.perf_counter())

        source, reference, mask = benchmark_inputs()
        _synchronise(torch_device)
        start = time.perf_counter()
        pipeline(source, reference, mask, edit_settings(config, steps, seed), callback=on_step)
        _synchronise(torch_device)
        measurement.edit_s = time.perf_counter() - start
    measurement.step_s = list(np.diff(steps_done))
    measurement.denoise_s = steps_done[-1] - steps_done[0]
    measurement.peak_memory_bytes = _peak_memory_bytes(torch_device)
    measurement.prediction = predictions[0]
    return measurement


@contextmanager
def _nothing():
    yield


def measure_in_fresh_process(config: SpeedConfig, resolution: int | None, steps: int, device: str = "cpu",
                             seed: int = 0, threads: int = 0) -> Measurement:
    """`measure` in a new interpreter (spawned, not forked), so peak memory and caches are its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(measure, config, resolution, steps, device, seed, threads).result()


# ---------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class SpeedRow:
    measurement: Measurement
    step_ratio: float | None            # per-step time / the released schedule's
    edit_ratio: float | None            # extrapolated 50-step edit / the released schedule's
    deviation: Deviation | None         # against our exact default at the same resolution


@dataclass
class SpeedReport:
    device: str
    steps: int
    threads: int
    rows: dict[int, list[SpeedRow]] = field(default_factory=dict)  # resolution -> rows
    compile_rows: list[SpeedRow] = field(default_factory=list)      # tiny size, when compile is too slow at full size
    tolerance: int = 0

    def released_matches_ours(self, resolution: int) -> bool:
        row = next(row for row in self.rows[resolution] if row.measurement.config.schedule == "released")
        return row.deviation is not None and row.deviation.max_abs <= self.tolerance

    def to_markdown(self) -> str:
        lines = [f"Device: {self.device}, {self.threads or torch.get_num_threads()} threads; "
                 f"{self.steps} denoising steps run per edit (the released count is {RELEASED_STEPS}); "
                 "full-size `released` architecture, random weights.", ""]
        for resolution, rows in self.rows.items():
            lines += [f"### {resolution} px", "", _MARKDOWN_HEADER, _MARKDOWN_RULE]
            lines += [_markdown_row(row) for row in rows]
            lines.append("")
        if self.compile_rows:
            lines += ["### torch.compile (tiny size: compiling the full size on 2 CPU cores takes too long)", "",
                      _MARKDOWN_HEADER, _MARKDOWN_RULE]
            lines += [_markdown_row(row) for row in self.compile_rows]
        return "\n".join(lines) + "\n"


COLUMNS = ("configuration", "step (s)", "ratio", "edit, N steps (s)", f"edit, {RELEASED_STEPS} steps (s)", "ratio",
           "peak memory (GiB)", "max |Δ| (px)", "PSNR (dB)")
_MARKDOWN_HEADER = "| " + " | ".join(COLUMNS) + " |"
_MARKDOWN_RULE = "|" + "---|" * len(COLUMNS)


def row_cells(row: SpeedRow) -> list[str]:
    m = row.measurement
    if m.skipped:
        return [m.config.name, f"not applicable: {m.skipped}"] + [""] * (len(COLUMNS) - 2)
    ratio = lambda value: "" if value is None else f"{value:.2f}"  # noqa: E731
    deviation = row.deviation
    return [m.config.name, f"{m.per_step_s:.2f}", ratio(row.step_ratio), f"{m.edit_s:.1f}", f"{m.edit_50_s:.0f}",
            ratio(row.edit_ratio), f"{m.peak_memory_bytes / 2 ** 30:.2f}",
            "" if deviation is None else str(deviation.max_abs),
            "" if deviation is None else ("identical" if math.isinf(deviation.psnr_db) else f"{deviation.psnr_db:.1f}")]


def _markdown_row(row: SpeedRow) -> str:
    return "| " + " | ".join(row_cells(row)) + " |"


def _rows(measurements: list[Measurement], baseline: SpeedConfig, exact: SpeedConfig) -> list[SpeedRow]:
    base = next((m for m in measurements if m.config == baseline and not m.skipped), None)
    reference = next((m for m in measurements if m.config == exact and not m.skipped), None)
    rows = []
    for m in measurements:
        if m.skipped:
            rows.append(SpeedRow(m, None, None, None))
            continue
        compare = reference is not None and m is not reference and m.prediction.shape == reference.prediction.shape
        rows.append(SpeedRow(
            m, None if base is None else m.per_step_s / base.per_step_s,
            None if base is None else m.edit_50_s / base.edit_50_s,
            deviation(m.prediction, reference.prediction) if compare else None))
    return rows


ProgressCallback = Callable[[str, int, int], None]


def run_speed_benchmark(resolutions: tuple[int, ...] = (256, 512), steps: int = 4, device: str = "cpu",
                        threads: int = 0, configs: list[SpeedConfig] | None = None, compile_check: bool = True,
                        tolerance: int = 2, size: str = "released", progress: ProgressCallback | None = None,
                        on_resolution: Callable[[SpeedReport, int], None] | None = None) -> SpeedReport:
    """Measure every configuration at every resolution, one fresh process at a time (never two
    full-size pipelines in memory at once); `on_resolution` sees the report as each resolution completes."""
    from ..loading import resolve_device

    torch_device = resolve_device(device).type
    configs = configs if configs is not None else speed_configs(torch_device)
    configs = [replace(config, size=size) for config in configs]
    if torch_device != "cpu" and compile_check:
        configs.append(SpeedConfig("--compile", compile=True, size=size))
    baseline, exact = replace(RELEASED, size=size), replace(OURS, size=size)
    report = SpeedReport(device=torch_device, steps=steps, threads=threads, tolerance=tolerance)
    total = len(configs) * len(resolutions) + (2 if compile_check and torch_device == "cpu" else 0)
    done = 0
    for resolution in resolutions:
        measurements = []
        for config in configs:
            if progress is not None:
                progress(f"{config.name} @ {resolution} px", done, total)
            measurements.append(measure_in_fresh_process(config, resolution, steps, device, threads=threads))
            done += 1
        report.rows[resolution] = _rows(measurements, baseline, exact)
        if on_resolution is not None:
            on_resolution(report, resolution)
    if compile_check and torch_device == "cpu":
        tiny = [SpeedConfig("ours, default (tiny)", size="tiny"), SpeedConfig("--compile (tiny)", compile=True, size="tiny")]
        measurements = []
        for config in tiny:
            if progress is not None:
                progress(config.name, done, total)
            measurements.append(measure_in_fresh_process(config, None, max(steps, 8), device, threads=threads))
            done += 1
        report.compile_rows = _rows(measurements, tiny[0], tiny[0])
    if progress is not None:
        progress("done", total, total)
    return report
