"""Same weights, same seed, same image as the released inference code (issue 11).

Each step of the released pre/post-processing is re-implemented here from the release's own code
(`run_gradio3_demo.py`: `pad_img_to_square`, `collage_region`, `crop_padding_and_resize`, the blend in
`run_local`; `models/pipeline_mimicbrush.py`: `prepare_latents`, `_encode_vae_image`,
`prepare_mask_latents`; diffusers' `VaeImageProcessor`, which the release calls) and compared with
ours on real photos. The model evaluation itself (U-Nets, reference attention) is ours in both paths.
"""


import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from skimage import data

from test_pipeline import captured_inputs

from mimicbrush_cli import imaging
from mimicbrush_cli.loading import build_random_pipeline
from mimicbrush_cli.models.depth import prepare_depth_input
from mimicbrush_cli.pipeline import EditSettings, EncodedEdits


# ------------------------------------------------------------------ the release, re-implemented

def released_pad_img_to_square(image: Image.Image, is_mask: bool = False) -> Image.Image:
    width, height = image.size
    if height == width:
        return image
    padding = abs(height - width) // 2
    side = max(height, width)
    canvas = Image.new("RGB", (side, side), "black" if is_mask else "white")
    canvas.paste(image, (padding, 0) if height > width else (0, padding))
    return canvas


def released_mask_image(mask: np.ndarray) -> Image.Image:
    """`infer_single`: the 0/1 mask as a 3-channel 0/255 image, padded black."""
    return released_pad_img_to_square(Image.fromarray(np.stack([mask] * 3, -1).astype(np.uint8) * 255), True)


def released_collage_region(image_square: Image.Image, mask_square: Image.Image) -> Image.Image:
    mask = (np.array(mask_square) > 128).astype(np.uint8)
    high = np.array(image_square).astype(np.uint8)
    low = high * 0
    return Image.fromarray(low * mask + high * (1 - mask))


def released_image_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """The pipeline's `image_processor.preprocess`: Lanczos to size, /255, 2x-1 (a channels-last tensor)."""
    return VaeImageProcessor(vae_scale_factor=8).preprocess(image, height=size, width=size).to(torch.float32)


