"""Shared fixtures: tiny random models in our folder format and in the released layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from mimicbrush_cli.loading import build_random_pipeline
from mimicbrush_cli.models.depth_checkpoint import to_original_depth_anything_state_dict

torch.set_num_threads(min(2, torch.get_num_threads()))


def write_released_layout(pipeline, root: Path) -> Path:
    """Write `pipeline` the way the released weights are laid out (REFERENCE.md §4)."""
    from mimicbrush_cli.models.reference_attention import unused_reference_unet_parameters

    cleansd, mimicbrush = root / "cleansd", root / "MimicBrush"
    inpainting_config = dict(pipeline.imitative_unet.config)
    inpainting_config["in_channels"] = 9  # the released folder holds the SD-inpainting config
    for folder, config in (("stable-diffusion-inpainting", inpainting_config),
                           ("stable-diffusion-v1-5", dict(pipeline.reference_unet.config))):
        (cleansd / folder / "unet").mkdir(parents=True)
        (cleansd / folder / "unet" / "config.json").write_text(json.dumps(config, default=list))
    unused = set(unused_reference_unet_parameters(pipeline.reference_unet))
    encoder_state = dict(pipeline.image_encoder.state_dict())
    encoder_state["vision_model.embeddings.position_ids"] = torch.arange(
        pipeline.image_encoder.config.num_positions if hasattr(pipeline.image_encoder.config, "num_positions")
        else (pipeline.image_encoder.config.image_size // pipeline.image_encoder.config.patch_size) ** 2 + 1)[None]
    checkpoint = {
        "unet": pipeline.imitative_unet.state_dict(),
        "referencenet": {k: v for k, v in pipeline.reference_unet.state_dict().items() if k not in unused},
        "image_proj": pipeline.image_projection.state_dict(),
        "depth_guider": pipeline.depth_guider.state_dict(),
        "image_encoder": encoder_state,
    }
    (mimicbrush / "mimicbrush").mkdir(parents=True)
    torch.save(checkpoint, mimicbrush / "mimicbrush" / "mimicbrush.bin")
    pipeline.image_encoder.config.save_pretrained(mimicbrush / "image_encoder")
    pipeline.vae.save_pretrained(mimicbrush / "sd-vae-ft-mse", safe_serialization=False)
    (mimicbrush / "depth_model").mkdir(parents=True)
    original = to_original_depth_anything_state_dict(pipeline.depth_estimator.state_dict(), pipeline.depth_estimator.config)
    torch.save(original, mimicbrush / "depth_model" / "depth_anything_vitb14.pth")
    return root


@pytest.fixture(scope="session")
def tiny_pipeline():
    pipeline = build_random_pipeline("tiny", seed=0)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def tiny_pipeline_without_depth():
    """The tiny pipeline's weights without a depth model (as the bundled demo model is)."""
    from mimicbrush_cli.models.build import build_random_components
    from mimicbrush_cli.pipeline import MimicBrushPipeline

    pipeline = MimicBrushPipeline(**{**build_random_components("tiny", seed=0), "depth_estimator": None})
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_pipeline):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    tiny_pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_released_dir(tmp_path_factory, tiny_pipeline):
    return write_released_layout(tiny_pipeline, tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="session")
def photos():
    """Real photos: a source with a mask over the cat's head, and a reference."""
    source = data.chelsea()  # (300, 451, 3)
    mask = np.zeros(source.shape[:2], bool)
    yy, xx = np.mgrid[:300, :451]
    mask[((yy - 110) / 90) ** 2 + ((xx - 230) / 100) ** 2 < 1] = True
    return source, data.coffee(), mask


@pytest.fixture
def photo_files(tmp_path, photos):
    source, reference, mask = photos
    paths = {"source": tmp_path / "source.png", "reference": tmp_path / "reference.jpg", "mask": tmp_path / "mask.png"}
    Image.fromarray(source).save(paths["source"])
    Image.fromarray(reference).save(paths["reference"])
    Image.fromarray(mask.astype(np.uint8) * 255).save(paths["mask"])
    return paths
