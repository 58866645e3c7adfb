"""The loss of one batch: consistent with inference, checkpointing-invariant, and able to overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mimicbrush_cli.loading import build_random_pipeline
from mimicbrush_cli.models.unets import imitative_unet_input
from mimicbrush_cli.training.objective import (
    TrainingModel,
    clip_pixel_values,
    draw_randomness,
    encode_batch,
    micro_batch_generator,
)
from torch.utils.data import default_collate


def _encoded(pipeline, dataset, keep, zero_depth=(False, True), seed=0):
    rows = len(keep)
    batch = default_collate([dataset[index] for index in range(rows)])
    randomness = draw_randomness(micro_batch_generator(seed, 0, 0, 0), rows, 8, 1000, 0.0, 0.0)
    randomness.keep_reference = torch.tensor(keep)
    randomness.zero_depth = torch.tensor(zero_depth[:rows])
    return encode_batch(pipeline, batch, randomness)


def test_clip_pixel_values_match_the_inference_preprocessing(tiny_pipeline):
    image = np.asarray(torch.nn.functional.interpolate(
        torch.from_numpy(__import__("skimage").data.astronaut()).permute(2, 0, 1)[None].float(), size=(64, 64),
        mode="area")[0].permute(1, 2, 0).round().byte())
    expected = tiny_pipeline.clip_pixel_values([image])
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    actual = clip_pixel_values(batch, tiny_pipeline.feature_extractor)
    assert actual.shape == expected.shape
    # PIL rounds its resize to uint8 (one level is ~0.015 here); the batched twin does not.
    difference = (actual - expected).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.1


def test_training_rows_match_the_inference_branches(photo_pairs):
    """A kept row predicts like the conditional CFG branch, a dropped row like the unconditional one."""
    pipeline = build_random_pipeline("tiny", seed=0)
    model = TrainingModel(pipeline, ("imitative_unet", "image_projection", "depth_guider"))
    encoded = _encoded(pipeline, photo_pairs, keep=(True, False))
    with torch.no_grad():
        loss = model(encoded)
        depth_latents = pipeline.depth_guider(encoded.depth, encoded.pixel_size)
        tokens = torch.cat([pipeline.reference_tokens(encoded.clip_pixel_values[:1]), pipeline.unconditional_tokens()])
        pipeline.run_reference_unet(encoded.reference_latents[:1], encoded.timesteps[:1], tokens[:1])
        pipeline.bank.reference_index = torch.tensor([0, -1])
        model_input = imitative_unet_input(encoded.noisy_latents, encoded.mask_latents,
                                           encoded.masked_source_latents, depth_latents)
        prediction = pipeline.imitative_unet(model_input, encoded.timesteps, encoder_hidden_states=tokens).sample
    assert torch.allclose(loss, F.mse_loss(prediction, encoded.target), atol=1e-6)


def test_dropped_rows_ignore_the_reference(photo_pairs):
    pipeline = build_random_pipeline("tiny", seed=0)
    model = TrainingModel(pipeline, ("imitative_unet", "image_projection", "depth_guider"))
    encoded = _encoded(pipeline, photo_pairs, keep=(False, False))
    with torch.no_grad():
        loss = model(encoded)
        encoded.reference_latents = torch.randn_like(encoded.reference_latents)
        assert torch.equal(model(encoded), loss)


def _loss_and_gradients(photo_pairs, checkpointing: bool):
    pipeline = build_random_pipeline("tiny", seed=0)
    model = TrainingModel(pipeline, ("imitative_unet", "reference_unet", "image_projection", "depth_guider"))
    if checkpointing:
        pipeline.imitative_unet.enable_gradient_checkpointing()
        pipeline.reference_unet.enable_gradient_checkpointing()
    encoded = _encoded(pipeline, photo_pairs, keep=(True, False))
    loss = model(encoded)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_keeps_loss_and_gradients(photo_pairs):
    plain_loss, plain_grads = _loss_and_gradients(photo_pairs, checkpointing=False)
    ckpt_loss, ckpt_grads = _loss_and_gradients(photo_pairs, checkpointing=True)
    assert torch.allclose(plain_loss, ckpt_loss, atol=1e-6)
    assert plain_grads.keys() == ckpt_grads.keys()
    assert any(name.startswith("trained.reference_unet.") for name in plain_grads)
    for name, gradient in plain_grads.items():
        assert torch.allclose(gradient, ckpt_grads[name], atol=1e-5, rtol=1e-4), name


def test_tiny_model_overfits_a_fixed_batch(photo_pairs):
    torch.manual_seed(0)
    pipeline = build_random_pipeline("tiny", seed=0)
    model = TrainingModel(pipeline, ("imitative_unet", "image_projection", "depth_guider"))
    encoded = _encoded(pipeline, photo_pairs, keep=(True,), zero_depth=(False,))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(10):
        loss = model(encoded)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_target_is_what_the_ddim_step_reads(photo_pairs, prediction_type):
    """A perfect prediction of the target makes DDIM's x0 estimate the clean source latent (the VAE sample
    of the source drawn with the row's VAE noise), for ε and v alike."""
    from diffusers import DDIMScheduler

    pipeline = build_random_pipeline("tiny", seed=0)
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config, prediction_type=prediction_type)
    pipeline.scheduler.set_timesteps(1000)
    batch = default_collate([photo_pairs[index] for index in range(2)])
    randomness = draw_randomness(micro_batch_generator(0, 0, 0, 0), 2, 8, 1000, 0.0, 0.0)
    encoded = encode_batch(pipeline, batch, randomness)
    with torch.no_grad():
        clean = pipeline.encode_latents(batch["source"], randomness.vae_noise[0])  # (B, 4, h, w)
    estimates = torch.stack([pipeline.scheduler.step(target[None], int(t), noisy[None]).pred_original_sample[0]
                             for target, t, noisy in zip(encoded.target, encoded.timesteps, encoded.noisy_latents)])
    assert not torch.allclose(encoded.noisy_latents, clean, atol=1e-2)
    torch.testing.assert_close(estimates, clean, atol=1e-3, rtol=0)


