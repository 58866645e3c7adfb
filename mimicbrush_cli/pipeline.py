"""MimicBrushPipeline: encode each edit once, denoise with CFG and reference attention, decode, paste back.

A diffusers `DiffusionPipeline`, so it saves and loads as a folder of components
(`save_pretrained` / `from_pretrained`), moves with `.to()`, and supports
`enable_model_cpu_offload()`. Per denoising step the imitative U-Net runs at batch 2·E·S
(unconditional + conditional rows for E edits × S samples); the reference U-Net runs only for the
E conditional references, because the unconditional rows never read its features. The reference
U-Net never sees the noisy latents, so one pass of it serves several denoising steps, batched
over their timesteps: the same features for less per-call overhead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from transformers import CLIPVisionModelWithProjection

from . import imaging
from .models.build import CLIPImageProcessor
from .models.depth import DepthGuider, predict_depth, prepare_depth_input
from .models.image_encoder import ImageTokenProjection, encode_reference_tokens
from .models.reference_attention import RELEASED_REFERENCE_RATIO, FeatureBank, attach_reference_attention
from .models.unets import imitative_unet_input

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EditSettings:
    """How to run an edit; the defaults are the released ones (50 DDIM steps, guidance 5)."""

    steps: int = 50
    guidance: float = 5.0
    keep_shape: bool = False
    crop: bool = True
    seed: int = 0
    num_samples: int = 1
    reference_cache: bool = False  # opt-in approximation: reference features from the first step only
    reference_steps_per_pass: int = 4  # >= 1; exact: timesteps batched per reference U-Net pass (memory grows with it)


@dataclass
class EncodedEdits:
    """Everything the denoising loop needs, encoded once per edit (E edits)."""

    mask_latents: torch.Tensor            # (E, 1, h, w), 1 = generate
    masked_source_latents: torch.Tensor   # (E, 4, h, w)
    depth_latents: torch.Tensor           # (E, 4, h, w)
    reference_latents: torch.Tensor       # (E, 4, h, w), clean
    reference_tokens: torch.Tensor        # (E, T, D)
    unconditional_tokens: torch.Tensor    # (1, T, D)


class MimicBrushPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->image_projection->depth_estimator->depth_guider->reference_unet->imitative_unet->vae"
    _optional_components = ["depth_estimator"]

    def __init__(self, imitative_unet: UNet2DConditionModel, reference_unet: UNet2DConditionModel, vae: AutoencoderKL,
                 image_encoder: CLIPVisionModelWithProjection, image_projection: ImageTokenProjection,
                 depth_guider: DepthGuider, scheduler: DDIMScheduler, feature_extractor: CLIPImageProcessor,
                 depth_estimator=None, reference_ratio: float = RELEASED_REFERENCE_RATIO,
                 depth_input_size: int = 518) -> None:
        super().__init__()
        self.register_modules(imitative_unet=imitative_unet, reference_unet=reference_unet, vae=vae,
                              image_encoder=image_encoder, image_projection=image_projection,
                              depth_guider=depth_guider, depth_estimator=depth_estimator, scheduler=scheduler,
                              feature_extractor=feature_extractor)
        self.register_to_config(reference_ratio=reference_ratio, depth_input_size=depth_input_size)
        self.bank: FeatureBank = attach_reference_attention(reference_unet, imitative_unet, ratio=reference_ratio)

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        # Under model CPU offload every component rests on the CPU between uses: inputs go where models run.
        offload_device = getattr(self, "_offload_device", None)
        if offload_device is not None and getattr(self, "_all_hooks", None):
            return torch.device(offload_device)
        return super().device

    @property
    def resolution(self) -> int:
        return int(self.imitative_unet.config.sample_size) * self.vae_scale_factor

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def has_depth_model(self) -> bool:
        return self.depth_estimator is not None

    # ------------------------------------------------------------------ encoding

    def encode_latents(self, pixels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """VAE latents of (B, 3, R, R) pixels in [-1, 1] as a *sample*, drawn with the given noise."""
        distribution = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
        sample = distribution.mean + distribution.std * noise.to(distribution.mean.device, distribution.mean.dtype)
        return sample.float() * self.vae.config.scaling_factor

    def clip_pixel_values(self, squares: Sequence[np.ndarray]) -> torch.Tensor:
        pixel_values = self.feature_extractor(images=list(squares), return_tensors="pt").pixel_values
        return pixel_values.to(self.device)

    def reference_tokens(self, clip_pixel_values: torch.Tensor) -> torch.Tensor:
        return encode_reference_tokens(self.image_encoder, self.image_projection, clip_pixel_values)

    def unconditional_tokens(self) -> torch.Tensor:
        """Tokens of an all-zero *normalised* image: the CFG branch without a reference."""
        size = self.feature_extractor.crop_size["height"]
        return self.reference_tokens(torch.zeros(1, 3, size, size, device=self.device))

    def depth_latents(self, depth_pixel_values: torch.Tensor, pixel_size: int) -> torch.Tensor:
        """Depth latents from depth-model inputs; keep-shape off passes all-zero inputs (released)."""
        if self.depth_estimator is None:
            depth = torch.zeros(depth_pixel_values.shape[0], 1, *depth_pixel_values.shape[-2:], device=self.device)
        else:
            depth = predict_depth(self.depth_estimator, depth_pixel_values.to(self.device, self.depth_estimator.dtype))
        return self.depth_guider(depth.to(self.depth_guider.dtype), pixel_size).float()

    def encode_edits(self, prepared: Sequence[imaging.PreparedEdit], keep_shape: bool,
                     generators: Sequence[torch.Generator]) -> EncodedEdits:
        resolution = self.resolution
        latent_size = resolution // self.vae_scale_factor
        latent_shape = (4, latent_size, latent_size)
        sources = np.stack([imaging.to_model_range(edit.source) for edit in prepared])
        masks = np.stack([edit.mask for edit in prepared])
        masked_sources = np.stack([imaging.black_out_mask(source, mask) for source, mask in zip(sources, masks)])
        references = np.stack([imaging.to_model_range(edit.reference) for edit in prepared])
        # Noise for the two VAE samples of each edit comes from that edit's generator, so an edit gives
        # the same result alone or in a batch.
        masked_noise = torch.stack([torch.randn(latent_shape, generator=g) for g in generators])
        reference_noise = torch.stack([torch.randn(latent_shape, generator=g) for g in generators])
        mask_pixels = torch.from_numpy(masks[:, None].astype(np.float32))
        if keep_shape:
            depth_inputs = np.stack([prepare_depth_input(edit.source_square, self.config.depth_input_size)
                                     for edit in prepared])
            depth_pixel_values = torch.from_numpy(depth_inputs)
        else:
            size = self.config.depth_input_size
            depth_pixel_values = torch.zeros(len(prepared), 3, size, size)
        return EncodedEdits(
            mask_latents=F.interpolate(mask_pixels, size=(latent_size, latent_size), mode="nearest").to(self.device),
            masked_source_latents=self.encode_latents(torch.from_numpy(masked_sources), masked_noise),
            depth_latents=self.depth_latents(depth_pixel_values, resolution),
            reference_latents=self.encode_latents(torch.from_numpy(references), reference_noise),
            reference_tokens=self.reference_tokens(self.clip_pixel_values([edit.reference_square for edit in prepared])).float(),
            unconditional_tokens=self.unconditional_tokens().float(),
        )

    # ------------------------------------------------------------------ denoising

    def run_reference_unet(self, reference_latents: torch.Tensor, timestep: torch.Tensor,
                           tokens: torch.Tensor) -> None:
        """Fill the feature bank: the reference U-Net on clean reference latents at the same timestep."""
        self.bank.clear()
        dtype = self.reference_unet.dtype
        self.reference_unet(reference_latents.to(dtype), timestep, encoder_hidden_states=tokens.to(dtype))

    def run_reference_pass(self, encoded: EncodedEdits, timesteps: torch.Tensor) -> None:
        """Reference features of every edit for K timesteps in one batch: bank row k·E + e holds edit e
        at `timesteps[k]`."""
        steps = len(timesteps)
        num_edits = encoded.reference_latents.shape[0]
        self.run_reference_unet(encoded.reference_latents.repeat(steps, 1, 1, 1),
                                timesteps.repeat_interleave(num_edits), encoded.reference_tokens.repeat(steps, 1, 1))

    def predict_noise(self, latents: torch.Tensor, timestep: torch.Tensor, encoded: EncodedEdits,
                      num_samples: int, guidance: float,
                      reference_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier-free-guided noise prediction for E·S latents (rows grouped by edit).

        `reference_rows` (E,) are the bank rows holding each edit's reference features for this step;
        without them the reference U-Net runs now, for this timestep.
        """
        num_edits = encoded.reference_latents.shape[0]
        if reference_rows is None:
            self.run_reference_unet(encoded.reference_latents, timestep, encoded.reference_tokens)
            reference_rows = torch.arange(num_edits, device=latents.device)
        repeat = lambda tensor: tensor.repeat_interleave(num_samples, dim=0)  # noqa: E731
        condition = torch.cat([repeat(encoded.mask_latents), repeat(encoded.masked_source_latents),
                               repeat(encoded.depth_latents)], dim=1)  # (E·S, 9, h, w)
        edit_of_row = reference_rows.to(latents.device).repeat_interleave(num_samples)
        cond_tokens = repeat(encoded.reference_tokens)
        use_cfg = guidance != 1.0
        if use_cfg:
            uncond_tokens = encoded.unconditional_tokens.expand(latents.shape[0], -1, -1)
            latents_in = torch.cat([latents, latents])
            condition = torch.cat([condition, condition])
            tokens = torch.cat([uncond_tokens, cond_tokens])
            reference_index = torch.cat([torch.full_like(edit_of_row, -1), edit_of_row])
        else:
            latents_in, tokens, reference_index = latents, cond_tokens, edit_of_row
        self.bank.reference_index = reference_index
        dtype = self.imitative_unet.dtype
        model_input = imitative_unet_input(latents_in, condition[:, :1], condition[:, 1:5], condition[:, 5:9])
        noise = self.imitative_unet(model_input.to(dtype), timestep, encoder_hidden_states=tokens.to(dtype)).sample.float()
        if not use_cfg:
            return noise
        noise_uncond, noise_cond = noise.chunk(2)
        return noise_uncond + guidance * (noise_cond - noise_uncond)

    @torch.no_grad()
    def denoise(self, encoded: EncodedEdits, settings: EditSettings, generators: Sequence[torch.Generator],
                callback: StepCallback | None = None) -> torch.Tensor:
        """DDIM from pure noise (strength 1, eta 0). Returns (E·S, 4, h, w) clean latents."""
        latent_size = self.resolution // self.vae_scale_factor
        shape = (4, latent_size, latent_size)
        latents = torch.stack([torch.randn(shape, generator=g) for g in generators
                               for _ in range(settings.num_samples)]).to(self.device)
        self.scheduler.set_timesteps(settings.steps, device=self.device)
        latents = latents * self.scheduler.init_noise_sigma
        timesteps = self.scheduler.timesteps
        edits = torch.arange(encoded.reference_latents.shape[0], device=self.device)
        per_pass = settings.reference_steps_per_pass
        try:
            for step, timestep in enumerate(timesteps):
                if settings.reference_cache:
                    if step == 0:
                        self.run_reference_pass(encoded, timesteps[:1])
                    rows = edits
                else:
                    if step % per_pass == 0:
                        self.run_reference_pass(encoded, timesteps[step:step + per_pass])
                    rows = (step % per_pass) * len(edits) + edits
                noise = self.predict_noise(latents, timestep, encoded, settings.num_samples, settings.guidance, rows)
                latents = self.scheduler.step(noise, timestep, latents, eta=0.0).prev_sample
                if callback is not None:
                    callback(step + 1, len(timesteps))
        finally:
            self.bank.clear()
            self.bank.reference_index = None
        return latents

    def decode(self, latents: torch.Tensor) -> list[np.ndarray]:
        pixels = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return [imaging.from_model_range(image) for image in pixels.float().cpu().numpy()]

    # ------------------------------------------------------------------ the edit

    @torch.no_grad()
    def __call__(self, sources: np.ndarray | Sequence[np.ndarray], references: np.ndarray | Sequence[np.ndarray],
                 masks: np.ndarray | Sequence[np.ndarray], settings: EditSettings = EditSettings(),
                 callback: StepCallback | None = None) -> list[list[np.ndarray]]:
        """Edit E sources; returns, for each edit, `settings.num_samples` full-size uint8 results."""
        sources, references, masks = (
            [items] if isinstance(items, np.ndarray) else list(items) for items in (sources, references, masks))
        if not len(sources) == len(references) == len(masks):
            raise ValueError("sources, references and masks must have the same length")
        prepared = [imaging.prepare_edit(source, reference, mask, self.resolution, settings.crop)
                    for source, reference, mask in zip(sources, references, masks)]
        generators = [torch.Generator().manual_seed(settings.seed) for _ in prepared]
        encoded = self.encode_edits(prepared, settings.keep_shape, generators)
        latents = self.denoise(encoded, settings, generators, callback)
        predictions = self.decode(latents)
        results = []
        for index, (source, mask, edit) in enumerate(zip(sources, masks, prepared)):
            samples = predictions[index * settings.num_samples:(index + 1) * settings.num_samples]
            results.append([imaging.finish_edit(source, mask, edit, prediction) for prediction in samples])
        return results