def released_mask_tensor(mask_square: Image.Image, size: int) -> torch.Tensor:
    processor = VaeImageProcessor(vae_scale_factor=1, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    return processor.preprocess(mask_square, height=size, width=size)  # (1, 1, size, size) of 0/1


def released_crop_padding_and_resize(ori_image: np.ndarray, square_image: np.ndarray) -> np.ndarray:
    ori_height, ori_width, _ = ori_image.shape
    scale = max(ori_height / square_image.shape[0], ori_width / square_image.shape[1])
    resized = cv2.resize(square_image, (int(square_image.shape[1] * scale), int(square_image.shape[0] * scale)))
    padding_size = max(resized.shape[0] - ori_height, resized.shape[1] - ori_width)
    if ori_height < ori_width:
        top = padding_size // 2
        return resized[top:resized.shape[0] - (padding_size - top), :, :]
    left = padding_size // 2
    return resized[:, left:resized.shape[1] - (padding_size - left), :]


def released_mask_alpha(mask: np.ndarray) -> np.ndarray:
    mask_alpha = np.stack([mask] * 3, -1).astype(np.uint8) * 255
    for _ in range(10):
        mask_alpha = cv2.GaussianBlur(mask_alpha, (3, 3), 0)
    return mask_alpha / 255


def released_blend(image: np.ndarray, synthesis: np.ndarray, mask: np.ndarray) -> np.ndarray:
    alpha = released_mask_alpha(mask)
    return (synthesis * alpha + image * (1 - alpha)).astype(np.uint8)


def released_postprocess(decoded: torch.Tensor) -> np.ndarray:
    """`image_processor.postprocess(..., output_type="pil")` then `np.array`, for one image."""
    images = (decoded / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
    return (images * 255).round().astype("uint8")[0]


def released_inputs(pipeline, source, reference, mask):
    """Everything `infer_single` and the pipeline make before drawing any noise."""
    size = pipeline.resolution
    reference_square = released_pad_img_to_square(Image.fromarray(reference))
    source_square = released_pad_img_to_square(Image.fromarray(source))
    mask_square = released_mask_image(mask)
    masked_square = released_collage_region(source_square, mask_square)
    return dict(reference_square=reference_square, source_square=source_square,
                reference=released_image_tensor(reference_square, size).to(pipeline.vae.dtype),
                masked=released_image_tensor(masked_square, size).to(pipeline.vae.dtype),
                mask=released_mask_tensor(mask_square, size))


def released_draws(pipeline, inputs, seed):
    """`prepare_latents` then `prepare_mask_latents`: reference sample, initial latents, masked-image sample."""
    generator = torch.Generator().manual_seed(seed)
    vae, latent_size = pipeline.vae, pipeline.resolution // 8
    scaling = vae.config.scaling_factor
    reference_latents = scaling * vae.encode(inputs["reference"]).latent_dist.sample(generator)
    # In the dtype of the prompt embeddings, i.e. the U-Net's (fp16 in the release).
    latents = randn_tensor((1, 4, latent_size, latent_size), generator=generator, device=torch.device("cpu"),
                           dtype=pipeline.imitative_unet.dtype) * pipeline.scheduler.init_noise_sigma
    masked_latents = scaling * vae.encode(inputs["masked"]).latent_dist.sample(generator)
    return reference_latents, latents, masked_latents


@torch.no_grad()
def released_edit(pipeline, source, reference, mask, seed, steps, guidance=5.0, keep_shape=False):
    """The released `run_local`, around our model: returns (the generated square, the final image)."""
    inputs = released_inputs(pipeline, source, reference, mask)
    reference_latents, latents, masked_latents = released_draws(pipeline, inputs, seed)
    latent_size = pipeline.resolution // 8
    depth_input = prepare_depth_input(np.array(inputs["source_square"]), pipeline.config.depth_input_size, keep_shape)
    encoded = EncodedEdits(
        mask_latents=F.interpolate(inputs["mask"], size=(latent_size, latent_size)),
        masked_source_latents=masked_latents,
        depth_latents=pipeline.depth_latents(torch.from_numpy(depth_input)[None], pipeline.resolution),
        reference_latents=reference_latents,
        reference_tokens=pipeline.reference_tokens(pipeline.clip_pixel_values([np.array(inputs["reference_square"])])),
        unconditional_tokens=pipeline.unconditional_tokens())
    outputs = []
    hook = pipeline.imitative_unet.register_forward_hook(lambda _, __, output: outputs.append(output.sample))
    pipeline.scheduler.set_timesteps(steps)
    try:
        for timestep in pipeline.scheduler.timesteps:
            # The reference U-Net every step at batch 2 (conditional and unconditional tokens) on
            # `source_image_latents.repeat(2, 1, 1, 1)`; then our imitative U-Net, whose guidance is redone here.
            pipeline.run_released_reference_pass(encoded, timestep)
            pipeline.predict_noise(latents, timestep, encoded, 1, guidance, reference_rows=torch.arange(1))
            noise_uncond, noise_cond = outputs[-1].chunk(2)
            noise = noise_uncond + guidance * (noise_cond - noise_uncond)
            latents = pipeline.scheduler.step(noise, timestep, latents, eta=0.0).prev_sample
    finally:
        hook.remove()
        pipeline.bank.clear()
        pipeline.bank.reference_index = None
    decoded = pipeline.vae.decode(latents.to(pipeline.vae.dtype) / pipeline.vae.config.scaling_factor).sample
    prediction = released_postprocess(decoded)
    synthesis = released_crop_padding_and_resize(source, prediction)
    return prediction, released_blend(source, synthesis, mask)


# ------------------------------------------------------------------ fixtures and helpers

@pytest.fixture(scope="module")
def pipeline_512():
    """The tiny model at the released working size, 512 px."""
    pipeline = build_random_pipeline("tiny", seed=0, resolution=512)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def tiny_fp16():
    pipeline = build_random_pipeline("tiny", seed=0).to(torch.float16)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def portrait():
    """A taller-than-wide real photo (padding left and right) with a mask over the face, and a reference."""
    source = data.astronaut()[40:440, 120:370]  # (400, 250, 3)
    yy, xx = np.mgrid[:source.shape[0], :source.shape[1]]
    mask = ((yy - 110) / 60) ** 2 + ((xx - 95) / 50) ** 2 < 1
    return source, data.chelsea(), mask


def generated_square(pipeline, photos, settings):
    """The pipeline's decoded square before paste-back, and its final image."""
    squares = []
    decode = pipeline.decode
    pipeline.decode = lambda latents, mean_of=1: squares.extend(decode(latents, mean_of)) or squares
    try:
        final = pipeline(*photos, settings)[0][0]
    finally:
        del pipeline.decode
    return squares[0], final


# ------------------------------------------------------------------ pre-processing

@pytest.mark.parametrize("which", ["photos", "portrait"])
def test_padding_is_the_released_pad_img_to_square(photos, portrait, which):
    source, reference, mask = photos if which == "photos" else portrait
    prepared = imaging.prepare_edit(source, reference, mask, 64, crop=False)
    np.testing.assert_array_equal(prepared.source_square, np.array(released_pad_img_to_square(Image.fromarray(source))))
    np.testing.assert_array_equal(prepared.reference_square,
                                  np.array(released_pad_img_to_square(Image.fromarray(reference))))


@pytest.mark.parametrize("which", ["photos", "portrait"])
def test_mask_at_working_size_is_the_released_mask_processor(photos, portrait, which):
    source, reference, mask = photos if which == "photos" else portrait
    prepared = imaging.prepare_edit(source, reference, mask, 512, crop=False)
    expected = released_mask_tensor(released_mask_image(mask), 512)[0, 0].numpy() == 1
    np.testing.assert_array_equal(prepared.mask, expected)


def vae_encoder_inputs(pipeline, photos, settings=EditSettings(steps=1, crop=False)):
    with captured_inputs(pipeline.vae.encoder) as calls:
        pipeline(*photos, settings)
    return [args[0] for args, _ in calls]


@pytest.mark.parametrize("which", ["photos", "portrait"])
def test_masked_source_is_blacked_out_at_native_size_then_lanczos_resized(tiny_pipeline, photos, portrait, which):
    inputs = released_inputs(tiny_pipeline, *(photos if which == "photos" else portrait))
    encoded = vae_encoder_inputs(tiny_pipeline, photos if which == "photos" else portrait)
    assert sum(torch.equal(tensor, inputs["masked"]) for tensor in encoded) == 1
    assert sum(torch.equal(tensor, inputs["reference"]) for tensor in encoded) == 1


def test_vae_inputs_are_channels_last_as_in_the_release(tiny_pipeline, photos):
    assert released_inputs(tiny_pipeline, *photos)["masked"].is_contiguous(memory_format=torch.channels_last)
    encoded = vae_encoder_inputs(tiny_pipeline, photos)
    assert len(encoded) == 2
    assert all(tensor.is_contiguous(memory_format=torch.channels_last) for tensor in encoded)


# ------------------------------------------------------------------ post-processing

def test_paste_back_resizes_with_cv2_bilinear_and_cuts_the_padding(photos, portrait):
    for source, reference, _ in (photos, portrait):
        full = np.ones(source.shape[:2], bool)  # alpha is 1 everywhere: the result is the resized prediction
        prepared = imaging.prepare_edit(source, reference, full, 512, crop=False)
        prediction = imaging.resize_image(np.array(released_pad_img_to_square(Image.fromarray(reference))), 512)
        result = imaging.finish_edit(source, full, prepared, prediction)
        np.testing.assert_array_equal(result, released_crop_padding_and_resize(source, prediction))


def test_blend_alpha_is_the_8bit_mask_blurred_ten_times_as_released(photos):
    _, _, mask = photos
    np.testing.assert_array_equal(imaging.blend_alpha(mask), released_mask_alpha(mask)[..., 0])


def test_paste_back_truncates_as_released(photos):
    source, _, mask = photos
    prediction = data.coffee()[:source.shape[0], :source.shape[1]]
    expected = released_blend(source, prediction, mask)
    np.testing.assert_array_equal(imaging.paste_back(source, prediction, mask), expected)


def test_finish_edit_is_the_released_paste_back(photos):
    source, reference, mask = photos
    prepared = imaging.prepare_edit(source, reference, mask, 512, crop=False)
    prediction = imaging.resize_image(np.array(released_pad_img_to_square(Image.fromarray(reference))), 512)
    expected = released_blend(source, released_crop_padding_and_resize(source, prediction), mask)
    np.testing.assert_array_equal(imaging.finish_edit(source, mask, prepared, prediction), expected)


def test_decode_rounds_in_the_vae_dtype_as_released(tiny_fp16):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)).to(torch.float16)
    with torch.no_grad():
        decoded = tiny_fp16.vae.decode(latents / tiny_fp16.vae.config.scaling_factor).sample
        ours = tiny_fp16.decode(latents)[0]
    np.testing.assert_array_equal(ours, released_postprocess(decoded))


