"""Correctness of the speed schedules and options (timings are printed by `mimicbrush benchmark speed`, never asserted)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mimicbrush_cli.benchmark.editors import ModelSpec
from mimicbrush_cli.benchmark.speed import OURS, RELEASED, SpeedConfig, deviation, measure
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.loading import build_random_pipeline
from mimicbrush_cli.pipeline import EditSettings
from mimicbrush_cli.speedups import configure_pipeline_speed

STEPS = 3

TINY = ModelSpec(model="random-tiny")


@pytest.fixture
def pipeline():
    """A pipeline of its own, for tests that change it."""
    pipeline = build_random_pipeline("tiny", seed=0)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def exact(tiny_pipeline, photos):
    """Our default's output, STEPS steps."""
    return tiny_pipeline(*photos, EditSettings(steps=STEPS))[0][0]


def reference_unet_batches(pipeline, run):
    batches = []
    hook = pipeline.reference_unet.register_forward_pre_hook(lambda _, args: batches.append(args[0].shape[0]))
    try:
        result = run()
    finally:
        hook.remove()
    return result, batches


def test_released_schedule_runs_reference_unet_at_batch_2_every_step_and_matches_ours(tiny_pipeline, photos, exact):
    released, batches = reference_unet_batches(
        tiny_pipeline, lambda: tiny_pipeline(*photos, RELEASED.run_settings(STEPS), reference_schedule="released")[0][0])
    assert batches == [2] * STEPS
    assert np.abs(released.astype(int) - exact.astype(int)).max() <= 1


def test_our_default_runs_one_reference_pass_batched_over_the_timesteps(tiny_pipeline, photos):
    _, batches = reference_unet_batches(tiny_pipeline, lambda: tiny_pipeline(*photos, OURS.run_settings(STEPS)))
    assert batches == [STEPS]


def test_released_schedule_has_no_reference_cache_and_unknown_schedules_are_refused(tiny_pipeline, photos):
    with pytest.raises(ValueError, match="no reference cache"):
        tiny_pipeline(*photos, EditSettings(steps=1, reference_cache=True), reference_schedule="released")
    with pytest.raises(ValueError, match="reference_schedule"):
        tiny_pipeline(*photos, EditSettings(steps=1), reference_schedule="every step")


def test_reference_passes_are_timed_inside_the_block_only(tiny_pipeline, photos):
    from mimicbrush_cli.benchmark.speed import timed_reference_passes

    passes = []
    with timed_reference_passes(tiny_pipeline, lambda seconds, timesteps: passes.append((seconds > 0, timesteps))):
        tiny_pipeline(*photos, EditSettings(steps=3, reference_steps_per_pass=2))
    tiny_pipeline(*photos, EditSettings(steps=1))
    assert passes == [(True, 2), (True, 1)]


def test_reference_steps_per_pass_does_not_change_the_output(tiny_pipeline, photos, exact):
    two, batches = reference_unet_batches(
        tiny_pipeline, lambda: tiny_pipeline(*photos, EditSettings(steps=STEPS, reference_steps_per_pass=2))[0][0])
    assert batches == [2, 1]
    assert np.abs(two.astype(int) - exact.astype(int)).max() <= 1


def test_reference_cache_runs_reference_unet_once_and_changes_output_slightly(tiny_pipeline, photos, exact):
    cached, batches = reference_unet_batches(
        tiny_pipeline, lambda: tiny_pipeline(*photos, EditSettings(steps=STEPS, reference_cache=True))[0][0])
    assert batches == [1]
    changed = deviation(cached, exact)
    assert changed.max_abs > 0 and changed.psnr_db > 30


@pytest.mark.parametrize("option", ["channels_last", "vae_tiling"])
def test_speed_option_runs_and_keeps_the_output(pipeline, photos, exact, option):
    configure_pipeline_speed(pipeline, **{option: True})
    faster = pipeline(*photos, EditSettings(steps=STEPS))[0][0]
    assert faster.shape == exact.shape
    assert deviation(faster, exact).psnr_db > 40


def test_vae_tiling_splits_images_larger_than_a_tile(pipeline):
    configure_pipeline_speed(pipeline, vae_tiling=True)
    pipeline.vae.tile_sample_min_size, pipeline.vae.tile_latent_min_size = 32, 4
    calls = []
    hook = pipeline.vae.encoder.register_forward_pre_hook(lambda _, args: calls.append(args[0].shape[-1]))
    try:
        with torch.no_grad():
            pipeline.vae.encode(torch.zeros(1, 3, 64, 64))
    finally:
        hook.remove()
    assert len(calls) > 1 and max(calls) == 32


