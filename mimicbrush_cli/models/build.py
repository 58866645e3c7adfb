"""Named model sizes, built offline from configs with random weights.

- `released`: the architecture of the released MimicBrush weights (SD-1.5 U-Nets, sd-vae-ft-mse,
  OpenCLIP ViT-H/14, Depth Anything v1 ViT-B/14) at 512 px. Used for speed and memory benchmarks
  and as the skeleton that released weights load into.
- `tiny`: the same architecture shrunk so a whole edit runs in well under a second on a CPU (tests).
- `demo`: a small f = 8 model (16 × 16 latents at 128 px), the first bundled model, trainable on a CPU in an hour.
- `demo-f4`: the architecture of the bundled demo model (`mimicbrush_cli/assets/demo_model`): f = 4 latents.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

try:  # transformers >= 5: the PIL backend by name (the default one needs torchvision)
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # transformers 4.x
    from transformers import CLIPImageProcessor

from ..errors import MimicBrushError
from .image_encoder import ImageTokenProjection
from .unets import IMITATIVE_IN_CHANNELS

# The released DDIM settings (REFERENCE.md §2); the scheduler config any model folder must carry.
RELEASED_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}
SD_VAE_SCALING_FACTOR = 0.18215
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_SD15_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32,
}
_SD_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "sample_size": 256,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": SD_VAE_SCALING_FACTOR,
}
_VIT_H14: dict[str, Any] = {
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
    "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
}


@dataclass(frozen=True)
class ModelSize:
    """Everything that differs between named sizes; the architecture itself never changes."""

    name: str
    resolution: int                    # working size in pixels (square)
    unet: dict[str, Any]               # UNet2DConditionModel kwargs shared by both U-Nets
    vae: dict[str, Any]                # AutoencoderKL kwargs (downsampling 2 ** (levels - 1))
    image_encoder: dict[str, Any]      # CLIPVisionConfig kwargs
    depth: str                         # "vitb14" | "tiny" | "none" (a model folder without depth model)
    depth_guider: dict[str, Any] = field(default_factory=dict)
    depth_input_size: int = 518

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def clip_image_size(self) -> int:
        return int(self.image_encoder["image_size"])


_DEMO_IMAGE_ENCODER = {**_VIT_H14, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
                       "num_attention_heads": 4, "image_size": 112, "projection_dim": 128}
_DEMO_UNET = {**_SD15_UNET, "layers_per_block": 1, "block_out_channels": (64, 128, 128), "cross_attention_dim": 128,
              "attention_head_dim": 4, "norm_num_groups": 32}

MODEL_SIZES: dict[str, ModelSize] = {
    "released": ModelSize(name="released", resolution=512, unet=_SD15_UNET, vae=_SD_VAE, image_encoder=_VIT_H14,
                          depth="vitb14"),
    "tiny": ModelSize(
        name="tiny", resolution=64,
        unet={**_SD15_UNET, "sample_size": 8, "layers_per_block": 1, "block_out_channels": (32, 64),
              "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
              "cross_attention_dim": 32, "attention_head_dim": 4, "norm_num_groups": 16},
        vae={**_SD_VAE, "block_out_channels": (16, 16, 16, 16), "layers_per_block": 1, "norm_num_groups": 8,
             "sample_size": 64},
        image_encoder={**_VIT_H14, "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3,
                       "num_attention_heads": 4, "image_size": 28, "projection_dim": 32},
        depth="tiny", depth_guider={"block_channels": (8, 8, 16, 16)}, depth_input_size=28),
    "demo": ModelSize(
        # The first bundled model: f = 8 latents, 16 × 16 at 128 px.
        name="demo", resolution=128,
        unet={**_DEMO_UNET, "sample_size": 16,
              "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")},
        vae={**_SD_VAE, "block_out_channels": (16, 32, 64, 64), "layers_per_block": 1, "norm_num_groups": 16,
             "sample_size": 128},
        image_encoder=_DEMO_IMAGE_ENCODER,
        depth="none"),
    "demo-f4": ModelSize(
        # The bundled model (configs/demo_vae.yaml, configs/train_demo.yaml): f = 4 latents, 32 × 32 at 128 px, since
        # the f = 8 VAE above reconstructs held-out frames at only ~18 dB; its widths are what fits the 60 MB
        # budget beside the U-Nets. Attention (and so reference attention)
        # only at 16 × 16 and below: at 32 × 32 it costs ~15× a training step on a CPU.
        name="demo-f4", resolution=128,
        unet={**_DEMO_UNET, "sample_size": 32,
              "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")},
        vae={**_SD_VAE, "block_out_channels": (48, 96, 96), "layers_per_block": 1, "norm_num_groups": 16,
             "sample_size": 128, "mid_block_add_attention": False,
             "down_block_types": ("DownEncoderBlock2D",) * 3, "up_block_types": ("UpDecoderBlock2D",) * 3},
        image_encoder=_DEMO_IMAGE_ENCODER,
        depth="none", depth_guider={"block_channels": (16, 32, 64)}),
}


def model_size(name: str) -> ModelSize:
    try:
        return MODEL_SIZES[name]
    except KeyError:
        raise MimicBrushError(f"unknown model size {name!r} (known: {', '.join(MODEL_SIZES)})") from None


def build_imitative_unet(size: ModelSize) -> UNet2DConditionModel:
    return UNet2DConditionModel(**{**size.unet, "in_channels": IMITATIVE_IN_CHANNELS})


def build_reference_unet(size: ModelSize) -> UNet2DConditionModel:
    return UNet2DConditionModel(**size.unet)


def build_vae(size: ModelSize) -> AutoencoderKL:
    return AutoencoderKL(**size.vae)


def build_image_encoder(size: ModelSize) -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**size.image_encoder))


def build_image_projection(size: ModelSize) -> ImageTokenProjection:
    return ImageTokenProjection(image_hidden_size=size.image_encoder["hidden_size"],
                                cross_attention_dim=size.unet["cross_attention_dim"])


def build_clip_image_processor(image_size: int) -> CLIPImageProcessor:
    """Standard OpenAI CLIP preprocessing: shortest side to the encoder's size, centre crop, normalise."""
    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                              do_center_crop=True, do_normalize=True, do_resize=True, do_convert_rgb=True,
                              image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, resample=3)