# ------------------------------------------------------------------ random draws

def test_random_draws_follow_the_released_order(tiny_pipeline, photos):
    """Reference-image VAE sample, then the initial latents, then the masked-image VAE sample."""
    seed = 11
    with torch.no_grad():
        reference_latents, latents, masked_latents = released_draws(
            tiny_pipeline, released_inputs(tiny_pipeline, *photos), seed)
    with captured_inputs(tiny_pipeline.reference_unet) as reference_calls, \
            captured_inputs(tiny_pipeline.imitative_unet) as imitative_calls:
        tiny_pipeline(*photos, EditSettings(steps=1, crop=False, seed=seed))
    model_input = imitative_calls[0][0][0]  # (2, 13, h, w)
    torch.testing.assert_close(reference_calls[0][0][0][:1], reference_latents)
    torch.testing.assert_close(model_input[1:, :4], latents)
    torch.testing.assert_close(model_input[1:, 5:9], masked_latents)


def test_first_of_several_samples_draws_the_released_noise(tiny_pipeline, photos):
    """With S samples, sample 0 starts from the released initial latents and every sample sees the
    released masked-image latents; samples 1..S-1 draw after them."""
    seed = 11
    with torch.no_grad():
        _, latents, masked_latents = released_draws(tiny_pipeline, released_inputs(tiny_pipeline, *photos), seed)
    with captured_inputs(tiny_pipeline.imitative_unet) as calls:
        tiny_pipeline(*photos, EditSettings(steps=1, crop=False, seed=seed, num_samples=3))
    model_input = calls[0][0][0]  # (2·3, 13, h, w): 3 unconditional rows, then 3 conditional rows
    torch.testing.assert_close(model_input[3:4, :4], latents)
    assert not torch.equal(model_input[4, :4], model_input[3, :4])
    torch.testing.assert_close(model_input[3:, 5:9], masked_latents.expand(3, -1, -1, -1))


