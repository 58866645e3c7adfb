from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch

from mimicbrush_cli import imaging
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.pipeline import EditSettings

FAST = EditSettings(steps=3, seed=7)


@contextmanager
def captured_inputs(module):
    """The (args, kwargs) of every forward call of `module` inside the block."""
    calls = []
    hook = module.register_forward_pre_hook(lambda _, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    try:
        yield calls
    finally:
        hook.remove()


def encoded_edit(pipeline, photos, settings):
    """The edit's noise and encoded inputs, as the pipeline makes them before denoising."""
    source, reference, mask = photos
    prepared = imaging.prepare_edit(source, reference, mask, pipeline.resolution, settings.crop)
    noise = pipeline.draw_noise(1, settings)
    with torch.no_grad():
        return noise, pipeline.encode_edits([prepared], settings.keep_shape, noise)


def test_fixed_seed_output_slice(tiny_pipeline, photos):
    """Values computed once from this code (tiny random weights of seed 0; 3 steps, seed 7): a change in
    the arithmetic of an edit fails here, whatever else still passes."""
    settings = EditSettings(steps=3, seed=7)
    noise, encoded = encoded_edit(tiny_pipeline, photos, settings)
    latents = tiny_pipeline.denoise(encoded, settings, noise.initial_latents)
    torch.testing.assert_close(latents[0, :, 3, 3], torch.tensor([-3.24933, -1.01961, -0.58170, -2.89056]),
                               atol=1e-3, rtol=0)
    result = tiny_pipeline(*photos, settings)[0][0]
    expected = [[97, 152, 54], [93, 158, 54], [91, 163, 59], [90, 168, 69], [90, 172, 79], [89, 177, 89]]
    np.testing.assert_allclose(result[110, 226:232].astype(int), expected, atol=1)


def guided_prediction(pipeline, photos, guidance: float):
    """(guided noise, imitative U-Net tokens, its output, bank rows read) of one step for 2 samples of one edit."""
    noise, encoded = encoded_edit(pipeline, photos, EditSettings(num_samples=2))
    outputs = []
    hook = pipeline.imitative_unet.register_forward_hook(lambda _, __, output: outputs.append(output.sample))
    try:
        with captured_inputs(pipeline.imitative_unet) as calls, torch.no_grad():
            guided = pipeline.predict_noise(noise.initial_latents, torch.tensor(981), encoded, 2, guidance)
        rows = pipeline.bank.reference_index.tolist()
    finally:
        hook.remove()
        pipeline.bank.clear()
        pipeline.bank.reference_index = None
    [(_, kwargs)] = calls
    return guided, kwargs["encoder_hidden_states"], outputs[0], rows, encoded


def test_cfg_rows_are_unconditional_first_and_guidance_extrapolates_from_them(tiny_pipeline, photos):
    guided, tokens, output, rows, encoded = guided_prediction(tiny_pipeline, photos, guidance=5.0)
    assert tokens.shape[0] == 4 and rows == [-1, -1, 0, 0]  # 2 unconditional rows (no reference), then 2 conditional
    torch.testing.assert_close(tokens[:2], encoded.unconditional_tokens.expand(2, -1, -1))
    torch.testing.assert_close(tokens[2:], encoded.reference_tokens.expand(2, -1, -1))
    unconditional, conditional = output[:2], output[2:]
    torch.testing.assert_close(guided, unconditional + 5.0 * (conditional - unconditional))


def test_guidance_1_runs_only_the_conditional_rows(tiny_pipeline, photos):
    guided, tokens, output, rows, encoded = guided_prediction(tiny_pipeline, photos, guidance=1.0)
    assert tokens.shape[0] == 2 and rows == [0, 0]
    torch.testing.assert_close(tokens, encoded.reference_tokens.expand(2, -1, -1))
    assert torch.equal(guided, output)


def test_same_seed_gives_same_output_and_other_seed_differs(tiny_pipeline, photos):
    source, reference, mask = photos
    first = tiny_pipeline(source, reference, mask, FAST)[0][0]
    second = tiny_pipeline(source, reference, mask, FAST)[0][0]
    other = tiny_pipeline(source, reference, mask, EditSettings(steps=3, seed=8))[0][0]
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert first.shape == source.shape and first.dtype == np.uint8


def test_edit_in_a_batch_equals_edit_alone(tiny_pipeline, photos):
    source, reference, mask = photos
    alone = tiny_pipeline(source, reference, mask, FAST)[0][0]
    batch = tiny_pipeline([source, source[:, ::-1].copy()], [reference, reference], [mask, mask[:, ::-1].copy()], FAST)
    assert len(batch) == 2 and all(len(samples) == 1 for samples in batch)
    np.testing.assert_allclose(batch[0][0].astype(int), alone.astype(int), atol=1)


def test_num_samples_gives_distinct_results(tiny_pipeline, photos):
    source, reference, mask = photos
    samples = tiny_pipeline(source, reference, mask, EditSettings(steps=2, num_samples=3))[0]
    assert len(samples) == 3
    assert not np.array_equal(samples[0], samples[1])


def test_mean_of_averages_its_own_samples(tiny_pipeline, photos):
    """Result k of `mean_of` M is the pixel mean of samples kM..kM+M-1 of the same seed's stream."""
    source, reference, mask = photos
    settings = EditSettings(steps=2, seed=5, num_samples=6)
    samples = [sample.astype(float) for sample in tiny_pipeline(source, reference, mask, settings)[0]]
    means = tiny_pipeline(source, reference, mask, replace(settings, num_samples=2, mean_of=3))[0]
    assert len(means) == 2
    for index, mean in enumerate(means):
        # averaged before the paste back, which rounds: within 2 of the mean of the pasted samples
        np.testing.assert_allclose(mean, np.mean(samples[3 * index:3 * index + 3], axis=0), atol=2)
    assert np.abs(means[0] - samples[0]).max() > 20  # not one sample
    assert EditSettings(num_samples=2, mean_of=3).samples_drawn == 6
    with pytest.raises(ValueError, match="mean_of"):
        EditSettings(mean_of=0)


def test_pixels_outside_blurred_mask_are_the_source(tiny_pipeline, photos):
    from mimicbrush_cli.imaging import blend_alpha

    source, reference, mask = photos
    result = tiny_pipeline(source, reference, mask, FAST)[0][0]
    outside = blend_alpha(mask) == 0
    np.testing.assert_array_equal(result[outside], source[outside])
    assert not np.array_equal(result[mask], source[mask])


def test_imitative_input_channel_order(tiny_pipeline, photos):
    source, reference, mask = photos
    with captured_inputs(tiny_pipeline.imitative_unet) as calls:
        tiny_pipeline(source, reference, mask, EditSettings(steps=1, crop=False))
    model_input = calls[0][0][0]  # (2, 13, h, w): uncond row, cond row
    assert model_input.shape[1] == 13
    prepared = imaging.prepare_edit(source, reference, mask, tiny_pipeline.resolution, crop=False)
    latent_size = tiny_pipeline.resolution // 8
    expected_mask = torch.nn.functional.interpolate(
        torch.from_numpy(prepared.mask[None, None].astype(np.float32)), size=latent_size, mode="nearest")
    torch.testing.assert_close(model_input[0, 4:5], expected_mask[0])
    noise = tiny_pipeline.draw_noise(1, EditSettings(seed=0))
    encoded = tiny_pipeline.encode_edits([prepared], keep_shape=False, noise=noise)
    torch.testing.assert_close(model_input[0, 5:9], encoded.masked_source_latents[0])
    torch.testing.assert_close(model_input[0, 9:13], encoded.depth_latents[0])
    torch.testing.assert_close(model_input[0], model_input[1])  # both CFG rows see the same condition


def test_keep_shape_off_feeds_zeros_to_depth_model(photos):
    from mimicbrush_cli.loading import build_random_pipeline

    pipeline = build_random_pipeline("tiny", seed=0)  # its own: a used one keeps the depth of zeros
    source, reference, mask = photos
    with captured_inputs(pipeline.depth_estimator) as calls:
        pipeline(source, reference, mask, EditSettings(steps=1, keep_shape=False))
        pipeline(source, reference, mask, EditSettings(steps=1, keep_shape=True))
    depth_input_off = calls[0][1].get("pixel_values", calls[0][0][0] if calls[0][0] else None)
    depth_input_on = calls[1][1].get("pixel_values", calls[1][0][0] if calls[1][0] else None)
    assert torch.count_nonzero(depth_input_off) == 0
    assert torch.count_nonzero(depth_input_on) > 0


def test_keep_shape_without_a_depth_model_is_refused_before_any_model_runs(tiny_pipeline_without_depth, photos):
    pipeline = tiny_pipeline_without_depth
    with captured_inputs(pipeline.imitative_unet) as calls, \
            pytest.raises(MimicBrushError, match="--keep-shape needs a depth model"):
        pipeline(*photos, EditSettings(steps=1, keep_shape=True))
    assert calls == []
    assert pipeline(*photos, EditSettings(steps=1))[0][0].shape == photos[0].shape  # shape control off: no depth needed


def test_reference_unet_runs_once_per_edit_not_per_cfg_row(tiny_pipeline, photos):
    source, reference, mask = photos
    with captured_inputs(tiny_pipeline.reference_unet) as calls:
        tiny_pipeline([source, source], [reference, reference], [mask, mask],
                      EditSettings(steps=2, num_samples=2, reference_steps_per_pass=1))
    assert len(calls) == 2  # one call per step
    assert all(args[0].shape[0] == 2 for args, _ in calls)  # 2 edits, while the imitative batch is 2 x 2 x 2


def test_reference_changes_the_result(tiny_pipeline, photos):
    source, reference, mask = photos
    with_coffee = tiny_pipeline(source, reference, mask, FAST)[0][0]
    with_self = tiny_pipeline(source, source, mask, FAST)[0][0]
    assert not np.array_equal(with_coffee[mask], with_self[mask])


def test_reference_cache_reuses_first_step_features(tiny_pipeline, photos):
    source, reference, mask = photos
    with captured_inputs(tiny_pipeline.reference_unet) as calls:
        tiny_pipeline(source, reference, mask, EditSettings(steps=3, reference_cache=True))
    assert len(calls) == 1


def test_reference_attention_off_never_runs_the_reference_unet_and_changes_the_result(tiny_pipeline, photos):
    source, reference, mask = photos
    with captured_inputs(tiny_pipeline.reference_unet) as calls:
        off = tiny_pipeline(source, reference, mask, EditSettings(steps=2, reference_attention=False))[0][0]
    assert calls == []
    on = tiny_pipeline(source, reference, mask, EditSettings(steps=2))[0][0]
    assert not np.array_equal(on[mask], off[mask])


def test_autoencode_changes_only_the_masked_area(tiny_pipeline, photos):
    source, _, mask = photos
    result = tiny_pipeline.autoencode(source, mask)
    assert result.shape == source.shape
    rows, cols = np.nonzero(mask)
    outside = np.ones(mask.shape, bool)
    outside[rows.min() - 12:rows.max() + 12, cols.min() - 12:cols.max() + 12] = False
    np.testing.assert_array_equal(result[outside], source[outside])
    assert not np.array_equal(result[mask], source[mask])


# The diffusers solver each scheduler name stands for, built here from the model's config.
def expected_solver(pipeline, name):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

    config = pipeline.scheduler.config
    return {"ddim": lambda: DDIMScheduler.from_config(config),
            "dpmpp-2m": lambda: DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++"),
            "dpmpp-2m-karras": lambda: DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++",
                                                                               use_karras_sigmas=True),
            "unipc": lambda: UniPCMultistepScheduler.from_config(config),
            "euler": lambda: EulerDiscreteScheduler.from_config(config)}[name]()


