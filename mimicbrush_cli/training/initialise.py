"""Where a training run's weights start: random, a model folder, or Stable Diffusion (the paper's recipe)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPVisionModelWithProjection

from ..errors import MimicBrushError, first_line
from ..loading import build_random_pipeline, load_pipeline_folder
from ..models.build import build_clip_image_processor, build_scheduler
from ..models.depth import DepthGuider
from ..models.image_encoder import ImageTokenProjection
from ..models.unets import align_reference_unet, widen_inpainting_unet
from .config import ModelConfig


def _require_folder(path: Path, what: str) -> Path:
    if not Path(path).is_dir():
        raise MimicBrushError(f"{what} folder not found: {path}")
    return Path(path)


def _load(loader, path: Path, what: str, **kwargs):
    try:
        return loader(_require_folder(path, what), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise MimicBrushError(f"cannot load {what} from {path}: {first_line(error)}") from None


def pipeline_from_stable_diffusion(config: ModelConfig):
    """The paper's initialisation: SD-inpainting → imitative U-Net, SD-1.5 → reference U-Net.

    The inpainting U-Net keeps its 9 pretrained input channels and gets 4 zero-initialised depth
    channels. The new depth guider's `conv_out` is then re-initialised at random instead of zero:
    with both ends of the depth path at zero neither would ever receive a gradient, while a zero
    U-Net side alone still leaves the initial prediction exactly that of the inpainting model.
    """
    from ..models.depth_checkpoint import load_depth_anything_from_original
    from ..pipeline import MimicBrushPipeline

    sd15 = _require_folder(config.sd15, "SD-1.5")
    imitative_unet = widen_inpainting_unet(_load(UNet2DConditionModel.from_pretrained,
                                                 Path(config.sd_inpainting) / "unet", "SD-inpainting U-Net"))
    reference_unet = _load(UNet2DConditionModel.from_pretrained, sd15 / "unet", "SD-1.5 U-Net")
    vae = _load(AutoencoderKL.from_pretrained, Path(config.vae or sd15 / "vae"), "VAE")
    image_encoder = _load(CLIPVisionModelWithProjection.from_pretrained, config.image_encoder, "CLIP image encoder")
    depth_estimator = None
    if config.depth_model is not None:
        if not Path(config.depth_model).is_file():
            raise MimicBrushError(f"depth model not found: {config.depth_model}")
        depth_estimator = load_depth_anything_from_original(Path(config.depth_model))
    if imitative_unet.config.cross_attention_dim != reference_unet.config.cross_attention_dim:
        raise MimicBrushError("SD-inpainting and SD-1.5 U-Nets have different cross-attention widths")
    torch.manual_seed(config.seed)
    image_projection = ImageTokenProjection(image_hidden_size=image_encoder.config.hidden_size,
                                            cross_attention_dim=imitative_unet.config.cross_attention_dim)
    depth_guider = DepthGuider()
    depth_guider.conv_out.reset_parameters()
    depth_input_size = 518 if depth_estimator is None else depth_estimator.config.backbone_config.image_size
    return MimicBrushPipeline(
        imitative_unet=imitative_unet, reference_unet=reference_unet, vae=vae, image_encoder=image_encoder,
        image_projection=image_projection, depth_guider=depth_guider, depth_estimator=depth_estimator,
        scheduler=build_scheduler(), feature_extractor=build_clip_image_processor(image_encoder.config.image_size),
        depth_input_size=depth_input_size)


def build_training_pipeline(config: ModelConfig):
    """The `MimicBrushPipeline` a run starts from (fp32, CPU: every initialiser builds it so)."""
    if config.init == "random":
        pipeline = build_random_pipeline(config.size, seed=config.seed)
    elif config.init == "folder":
        pipeline = load_pipeline_folder(Path(config.path))
    else:
        pipeline = pipeline_from_stable_diffusion(config)
    if config.reference_positions is not None:
        pipeline.set_reference_positions(config.reference_positions)
    if config.align_reference_unet:
        align_reference_unet(pipeline.reference_unet, pipeline.imitative_unet)
    if config.prediction_type is not None:
        pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config, prediction_type=config.prediction_type)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
