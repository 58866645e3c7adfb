"""MimicBrushPipeline: encode each edit once, denoise with CFG and reference attention, decode, paste back.

A diffusers `DiffusionPipeline`, so it saves and loads as a folder of components
(`save_pretrained` / `from_pretrained`), moves with `.to()`, and supports
`enable_model_cpu_offload()`. Per denoising step the imitative U-Net runs at batch 2·E·S
(unconditional + conditional rows for E edits × S samples); the reference U-Net runs only for the
E conditional references, because the unconditional rows never read its features. The reference
U-Net never sees the noisy latents, so one pass of it serves several denoising steps, batched
over their timesteps: the same features for less per-call overhead. The released schedule (the
reference U-Net every step at batch 2·E, unconditional rows included) remains an option of the
loop (`reference_schedule="released"`), for measuring against.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, UNet2DConditionModel, UniPCMultistepScheduler)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPVisionModelWithProjection

from . import imaging
from .errors import MimicBrushError
from .models.build import CLIPImageProcessor
from .models.depth import DepthGuider, predict_depth, prepare_depth_input
from .models.image_encoder import ImageTokenProjection, encode_reference_tokens
from .models.reference_attention import RELEASED_REFERENCE_RATIO, FeatureBank, attach_reference_attention
from .models.unets import imitative_unet_input
from .reference_region import with_reference_region
from .reference_schedule import REFERENCE_SCHEDULES, reference_schedule as reference_schedule_for  # noqa: F401
from .settings import GENERATOR_DEVICES, MAX_SEED, SCHEDULERS, EditSettings, StepCallback  # noqa: F401 (re-exported)

# `EditSettings.scheduler` -> the diffusers solver and its options; each is built from the model's own
# scheduler config, so the noise schedule, prediction type and timestep spacing stay the model's.
SOLVERS: dict[str, tuple[type[SchedulerMixin], dict]] = {
    "ddim": (DDIMScheduler, {}),
    "dpmpp-2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp-2m-karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                      "use_karras_sigmas": True}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
}
assert tuple(SOLVERS) == SCHEDULERS
KEEP_SHAPE_NEEDS_DEPTH = ("--keep-shape needs a depth model, and this model has none (the bundled demo model is "
                          "trained without depth); use the released weights (--model released or --weights DIR)")
REFERENCE_LOCALITY_NEEDS_POSITIONS = ("--reference-locality sets the width of a positional prior, and this model's "
                                      "reference attention has none (reference_positions: none, as released)")


@dataclass
class EditNoise:
    """The random draws of E edits × S samples. Each edit draws from its own generator seeded with the
    seed, in the released order: reference VAE sample, initial latents of sample 0, masked-source VAE
    sample; then the initial latents of samples 1..S-1. Sample 0 thus reproduces the released result
    (which has one sample), whatever S and whichever other edits share the batch."""

    reference: torch.Tensor        # (E, 4, h, w)
    initial_latents: torch.Tensor  # (E·S, 4, h, w), rows grouped by edit
    masked_source: torch.Tensor    # (E, 4, h, w)


@dataclass
class EncodedEdits:
    """Everything the denoising loop needs, encoded once per edit (E edits)."""

    mask_latents: torch.Tensor            # (E, 1, h, w), 1 = generate
    masked_source_latents: torch.Tensor   # (E, 4, h, w)
    depth_latents: torch.Tensor           # (E, 4, h, w)
    reference_latents: torch.Tensor       # (E, 4, h, w), clean
    reference_tokens: torch.Tensor        # (E, T, D)
    unconditional_tokens: torch.Tensor    # (1, T, D)
    # Reference hints at working size (E, R, R), True = copy from here (all True for an edit without one);
    # None: no edit has one.
    reference_regions: torch.Tensor | None = None


def _weights_key(module: torch.nn.Module | None) -> tuple:
    """What a module's output for a fixed input depends on: the module itself (a weak reference, which
    equals a later one only while the module lives, so a new module at a freed one's address differs) and
    each parameter's storage, dtype, device and version (bumped by every in-place update)."""
    if module is None:
        return ()
    return (weakref.ref(module), *((p.data_ptr(), p.dtype, p.device, p._version) for p in module.parameters()))


class MimicBrushPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "image_encoder->image_projection->depth_estimator->depth_guider->reference_unet->imitative_unet->vae"
    _optional_components = ["depth_estimator"]
    # The edit settings a call without settings runs at: the model folder's `edit_settings.json` where it has one
    # (`loading.load_pipeline` sets them), else the released ones.
    edit_defaults: EditSettings = EditSettings()

    def __init__(self, imitative_unet: UNet2DConditionModel, reference_unet: UNet2DConditionModel, vae: AutoencoderKL,
                 image_encoder: CLIPVisionModelWithProjection, image_projection: ImageTokenProjection,
                 depth_guider: DepthGuider, scheduler: DDIMScheduler, feature_extractor: CLIPImageProcessor,
                 depth_estimator=None, reference_ratio: float = RELEASED_REFERENCE_RATIO,
                 depth_input_size: int = 518, reference_positions: str = "none") -> None:
        super().__init__()
        self.register_modules(imitative_unet=imitative_unet, reference_unet=reference_unet, vae=vae,
                              image_encoder=image_encoder, image_projection=image_projection,
                              depth_guider=depth_guider, depth_estimator=depth_estimator, scheduler=scheduler,
                              feature_extractor=feature_extractor)
        # reference_positions: "none" (released) or "local" (models/reference_attention.py, for small models)
        self.register_to_config(reference_ratio=reference_ratio, depth_input_size=depth_input_size,
                                reference_positions=reference_positions)
        self.bank: FeatureBank = attach_reference_attention(reference_unet, imitative_unet, ratio=reference_ratio,
                                                            positions=reference_positions)
        self._offload_execution_device: torch.device | None = None
        # Outputs for the constant inputs every edit feeds (an all-zero image to CLIP for the CFG branch, an
        # all-zero depth input without keep-shape), kept with the weights they came from (`_weights_key`).
        self._constant_outputs: dict[str, tuple[tuple, torch.Tensor]] = {}

    def _constant_output(self, name: str, modules: Sequence[torch.nn.Module], extra: tuple,
                         compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """`compute()`, a function of `modules`' weights alone, computed once for as long as those weights stay
        the same: the same objects, storage, dtype and device, and no in-place update (an optimiser step or
        `load_state_dict` advances a parameter's version counter). With gradients on, computed every time.
        A copy is returned, so that no caller can change what is kept."""
        if torch.is_grad_enabled():
            return compute()
        key = (extra, *(_weights_key(module) for module in modules))
        cached = self._constant_outputs.get(name)
        if cached is None or cached[0] != key:
            cached = self._constant_outputs[name] = (key, compute())
        return cached[1].clone()

    def set_reference_positions(self, positions: str) -> None:
        """Turn the positional prior of the reference attention on ("local") or off ("none"); saved with the model."""
        self.bank.positions = FeatureBank(0, positions=positions).positions  # validates the name
        self.register_to_config(reference_positions=positions)

    def enable_model_cpu_offload(self, gpu_id: int | None = None, device: torch.device | str | None = None) -> None:
        if device is None:
            from diffusers.utils.torch_utils import get_device  # the accelerator diffusers would pick

            device = get_device()
        super().enable_model_cpu_offload(gpu_id=gpu_id, device=device)
        # Where the models run: the index as diffusers chooses it (`gpu_id`, else the device's own, else 0).
        execution = torch.device(device)
        self._offload_execution_device = torch.device(f"{execution.type}:{gpu_id or execution.index or 0}")

    def remove_all_hooks(self) -> None:
        super().remove_all_hooks()
        self._offload_execution_device = None

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        # Under model CPU offload every component rests on the CPU between uses: inputs go where models run.
        if self._offload_execution_device is not None:
            return self._offload_execution_device
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

    @property
    def has_positional_prior(self) -> bool:
        """Whether the reference attention has a positional prior, whose width an edit may set."""
        return self.bank.positions == "local"

    def check_model_settings(self, settings: EditSettings) -> None:
        """Refuse (one line) the settings this model cannot take: `reference_locality` without a positional
        prior, a `reference_timestep` beyond its noise schedule."""
        if settings.reference_locality is not None and not self.has_positional_prior:
            raise MimicBrushError(REFERENCE_LOCALITY_NEEDS_POSITIONS)
        last = self.scheduler.config.num_train_timesteps - 1
        if settings.reference_timestep is not None and settings.reference_timestep > last:
            raise MimicBrushError(f"--reference-timestep must be at most {last}, this model's noisiest timestep")

    @property
    def latent_dtype(self) -> torch.dtype:
        """The denoising loop's precision. The released code keeps latents, guidance and the DDIM step in
        the U-Net's fp16; bf16 has no released counterpart and too few mantissa bits for the DDIM update,
        so it (and fp32) denoises float32 latents."""
        return torch.float16 if self.imitative_unet.dtype == torch.float16 else torch.float32

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
        """Tokens of an all-zero *normalised* image: the CFG branch without a reference (computed once per
        weights: the input never changes)."""
        size = self.feature_extractor.crop_size["height"]
        return self._constant_output(
            "unconditional_tokens", (self.image_encoder, self.image_projection), (size, self.device),
            lambda: self.reference_tokens(torch.zeros(1, 3, size, size, device=self.device)))

    def blank_depth(self, num_edits: int) -> torch.Tensor:
        """The depth model's (E, 1, S, S) output for all-zero inputs, as keep-shape off feeds it (released):
        computed once per weights."""
        size = self.config.depth_input_size
        depth = self._constant_output(
            "blank_depth", (self.depth_estimator,), (size, self.device),
            lambda: predict_depth(self.depth_estimator, torch.zeros(1, 3, size, size, device=self.device,
                                                                      dtype=self.depth_estimator.dtype)))
        return depth.expand(num_edits, -1, -1, -1)

    def depth_latents(self, depth_pixel_values: torch.Tensor | None, pixel_size: int, num_edits: int = 1) -> torch.Tensor:
        """Depth latents from depth-model inputs; keep-shape off (`depth_pixel_values` None) feeds the depth
        model all-zero inputs (released), and a model without a depth model (never asked to keep the shape)
        gets all-zero depth."""
        if self.depth_estimator is None:
            size = self.config.depth_input_size
            depth = torch.zeros(num_edits, 1, size, size, device=self.device)
        elif depth_pixel_values is None:
            depth = self.blank_depth(num_edits)
        else:
            depth = predict_depth(self.depth_estimator, depth_pixel_values.to(self.device, self.depth_estimator.dtype))
        return self.depth_guider(depth.to(self.depth_guider.dtype), pixel_size).float()

    def draw_noise(self, num_edits: int, settings: EditSettings) -> EditNoise:
        """Every random draw of an edit, in the released order (see `EditNoise`).

        One draw is one (1, 4, h, w) tensor, the shape the released code draws (a VAE sample has the
        shape of the latent mean), so a seed gives the released stream. With a "cpu" generator the draws
        are float32 (a CPU generator draws the same values in fp16, rounded); with "device" they are made
        where and in the dtype the released code makes them: on the pipeline's device, VAE samples in the
        VAE's dtype, initial latents in the denoising dtype.
        """
        latent_size = self.resolution // self.vae_scale_factor
        shape = (1, 4, latent_size, latent_size)
        on_device = settings.generator_device == "device"
        device = self.device if on_device else torch.device("cpu")
        vae_dtype = self.vae.dtype if on_device else torch.float32
        latent_dtype = self.latent_dtype if on_device else torch.float32

        def draw(generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)

        reference, initial_latents, masked_source = [], [], []
        for _ in range(num_edits):
            generator = torch.Generator(device).manual_seed(settings.seed)
            reference.append(draw(generator, vae_dtype))
            first_sample = draw(generator, latent_dtype)
            masked_source.append(draw(generator, vae_dtype))
            initial_latents += [first_sample] + [draw(generator, latent_dtype) for _ in range(settings.samples_drawn - 1)]
        return EditNoise(reference=torch.cat(reference), initial_latents=torch.cat(initial_latents),
                         masked_source=torch.cat(masked_source))

    def encode_edits(self, prepared: Sequence[imaging.PreparedEdit], keep_shape: bool,
                     noise: EditNoise) -> EncodedEdits:
        if keep_shape and not self.has_depth_model:
            raise MimicBrushError(KEEP_SHAPE_NEEDS_DEPTH)
        resolution = self.resolution
        latent_size = resolution // self.vae_scale_factor
        masks = np.stack([edit.mask for edit in prepared])
        # The released VAE input is a channels-last view of an (H, W, 3) array; the same layout gives
        # the same convolution arithmetic.
        to_pixels = lambda images: torch.from_numpy(  # noqa: E731
            np.stack([imaging.to_model_range(image) for image in images])).contiguous(memory_format=torch.channels_last)
        mask_pixels = torch.from_numpy(masks[:, None].astype(np.float32))
        depth_pixel_values = None  # keep-shape off: the depth model sees all-zero inputs
        if keep_shape:
            depth_inputs = np.stack([prepare_depth_input(edit.source_square, self.config.depth_input_size)
                                     for edit in prepared])
            depth_pixel_values = torch.from_numpy(depth_inputs)
        reference_latents = self.encode_latents(to_pixels([edit.reference for edit in prepared]), noise.reference)
        masked_source_latents = self.encode_latents(to_pixels([edit.masked_source for edit in prepared]),
                                                    noise.masked_source)
        return EncodedEdits(
            mask_latents=F.interpolate(mask_pixels, size=(latent_size, latent_size), mode="nearest").to(self.device),
            masked_source_latents=masked_source_latents,
            depth_latents=self.depth_latents(depth_pixel_values, resolution, len(prepared)),
            reference_latents=reference_latents,
            reference_tokens=self.reference_tokens(self.clip_pixel_values([edit.clip_input for edit in prepared])).float(),
            unconditional_tokens=self.unconditional_tokens().float(),
            reference_regions=self.reference_regions(prepared),
        )

    def reference_regions(self, prepared: Sequence[imaging.PreparedEdit]) -> torch.Tensor | None:
        """(E, R, R) bool hints (all True for an edit without one), or None where no edit has one."""
        if all(edit.reference_region is None for edit in prepared):
            return None
        everywhere = np.ones((self.resolution, self.resolution), bool)
        return torch.from_numpy(np.stack([everywhere if edit.reference_region is None else edit.reference_region
                                          for edit in prepared])).to(self.device)

    # ------------------------------------------------------------------ denoising

    def make_scheduler(self, name: str) -> SchedulerMixin:
        """A new solver of `SCHEDULERS` from the model's scheduler config: new for every edit, because the
        multistep solvers keep the previous steps' predictions."""
        solver, options = SOLVERS[name]
        return solver.from_config(self.scheduler.config, **options)

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

    def pass_timesteps(self, timesteps: torch.Tensor, per_pass: int) -> torch.Tensor:
        """A pass's timesteps; a compiled reference U-Net gets a short last pass padded to `per_pass` (its
        last timestep repeated, rows no step reads): a new batch size would compile both U-Nets again,
        for minutes, to save at most `per_pass - 1` reference rows of the edit."""
        if len(timesteps) == per_pass or getattr(self.reference_unet, "_compiled_call_impl", None) is None:
            return timesteps
        return torch.cat([timesteps, timesteps[-1:].expand(per_pass - len(timesteps))])

    def run_released_reference_pass(self, encoded: EncodedEdits, timestep: torch.Tensor) -> None:
        """The released schedule's reference pass: one timestep at batch 2·E, the unconditional rows
        (zero-image tokens) as well as the conditional ones, although no imitative row reads the
        unconditional half. Conditional rows come first, so bank row e holds edit e's features."""
        num_edits = encoded.reference_latents.shape[0]
        tokens = torch.cat([encoded.reference_tokens, encoded.unconditional_tokens.expand(num_edits, -1, -1)])
        self.run_reference_unet(encoded.reference_latents.repeat(2, 1, 1, 1), timestep.reshape(1), tokens)

    def predict_noise(self, latents: torch.Tensor, timestep: torch.Tensor, encoded: EncodedEdits,
                      num_samples: int, guidance: float, reference_rows: torch.Tensor | None = None,
                      reference_attention: bool = True) -> torch.Tensor:
        """Classifier-free-guided noise prediction for E·S latents (rows grouped by edit).

        `reference_rows` (E,) are the bank rows holding each edit's reference features for this step;
        without them the reference U-Net runs now, for this timestep. `reference_attention=False`: no row
        reads the reference (an ablation).
        """
        num_edits = encoded.reference_latents.shape[0]
        if reference_rows is None and reference_attention:
            self.run_reference_unet(encoded.reference_latents, timestep, encoded.reference_tokens)
            reference_rows = torch.arange(num_edits, device=latents.device)
        repeat = lambda tensor: tensor.repeat_interleave(num_samples, dim=0)  # noqa: E731
        condition = torch.cat([repeat(encoded.mask_latents), repeat(encoded.masked_source_latents),
                               repeat(encoded.depth_latents)], dim=1)  # (E·S, 9, h, w)
        if reference_attention:
            edit_of_row = reference_rows.to(latents.device).repeat_interleave(num_samples)
        else:
            edit_of_row = torch.full((latents.shape[0],), -1, dtype=torch.long, device=latents.device)
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
        # The unconditional rows come first: the readers slice the conditional rows by a Python int.
        first_reading_row = latents_in.shape[0] - latents.shape[0] if reference_attention else latents_in.shape[0]
        self.bank.read_from_row(first_reading_row, reference_index)
        regions = encoded.reference_regions
        if regions is not None:
            regions = repeat(regions.to(latents.device))
            regions = torch.cat([regions, regions]) if use_cfg else regions  # aligned with the imitative rows
        self.bank.reference_regions = regions
        dtype = self.imitative_unet.dtype
        model_input = imitative_unet_input(latents_in, condition[:, :1], condition[:, 1:5], condition[:, 5:9])
        # Guidance in the latents' dtype: fp16 arithmetic when the released code would do it in fp16.
        noise = self.imitative_unet(model_input.to(dtype), timestep,
                                    encoder_hidden_states=tokens.to(dtype)).sample.to(latents.dtype)
        if not use_cfg:
            return noise
        noise_uncond, noise_cond = noise.chunk(2)
        return noise_uncond + guidance * (noise_cond - noise_uncond)

    @torch.no_grad()
    def denoise(self, encoded: EncodedEdits, settings: EditSettings, initial_latents: torch.Tensor,
                callback: StepCallback | None = None, reference_schedule: str = "batched") -> torch.Tensor:
        """`settings.scheduler` from pure noise (strength 1; DDIM with eta 0), in `latent_dtype`. Returns
        (E·S, 4, h, w) clean latents.

        `reference_schedule` is one of `REFERENCE_SCHEDULES`: "released" runs the released loop (one timestep
        per reference pass, unconditional rows included; no cache). The loop asks its `ReferenceSchedule` per step.
        """
        scheduler = self.make_scheduler(settings.scheduler)
        step_options = {"eta": 0.0} if isinstance(scheduler, DDIMScheduler) else {}
        latents = initial_latents.to(self.device, self.latent_dtype)
        scheduler.set_timesteps(settings.steps, device=self.device)
        latents = latents * scheduler.init_noise_sigma
        timesteps = scheduler.timesteps  # (steps,), floats for some solvers
        schedule = reference_schedule_for(self, encoded, settings, reference_schedule)
        trained_width = self.bank.locality_width
        self.check_model_settings(settings)
        if settings.reference_locality is not None:
            self.bank.locality_width = settings.reference_locality
        self.bank.hint_strength = settings.reference_hint_strength
        try:
            for step, timestep in enumerate(timesteps):
                rows = schedule.rows(step, timesteps)  # None: every row reads nothing (A_self only)
                # Only the noisy latents are scaled (Euler divides by sqrt(sigma² + 1)); the conditions are clean.
                model_latents = scheduler.scale_model_input(latents, timestep)
                noise = self.predict_noise(model_latents, timestep, encoded, settings.samples_drawn, settings.guidance,
                                           rows, settings.reference_attention)
                latents = scheduler.step(noise, timestep, latents, **step_options).prev_sample
                if callback is not None:
                    callback(step + 1, len(timesteps))
        finally:
            self.bank.clear()
            self.bank.reference_index = None
            self.bank.reference_regions = None
            self.bank.hint_strength = None
            self.bank.locality_width = trained_width
        return latents

    def decode(self, latents: torch.Tensor, mean_of: int = 1) -> list[np.ndarray]:
        """uint8 images of (N, 4, h, w) latents; `mean_of` M: N / M images, each the pixel mean of M
        consecutive decodes (before rounding)."""
        pixels = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        unit = (pixels / 2 + 0.5).clamp(0, 1).float()  # clamped in the VAE's dtype, as the released postprocessing
        if mean_of > 1:
            unit = unit.unflatten(0, (-1, mean_of)).mean(dim=1)
        return [imaging.from_unit_range(image) for image in unit.cpu().numpy()]

    @torch.no_grad()
    def autoencode(self, source: np.ndarray, mask: np.ndarray, settings: EditSettings = EditSettings()) -> np.ndarray:
        """The source through the VAE and back (latent mean), prepared and pasted back as an edit is: the
        closest any edit by this model can come to the source, its reconstruction ceiling."""
        edit = imaging.prepare_edit(source, source, mask, self.resolution, settings.crop)
        square = imaging.resize_image(edit.source_square, self.resolution)
        pixels = torch.from_numpy(imaging.to_model_range(square))[None].to(self.device, self.vae.dtype)
        latents = self.vae.encode(pixels).latent_dist.mean.float() * self.vae.config.scaling_factor
        [prediction] = self.decode(latents)
        return imaging.finish_edit(source, mask, edit, prediction, settings.paste_back)

    # ------------------------------------------------------------------ the edit

    @torch.no_grad()
    def __call__(self, sources: np.ndarray | Sequence[np.ndarray], references: np.ndarray | Sequence[np.ndarray],
                 masks: np.ndarray | Sequence[np.ndarray], settings: EditSettings | None = None,
                 callback: StepCallback | None = None, reference_schedule: str = "batched",
                 reference_regions: Sequence[np.ndarray | None] | None = None) -> list[list[np.ndarray]]:
        """Edit E sources; returns, for each edit, `settings.num_samples` full-size uint8 results (each the
        mean of `settings.mean_of` samples). Without settings: the model's `edit_defaults`.
        `reference_schedule`: see `denoise`. `reference_regions`: per edit, a hint (a bool mask of its
        reference, True = the part to copy from; `reference_region.py`) or None."""
        settings = self.edit_defaults if settings is None else settings
        sources, references, masks = (
            [items] if isinstance(items, np.ndarray) else list(items) for items in (sources, references, masks))
        regions = [None] * len(sources) if reference_regions is None else list(reference_regions)
        if not len(sources) == len(references) == len(masks) == len(regions):
            raise ValueError("sources, references, masks and reference regions must have the same length")
        prepared = [with_reference_region(imaging.prepare_edit(source, reference, mask, self.resolution, settings.crop),
                                          reference, region)
                    for source, reference, mask, region in zip(sources, references, masks, regions)]
        noise = self.draw_noise(len(prepared), settings)
        encoded = self.encode_edits(prepared, settings.keep_shape, noise)
        latents = self.denoise(encoded, settings, noise.initial_latents, callback, reference_schedule)
        predictions = self.decode(latents, settings.mean_of)
        results = []
        for index, (source, mask, edit) in enumerate(zip(sources, masks, prepared)):
            samples = predictions[index * settings.num_samples:(index + 1) * settings.num_samples]
            results.append([imaging.finish_edit(source, mask, edit, prediction, settings.paste_back)
                            for prediction in samples])
        return results