@contextmanager
def recorded_steps(pipeline):
    """Per reference U-Net pass its timesteps; per imitative call (its timestep, the bank rows it reads)."""
    reference, imitative = [], []
    hooks = [pipeline.reference_unet.register_forward_pre_hook(
                 lambda _, args: reference.append(args[1].flatten().tolist())),
             pipeline.imitative_unet.register_forward_pre_hook(
                 lambda _, args: imitative.append((float(args[1]), pipeline.bank.reference_index.tolist())))]
    try:
        yield reference, imitative
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp-2m", "dpmpp-2m-karras", "unipc", "euler"])
def test_each_solver_steps_through_its_own_timesteps_with_4_per_reference_pass(tiny_pipeline, photos, scheduler):
    solver = expected_solver(tiny_pipeline, scheduler)
    solver.set_timesteps(6)
    timesteps = [float(t) for t in solver.timesteps]
    with recorded_steps(tiny_pipeline) as (reference, imitative):
        tiny_pipeline(*photos, EditSettings(steps=6, scheduler=scheduler))
    assert reference == [timesteps[:4], timesteps[4:]]
    assert imitative == [(t, [-1, step % 4]) for step, t in enumerate(timesteps)]


@pytest.mark.parametrize("scheduler", ["dpmpp-2m", "euler"])
def test_reference_cache_reads_the_first_timestep_features_with_any_solver(tiny_pipeline, photos, scheduler):
    solver = expected_solver(tiny_pipeline, scheduler)
    solver.set_timesteps(3)
    timesteps = [float(t) for t in solver.timesteps]
    with recorded_steps(tiny_pipeline) as (reference, imitative):
        tiny_pipeline(*photos, EditSettings(steps=3, scheduler=scheduler, reference_cache=True))
    assert reference == [timesteps[:1]]
    assert imitative == [(t, [-1, 0]) for t in timesteps]