def test_compile_option_compiles_both_unets_in_place(pipeline):
    imitative = pipeline.imitative_unet
    configure_pipeline_speed(pipeline, compile=True)
    assert pipeline.imitative_unet is imitative
    assert pipeline.imitative_unet._compiled_call_impl is not None
    assert pipeline.reference_unet._compiled_call_impl is not None


@pytest.mark.slow  # compiling both U-Nets takes minutes on a CPU
def test_a_compiled_edit_compiles_each_unet_once_with_a_padded_last_reference_pass(pipeline, photos):
    """6 steps at 4 timesteps per reference pass: the last pass has 2. A new batch size would compile both
    U-Nets again (a step of minutes at full size); padded, the edit compiles each U-Net once."""
    from torch._dynamo.utils import counters

    settings = EditSettings(steps=6)
    eager, eager_batches = reference_unet_batches(pipeline, lambda: pipeline(*photos, settings)[0][0])
    assert eager_batches == [4, 2]  # eager stays at the FLOP floor: no padding
    torch._dynamo.reset()
    counters.clear()
    configure_pipeline_speed(pipeline, compile=True)
    compiled = pipeline(*photos, settings)[0][0]
    assert counters["stats"]["unique_graphs"] == 2
    assert np.abs(compiled.astype(int) - eager.astype(int)).max() <= 2
    torch._dynamo.reset()


def test_cpu_offload_on_cpu_is_a_user_error(pipeline):
    with pytest.raises(MimicBrushError, match="GPU"):
        configure_pipeline_speed(pipeline, cpu_offload=True)


def test_pipeline_inputs_follow_the_models_under_model_offload(pipeline, photos, exact):
    pipeline.enable_model_cpu_offload(device="cpu")  # the only accelerator-free way to install the hooks
    offloaded = pipeline(*photos, EditSettings(steps=STEPS))[0][0]
    np.testing.assert_array_equal(offloaded, exact)


def test_measure_times_every_step_and_reference_pass():
    config = SpeedConfig("tiny", model=TINY)
    measurement = measure(config, None, steps=5, device="cpu")
    assert len(measurement.step_s) == 5 and all(seconds > 0 for seconds in measurement.step_s)
    assert [(step, timesteps) for step, _, timesteps in measurement.reference_passes] == [(0, 4), (4, 1)]
    assert measurement.prediction.shape == (64, 64, 3) and measurement.peak_memory_bytes > 0
    assert 0 < measurement.imitative_step_s <= min(measurement.step_s)
    # Bookkeeping, not timing: denoising is part of the edit, and 50 steps replace the steps run.
    assert 0 < measurement.denoise_s <= measurement.edit_s
    assert measurement.edit_full_s == pytest.approx(measurement.edit_s - measurement.denoise_s + 50 * measurement.per_step_s)


def test_a_warm_configuration_edits_once_untimed_before_the_timed_edit(monkeypatch):
    from mimicbrush_cli.benchmark.speed import speed_configs
    from mimicbrush_cli.pipeline import MimicBrushPipeline

    denoised = []
    original = MimicBrushPipeline.denoise
    monkeypatch.setattr(MimicBrushPipeline, "denoise", lambda self, *args, **kwargs: denoised.append(1) or
                        original(self, *args, **kwargs))
    cold = measure(SpeedConfig("tiny", model=TINY), None, steps=2, device="cpu")
    assert len(denoised) == 1
    warm = measure(SpeedConfig("tiny, warm", model=TINY, warm=True), None, steps=2, device="cpu")
    assert len(denoised) == 3
    # Only the second edit is timed: its steps and its one reference pass, and the same output.
    assert len(warm.step_s) == 2 and [(step, timesteps) for step, _, timesteps in warm.reference_passes] == [(0, 2)]
    np.testing.assert_array_equal(warm.prediction, cold.prediction)
    assert [config.name for config in speed_configs("cpu", ("compile",))][2:] == [
        "--compile", "--compile, warm (a later edit of the same process)"]