def build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**RELEASED_SCHEDULER_CONFIG)


def build_depth_models(size: ModelSize):
    """(depth_estimator or None, depth_guider) for a size."""
    from .depth import DepthGuider, build_depth_anything

    depth_estimator = None if size.depth == "none" else build_depth_anything(size.depth)
    return depth_estimator, DepthGuider(**size.depth_guider)


def at_resolution(size: ModelSize, resolution: int) -> ModelSize:
    """The same size working at another square resolution (the U-Nets' latent `sample_size` changes)."""
    # Every U-Net down block but the last halves the latent, so the latent side must divide evenly.
    multiple = size.vae_scale_factor * 2 ** (len(size.unet["block_out_channels"]) - 1)
    if resolution <= 0 or resolution % multiple:
        raise MimicBrushError(f"resolution {resolution} is not a positive multiple of {multiple} for size {size.name!r}")
    return replace(size, resolution=resolution, unet={**size.unet, "sample_size": resolution // size.vae_scale_factor})


def build_random_components(size_name: str = "tiny", seed: int = 0, resolution: int | None = None) -> dict[str, Any]:
    """The components of a named size with random weights (no download), optionally at another working
    resolution: the keyword arguments of `MimicBrushPipeline` (`loading.build_random_pipeline` assembles them)."""
    size = model_size(size_name)
    if resolution is not None:
        size = at_resolution(size, resolution)
    torch.manual_seed(seed)
    depth_estimator, depth_guider = build_depth_models(size)
    return dict(
        imitative_unet=build_imitative_unet(size), reference_unet=build_reference_unet(size), vae=build_vae(size),
        image_encoder=build_image_encoder(size), image_projection=build_image_projection(size),
        depth_guider=depth_guider, depth_estimator=depth_estimator, scheduler=build_scheduler(),
        feature_extractor=build_clip_image_processor(size.clip_image_size), depth_input_size=size.depth_input_size,
    )