@pytest.mark.parametrize("scheduler", ["dpmpp-2m", "euler"])
def test_reference_timestep_sets_the_cached_features_timestep(tiny_pipeline, photos, scheduler):
    solver = expected_solver(tiny_pipeline, scheduler)
    solver.set_timesteps(3)
    timesteps = [float(t) for t in solver.timesteps]
    cache = EditSettings(steps=3, scheduler=scheduler, reference_cache=True)
    first = tiny_pipeline(*photos, cache)[0][0]
    with recorded_steps(tiny_pipeline) as (reference, imitative):
        noisiest = tiny_pipeline(*photos, replace(cache, reference_timestep=999))[0][0]
    assert reference == [[999.0]]
    assert imitative == [(t, [-1, 0]) for t in timesteps]  # the solver's own steps, reading the one cached row
    assert not np.array_equal(noisiest, first)
    if scheduler == "dpmpp-2m":  # integer timesteps: naming the first one is the default
        explicit = tiny_pipeline(*photos, replace(cache, reference_timestep=int(timesteps[0])))[0][0]
        np.testing.assert_array_equal(explicit, first)
    with pytest.raises(MimicBrushError, match="at most 999"):
        tiny_pipeline(*photos, replace(cache, reference_timestep=1000))
    with pytest.raises(ValueError, match="reference-cache"):
        EditSettings(reference_timestep=999)  # without the cache every step has its own features
    with pytest.raises(ValueError, match="reference_timestep"):
        replace(cache, reference_timestep=-1)