def test_zeroed_depth_rows_feed_the_depth_model_zeros(photo_pairs, tiny_pipeline):
    batch = default_collate([photo_pairs[index] for index in range(2)])
    randomness = draw_randomness(micro_batch_generator(0, 0, 0, 0), 2, 8, 1000, 0.0, 0.0)
    randomness.zero_depth = torch.tensor([False, True])
    inputs = []
    hook = tiny_pipeline.depth_estimator.register_forward_pre_hook(
        lambda _, args, kwargs: inputs.append(kwargs.get("pixel_values", args[0] if args else None)), with_kwargs=True)
    try:
        encoded = encode_batch(tiny_pipeline, batch, randomness)
    finally:
        hook.remove()
    [pixel_values] = inputs  # (2, 3, d, d)
    assert torch.count_nonzero(pixel_values[1]) == 0
    assert torch.count_nonzero(pixel_values[0]) > 0
    assert not torch.equal(encoded.depth[0], encoded.depth[1])


def test_an_unsupported_prediction_type_is_a_user_error():
    from diffusers import DDIMScheduler

    from mimicbrush_cli.errors import MimicBrushError
    from mimicbrush_cli.training.objective import prediction_target

    scheduler = DDIMScheduler(prediction_type="sample")
    latents = torch.zeros(1, 4, 8, 8)
    with pytest.raises(MimicBrushError, match="model.prediction_type"):
        prediction_target(scheduler, latents, latents, torch.tensor([10]))


def test_token_dropout_withholds_the_clip_tokens_but_keeps_the_reference_attention(photo_pairs):
    pipeline = build_random_pipeline("tiny", seed=0)
    batch = default_collate([photo_pairs[index] for index in range(2)])
    randomness = draw_randomness(micro_batch_generator(0, 0, 0, 0), 2, 8, 1000, 0.0, 0.0, token_dropout=0.0)
    randomness.drop_tokens = torch.tensor([True, False])
    encoded = encode_batch(pipeline, batch, randomness)
    assert encoded.keep_reference.tolist() == [True, True]
    assert torch.count_nonzero(encoded.clip_pixel_values[0]) == 0  # the unconditional image's tokens
    assert torch.count_nonzero(encoded.clip_pixel_values[1]) > 0


def test_token_dropout_is_drawn_last_so_runs_without_it_replay_their_draws():
    without = draw_randomness(micro_batch_generator(3, 5, 0, 0), 4, 8, 1000, 0.1, 0.5)
    with_dropout = draw_randomness(micro_batch_generator(3, 5, 0, 0), 4, 8, 1000, 0.1, 0.5, token_dropout=0.5)
    for name in ("noise", "vae_noise", "timesteps", "keep_reference", "zero_depth"):
        assert torch.equal(getattr(without, name), getattr(with_dropout, name)), name
    assert not without.drop_tokens.any()
