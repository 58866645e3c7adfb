"""Starting weights: the paper's SD-1.5 + SD-inpainting initialisation, and exporting checkpoints."""

from __future__ import annotations

import pytest
import torch
from training_helpers import PhotoPairs, tiny_config
from diffusers import UNet2DConditionModel

from mimicbrush_cli.loading import load_pipeline_folder
from mimicbrush_cli.models.build import build_image_encoder, build_reference_unet, build_vae, model_size
from mimicbrush_cli.models.unets import INPAINTING_IN_CHANNELS
from mimicbrush_cli.training import train
from mimicbrush_cli.training.checkpointing import list_checkpoints
from mimicbrush_cli.training.export import export_checkpoint
from mimicbrush_cli.training.initialise import pipeline_from_stable_diffusion


@pytest.fixture(scope="module")
def sd_folders(tmp_path_factory):
    """Tiny SD-1.5 (unet, vae), SD-inpainting (9-channel unet) and CLIP image encoder folders."""
    root = tmp_path_factory.mktemp("sd")
    size = model_size("tiny")
    torch.manual_seed(1)
    UNet2DConditionModel(**{**size.unet, "in_channels": INPAINTING_IN_CHANNELS}).save_pretrained(
        root / "sd-inpainting" / "unet")
    build_reference_unet(size).save_pretrained(root / "sd15" / "unet")
    build_vae(size).save_pretrained(root / "sd15" / "vae")
    build_image_encoder(size).save_pretrained(root / "image_encoder")
    return {"init": "stable-diffusion", "sd15": str(root / "sd15"), "sd_inpainting": str(root / "sd-inpainting"),
            "image_encoder": str(root / "image_encoder")}


def test_stable_diffusion_init_widens_inpainting_and_copies_sd15(sd_folders):
    from mimicbrush_cli.training.config import load_train_config

    pipeline = pipeline_from_stable_diffusion(load_train_config({"model": sd_folders}).model)
    inpainting = UNet2DConditionModel.from_pretrained(f"{sd_folders['sd_inpainting']}/unet")
    sd15 = UNet2DConditionModel.from_pretrained(f"{sd_folders['sd15']}/unet")
    conv_in = pipeline.imitative_unet.conv_in.weight
    assert conv_in.shape[1] == 13
    assert torch.equal(conv_in[:, :9], inpainting.conv_in.weight) and not conv_in[:, 9:].any()
    assert torch.equal(pipeline.reference_unet.conv_in.weight, sd15.conv_in.weight)
    assert pipeline.depth_estimator is None
    # One end of the depth path must be non-zero or neither end would ever get a gradient.
    assert pipeline.depth_guider.conv_out.weight.abs().sum() > 0


@pytest.fixture(scope="module")
def sd_run(sd_folders, tmp_path_factory):
    output = tmp_path_factory.mktemp("sd-run")
    config = tiny_config(output, model=sd_folders, steps=2, batch_size=1, optimizer__max_grad_norm=None)
    initial = pipeline_from_stable_diffusion(config.model)
    return config, initial, train(config, PhotoPairs(length=2), show_progress=False)


def test_stable_diffusion_init_trains_the_depth_path(sd_run):
    _, initial, result = sd_run
    assert result.pipeline.imitative_unet.conv_in.weight[:, 9:].abs().sum() > 0
    assert not torch.equal(result.pipeline.depth_guider.conv_out.weight, initial.depth_guider.conv_out.weight)


def test_checkpoint_exports_to_an_edit_folder(sd_run, tmp_path):
    config, _, result = sd_run
    exported = export_checkpoint(config, list_checkpoints(config.output_dir)[-1], tmp_path / "model")
    pipeline = load_pipeline_folder(exported)
    assert torch.equal(pipeline.imitative_unet.conv_in.weight, result.pipeline.imitative_unet.conv_in.weight)
    assert torch.equal(pipeline.depth_guider.conv_out.weight, result.pipeline.depth_guider.conv_out.weight)


@pytest.mark.parametrize("align", [False, True])
def test_align_reference_unet_option_copies_the_imitative_unet(align):
    from mimicbrush_cli.training.config import load_train_config
    from mimicbrush_cli.training.initialise import build_training_pipeline

    config = load_train_config({"model": {"init": "random", "size": "tiny", "align_reference_unet": align}}).model
    pipeline = build_training_pipeline(config)
    name = "mid_block.attentions.0.transformer_blocks.0.attn1.to_k.weight"
    same = torch.equal(pipeline.reference_unet.state_dict()[name], pipeline.imitative_unet.state_dict()[name])
    assert same == align


def test_prediction_type_option_reaches_the_saved_scheduler(tmp_path):
    from mimicbrush_cli.models.checkpoints import save_pipeline_atomically
    from mimicbrush_cli.training.config import load_train_config
    from mimicbrush_cli.training.initialise import build_training_pipeline

    config = load_train_config({"model": {"init": "random", "size": "tiny", "prediction_type": "v_prediction"}}).model
    save_pipeline_atomically(build_training_pipeline(config), tmp_path / "model")
    assert load_pipeline_folder(tmp_path / "model").scheduler.config.prediction_type == "v_prediction"
    default = load_train_config({"model": {"init": "random", "size": "tiny"}}).model
    assert build_training_pipeline(default).scheduler.config.prediction_type == "epsilon"


def test_reference_positions_of_the_config_reach_the_attention():
    from mimicbrush_cli.training.config import ModelConfig
    from mimicbrush_cli.training.initialise import build_training_pipeline

    pipeline = build_training_pipeline(ModelConfig(init="random", size="tiny", reference_positions="local"))
    assert pipeline.bank.positions == "local" and pipeline.config.reference_positions == "local"
    assert build_training_pipeline(ModelConfig(init="random", size="tiny")).bank.positions == "none"