@pytest.mark.parametrize("scheduler", ["dpmpp-2m", "dpmpp-2m-karras", "unipc", "euler"])
def test_each_solver_gives_its_own_edit(tiny_pipeline, photos, scheduler):
    source, reference, mask = photos
    ddim = tiny_pipeline(*photos, EditSettings(steps=3, seed=7))[0][0]
    result = tiny_pipeline(*photos, EditSettings(steps=3, seed=7, scheduler=scheduler))[0][0]
    assert result.shape == source.shape
    assert not np.array_equal(result[mask], ddim[mask])


def test_euler_feeds_the_unet_unit_variance_noise_at_the_first_step(tiny_pipeline, photos):
    """Euler's latents start at sigma_max·noise; `scale_model_input` brings them back to the U-Net's range."""
    settings = EditSettings(steps=3, scheduler="euler", crop=False)
    noise = tiny_pipeline.draw_noise(1, settings)
    with captured_inputs(tiny_pipeline.imitative_unet) as calls:
        tiny_pipeline(*photos, settings)
    first_input = calls[0][0][0]  # (2, 13, h, w)
    torch.testing.assert_close(first_input[:, :4], noise.initial_latents.expand(2, -1, -1, -1))


def test_an_unknown_scheduler_is_refused():
    with pytest.raises(ValueError, match="scheduler must be one of"):
        EditSettings(scheduler="heun")