def test_device_generator_draws_on_the_pipeline_device_in_the_released_dtypes(tiny_fp16):
    """`generator_device="device"`: `torch.Generator(device)`, VAE samples in the VAE's dtype and initial
    latents in the (fp16) denoising dtype, one (1, 4, h, w) draw each, as `randn_tensor` in the release."""
    on_device = tiny_fp16.draw_noise(2, EditSettings(seed=4, num_samples=2, generator_device="device"))
    generator = torch.Generator(tiny_fp16.device).manual_seed(4)
    draws = [randn_tensor((1, 4, 8, 8), generator=generator, device=tiny_fp16.device, dtype=torch.float16)
             for _ in range(4)]  # reference sample, latents of sample 0, masked-image sample, latents of sample 1
    for edit in range(2):  # each edit has its own generator
        assert torch.equal(on_device.reference[edit], draws[0][0])
        assert torch.equal(on_device.initial_latents[2 * edit:2 * edit + 2], torch.cat([draws[1], draws[3]]))
        assert torch.equal(on_device.masked_source[edit], draws[2][0])
    assert on_device.reference.device == tiny_fp16.device
    on_cpu = tiny_fp16.draw_noise(2, EditSettings(seed=4, num_samples=2))
    assert on_cpu.reference.dtype == on_cpu.initial_latents.dtype == torch.float32  # device-independent
    assert torch.equal(on_cpu.initial_latents.half(), on_device.initial_latents)  # a CPU generator: the same values


# ------------------------------------------------------------------ whole edits

@pytest.mark.parametrize("crop, keep_shape", [(False, False), (False, True), (True, False)],
                         ids=["no-crop", "no-crop-depth", "crop-small-image"])
@pytest.mark.slow  # three 512 px edits
def test_edit_equals_the_release_at_512_px(pipeline_512, photos, crop, keep_shape):
    """`--no-crop` (and `--crop` on an image up to 512 px): same seed, same image as the release."""
    settings = EditSettings(steps=2, seed=5, crop=crop, keep_shape=keep_shape)
    square, final = generated_square(pipeline_512, photos, settings)
    released_square, released_final = released_edit(pipeline_512, *photos, seed=5, steps=2, keep_shape=keep_shape)
    assert np.abs(square.astype(int) - released_square).max() <= 1
    assert np.abs(final.astype(int) - released_final).max() <= 1


def test_fp16_edit_keeps_the_released_order_of_operations(tiny_fp16, photos):
    """fp16 latents, fp16 guidance and an fp16 DDIM step, as the release runs on CUDA (here on the CPU)."""
    # One reference pass per step, as in the re-implementation: a batch over timesteps rounds differently in fp16.
    settings = EditSettings(steps=3, seed=2, crop=False, reference_steps_per_pass=1)
    square, final = generated_square(tiny_fp16, photos, settings)
    released_square, released_final = released_edit(tiny_fp16, *photos, seed=2, steps=3)
    np.testing.assert_array_equal(square, released_square)
    np.testing.assert_array_equal(final, released_final)