def test_a_preset_is_extrapolated_to_its_own_step_count_with_its_solver():
    from mimicbrush_cli.benchmark.speed import fast_config
    from mimicbrush_cli.settings import FAST_PRESET

    config = fast_config().at_size("tiny")
    measurement = measure(config, None, steps=2, device="cpu")
    assert [timesteps for _, _, timesteps in measurement.reference_passes] == [1]  # the reference cache
    # FAST_PRESET's steps, its one reference pass spread over them
    [(_, pass_s, _)] = measurement.reference_passes
    steps = FAST_PRESET["steps"]
    assert measurement.per_step_s == pytest.approx(measurement.imitative_step_s + pass_s / steps)
    assert measurement.edit_full_s == pytest.approx(measurement.edit_s - measurement.denoise_s
                                                    + steps * measurement.per_step_s)
    solver = config.run_settings(2).scheduler
    assert solver == FAST_PRESET["scheduler"]


def test_configurations_are_interleaved_and_reported_as_median_and_range(monkeypatch):
    from mimicbrush_cli.benchmark import speed

    order, per_step = [], {"released": [4.0, 5.0, 9.0], "ours": [3.0, 3.0, 6.0]}

    def fake_measure(config, resolution, steps, device, threads=0):
        order.append(config.key)
        seconds = per_step[config.key][sum(key == config.key for key in order) - 1]
        m = speed.Measurement(config, resolution, steps, device, step_s=[seconds] * steps, denoise_s=steps * seconds,
                              edit_s=steps * seconds, prediction=np.zeros((8, 8, 3), np.uint8))
        return m

    monkeypatch.setattr(speed, "measure_in_fresh_process", fake_measure)
    report = speed.run_speed_benchmark((64,), steps=2, configs=[RELEASED, OURS], repeats=3)
    assert order == ["released", "ours"] * 3
    released, ours = report.rows[64]
    assert ours.step_ratios == pytest.approx([0.75, 0.6, 2 / 3])  # each against the released run of its round
    cells = speed.row_cells(ours)
    assert cells[1] == "3.00 [3.00–6.00]" and cells[2] == "0.67 [0.60–0.75]"
    assert report.noise(64) == pytest.approx((9.0 - 4.0) / 5.0)
    assert "3 interleaved repeats" in report.to_markdown()


def test_only_keeps_the_released_schedule_and_ours_and_refuses_unknown_names():
    from mimicbrush_cli.benchmark.speed import speed_configs

    assert [config.key for config in speed_configs("cpu", ("fast",))] == ["released", "ours", "fast"]
    with pytest.raises(ValueError, match="unknown configurations"):
        speed_configs("cpu", ("turbo",))


def test_measure_reports_offload_as_not_applicable_on_cpu():
    measurement = measure(SpeedConfig("offload", cpu_offload=True, model=TINY), None, steps=1, device="cpu")
    assert measurement.skipped == "needs a GPU"


def test_deviation_of_identical_images_is_infinite_psnr():
    image = np.full((4, 4, 3), 7, np.uint8)
    assert deviation(image, image).psnr_db == math.inf
    assert deviation(image + 1, image).max_abs == 1


def test_random_pipeline_at_another_resolution():
    assert build_random_pipeline("tiny", resolution=128).resolution == 128
    with pytest.raises(MimicBrushError, match="multiple of 16"):
        build_random_pipeline("tiny", resolution=72)


def test_report_compares_every_configuration_with_the_released_schedule_and_our_default():
    from mimicbrush_cli.benchmark.speed import SpeedReport, _rows

    released, ours = (SpeedConfig(config.name, schedule=config.schedule, model=TINY) for config in (RELEASED, OURS))
    measurements = [measure(config, None, steps=2, device="cpu") for config in (released, ours)]
    report = SpeedReport(device="cpu", steps=2, threads=0, tolerance=1,
                         rows={64: _rows([measurements], released, ours)})
    released_row, ours_row = report.rows[64]
    assert [(step, timesteps) for step, _, timesteps in measurements[0].reference_passes] == [(0, 1), (1, 1)]
    assert released_row.step_ratios == [1.0] and released_row.deviation.max_abs <= 1
    assert ours_row.deviation is None  # the exact default is what the others are compared with
    assert report.released_matches_ours(64)
    markdown = report.to_markdown()
    assert "### 64 px" in markdown and "released schedule (a)" in markdown


def test_edit_command_takes_the_speed_options(photo_files, tmp_path):
    from typer.testing import CliRunner

    from mimicbrush_cli.cli.app import app

    paths = [str(photo_files[key]) for key in ("source", "reference", "mask")]
    common = ["edit", *paths, "--model", "random-tiny", "--steps", "1", "--device", "cpu"]
    result = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "out.png"), "--channels-last", "--vae-tiling"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file()
    offload = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "offload.png"), "--cpu-offload"])
    assert offload.exit_code == 2 and "GPU" in offload.output