def test_constant_inputs_run_their_models_once_per_weights(photos):
    """The CFG branch's all-zero CLIP image and keep-shape off's all-zero depth input are the same in every
    edit: their outputs are kept with the weights and computed again only when those change."""
    from mimicbrush_cli.loading import build_random_pipeline

    pipeline = build_random_pipeline("tiny", seed=0)  # its own: the test changes weights
    settings = EditSettings(steps=2, seed=7)
    first = pipeline(*photos, settings)[0][0]
    with captured_inputs(pipeline.image_encoder) as clip_calls, captured_inputs(pipeline.depth_estimator) as depth_calls:
        _, encoded = encoded_edit(pipeline, photos, settings)
        again = pipeline(*photos, settings)[0][0]
    np.testing.assert_array_equal(again, first)
    assert len(clip_calls) == 2 and len(depth_calls) == 0  # the references' tokens only
    fresh = build_random_pipeline("tiny", seed=0)
    torch.testing.assert_close(encoded.unconditional_tokens, fresh.unconditional_tokens(), rtol=0, atol=0)
    size = pipeline.config.depth_input_size
    with torch.no_grad():
        torch.testing.assert_close(encoded.depth_latents, fresh.depth_latents(torch.zeros(1, 3, size, size),
                                                                               pipeline.resolution), rtol=0, atol=0)
    # a caller changing what it got does not change what is kept
    kept = encoded.unconditional_tokens.clone()
    encoded.unconditional_tokens.add_(1.0)
    with torch.no_grad():
        torch.testing.assert_close(pipeline.unconditional_tokens(), kept, rtol=0, atol=0)
    # an in-place change of the weights (as an optimiser step makes) is seen
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in (pipeline.image_projection.projector.weight, pipeline.depth_estimator.head.conv1.weight):
            parameter.add_(torch.randn(parameter.shape, generator=generator))
    with captured_inputs(pipeline.image_encoder) as clip_calls, captured_inputs(pipeline.depth_estimator) as depth_calls:
        _, changed = encoded_edit(pipeline, photos, settings)
    assert len(clip_calls) == 2 and len(depth_calls) == 1
    assert not torch.equal(changed.unconditional_tokens, kept)
    assert not torch.equal(changed.depth_latents, encoded.depth_latents)
    # so is a module replaced by another
    pipeline.image_projection = build_random_pipeline("tiny", seed=1).image_projection
    with captured_inputs(pipeline.image_encoder) as clip_calls:
        _, replaced = encoded_edit(pipeline, photos, settings)
    assert len(clip_calls) == 2 and not torch.equal(replaced.unconditional_tokens, changed.unconditional_tokens)
