"""Depth: the depth guider, Depth Anything configs, released preprocessing, original-layout weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from transformers import DepthAnythingForDepthEstimation

from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.models.depth import (
    DepthGuider,
    build_depth_anything,
    convert_original_depth_anything_state_dict,
    depth_anything_config,
    depth_anything_config_from_original,
    depth_input_shape,
    load_depth_anything_from_original,
    predict_depth,
    prepare_depth_input,
    to_original_depth_anything_state_dict,
    zero_depth_input,
)

TINY_SIZE = 28  # the tiny Depth Anything's input: 2 x 2 patches of 14


# ------------------------------------------------------------------------------------ guider
def test_guider_has_released_parameter_names_and_shapes():
    shapes = {name: tuple(p.shape) for name, p in DepthGuider().named_parameters()}
    convs = [(16, 1), (16, 16), (32, 16), (32, 32), (64, 32), (64, 64), (128, 64), (4, 128)]
    names = ["conv_in"] + [f"blocks.{i}" for i in range(6)] + ["conv_out"]
    expected = {}
    for name, (out_channels, in_channels) in zip(names, convs):
        expected[f"{name}.weight"] = (out_channels, in_channels, 3, 3)
        expected[f"{name}.bias"] = (out_channels,)
    assert shapes == expected


def test_guider_maps_depth_to_latent_size():
    guider = DepthGuider(block_channels=(8, 8, 16, 16))
    depth = torch.rand(2, 1, 37, 45)
    assert guider(depth, 64).shape == (2, 4, 8, 8)
    assert guider(depth, (64, 96)).shape == (2, 4, 8, 12)


def test_guider_resizes_with_align_corners():
    torch.manual_seed(0)
    guider = DepthGuider(block_channels=(8, 8, 16, 16))
    seen = []
    guider.conv_in.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    depth = torch.rand(1, 1, 28, 28)
    guider(depth, 64)
    expected = F.interpolate(depth, size=(64, 64), mode="bilinear", align_corners=True)
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)
    other = F.interpolate(depth, size=(64, 64), mode="bilinear", align_corners=False)
    assert not torch.allclose(seen[0], other)


def test_new_widened_unet_and_new_guider_can_learn_depth():
    """Zero depth channels in a widened U-Net, random guider output: the depth path gets a gradient."""
    from diffusers import UNet2DConditionModel

    from mimicbrush_cli.models.build import model_size
    from mimicbrush_cli.models.unets import widen_inpainting_unet

    torch.manual_seed(0)
    unet = widen_inpainting_unet(UNet2DConditionModel(**{**model_size("tiny").unet, "in_channels": 9}))
    guider = DepthGuider(block_channels=(8, 8, 16, 16))
    depth_latent = guider(torch.rand(2, 1, 28, 28) * 10, 64)
    assert depth_latent.shape == (2, 4, 8, 8) and torch.count_nonzero(depth_latent) > 0
    model_input = torch.cat([torch.randn(2, 9, 8, 8), depth_latent], dim=1)
    output = unet(model_input, 10, encoder_hidden_states=torch.randn(2, 5, 32)).sample
    output.square().mean().backward()
    assert unet.conv_in.weight.grad[:, 9:].abs().sum() > 0


def test_guider_save_and_load_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    guider = DepthGuider(block_channels=(8, 8, 16, 16))
    torch.nn.init.normal_(guider.conv_out.weight)
    guider.save_pretrained(tmp_path / "depth_guider")
    loaded = DepthGuider.from_pretrained(tmp_path / "depth_guider")
    assert tuple(loaded.config.block_channels) == (8, 8, 16, 16)
    depth = torch.rand(1, 1, 20, 20)
    torch.testing.assert_close(loaded(depth, 32), guider(depth, 32), rtol=0, atol=0)


# ---------------------------------------------------------------------------- Depth Anything
def test_vitb14_config_is_depth_anything_base():
    config = depth_anything_config("vitb14")
    backbone = config.backbone_config
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (768, 12, 12)
    assert (backbone.patch_size, backbone.image_size, backbone.mlp_ratio) == (14, 518, 4)
    assert list(backbone.out_indices) == [9, 10, 11, 12]
    assert backbone.apply_layernorm and not backbone.reshape_hidden_states and not backbone.use_swiglu_ffn
    assert list(config.neck_hidden_sizes) == [96, 192, 384, 768]
    assert list(config.reassemble_factors) == [4, 2, 1, 0.5]
    assert (config.reassemble_hidden_size, config.fusion_hidden_size, config.head_hidden_size) == (768, 128, 32)
    assert (config.patch_size, config.head_in_index, config.depth_estimation_type) == (14, -1, "relative")
    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(config)
    assert sum(p.numel() for p in model.parameters()) == 97_470_785  # Depth Anything v1 base: 97.5M


@pytest.mark.parametrize("name", ["vitb14", "tiny"])
def test_config_is_read_off_original_weights(name):
    config = depth_anything_config(name)
    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(config)
    original = to_original_depth_anything_state_dict(model.state_dict(), config)
    assert depth_anything_config_from_original(original).to_dict() == config.to_dict()


def test_unknown_depth_model_name_is_a_user_error():
    with pytest.raises(MimicBrushError, match="unknown depth model"):
        depth_anything_config("vitx")


def test_predict_depth_is_relu_of_predicted_depth():
    torch.manual_seed(0)
    model = build_depth_anything("tiny")
    pixel_values = torch.randn(2, 3, TINY_SIZE, 2 * TINY_SIZE)
    depth = predict_depth(model, pixel_values)
    assert depth.shape == (2, 1, TINY_SIZE, 2 * TINY_SIZE)
    expected = F.relu(model(pixel_values=pixel_values).predicted_depth)[:, None]
    torch.testing.assert_close(depth, expected)


# ----------------------------------------------------------------------------- preprocessing
def test_depth_input_shape_is_lower_bound_multiple_of_14():
    assert depth_input_shape(512, 512) == (518, 518)
    assert depth_input_shape(300, 451) == (518, 784)  # 451 * 518 / 300 = 778.7 -> 56 patches
    assert depth_input_shape(451, 300, size=TINY_SIZE) == (42, 28)  # 42.1 -> 3 patches


def test_released_preprocessing_of_a_photo():
    photo = data.astronaut()  # (512, 512, 3), already square
    inputs = prepare_depth_input(photo)
    assert inputs.shape == (3, 518, 518) and inputs.dtype == np.float32
    # The quirk: mean/std on 0..255 values, then /255 -> about (pixel / 255) / std, in [-0.0083, 4.46].
    assert inputs.min() >= (0 - 0.485) / 0.229 / 255 - 1e-6
    assert inputs.max() <= (255 - 0.456) / 0.224 / 255 + 1e-6
    assert inputs.max() > 3.0
    resized = cv2.resize(photo, (518, 518), interpolation=cv2.INTER_CUBIC)
    y, x = 200, 300
    for channel, (mean, std) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        assert inputs[channel, y, x] == pytest.approx((resized[y, x, channel] - mean) / std / 255, rel=1e-6)


def test_preprocessing_value_of_a_flat_grey_pixel():
    inputs = prepare_depth_input(np.full((40, 40, 3), 200, np.uint8), size=56)
    assert inputs.shape == (3, 56, 56)
    # (200 - 0.485) / 0.229 / 255 = 199.515 / 58.395
    assert inputs[0, 10, 10] == pytest.approx(3.41664526, abs=1e-6)


def test_preprocessing_target_size_is_a_parameter():
    photo = data.astronaut()
    assert prepare_depth_input(photo, size=TINY_SIZE).shape == (3, 28, 28)
    assert prepare_depth_input(photo, size=56).shape == (3, 56, 56)


def test_keep_shape_off_runs_the_depth_model_on_zeros():
    torch.manual_seed(0)
    model = build_depth_anything("tiny")
    photo = data.astronaut()
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["pixel_values"]), with_kwargs=True)
    off = torch.from_numpy(prepare_depth_input(photo, TINY_SIZE, keep_shape=False))[None]
    on = torch.from_numpy(prepare_depth_input(photo, TINY_SIZE))[None]
    assert off.shape == on.shape
    depth = predict_depth(model, off)
    assert depth.shape == (1, 1, TINY_SIZE, TINY_SIZE)
    assert torch.count_nonzero(seen[0]) == 0
    assert torch.count_nonzero(zero_depth_input(on)) == 0 and zero_depth_input(on).shape == on.shape
    assert not np.any(zero_depth_input(on.numpy()))


# ---------------------------------------------------------------- original checkpoint layout
@pytest.fixture
def tiny_depth_model():
    torch.manual_seed(0)
    model = build_depth_anything("tiny")
    with torch.no_grad():  # move every weight off its init value so that a swapped key shows
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        model.head.conv3.bias.fill_(1.0)  # a positive depth, so that the final relu keeps it
    return model


def _write_original(model, path, edit=None):
    original = to_original_depth_anything_state_dict(model.state_dict(), model.config)
    if edit is not None:
        edit(original)
    torch.save(original, path)
    return path


def test_original_layout_has_released_key_names(tiny_depth_model):
    original = to_original_depth_anything_state_dict(tiny_depth_model.state_dict(), tiny_depth_model.config)
    assert original["pretrained.blocks.0.attn.qkv.weight"].shape == (3 * 64, 64)
    assert original["pretrained.pos_embed"].shape == (1, 1 + 4, 64)
    for key in ("pretrained.cls_token", "pretrained.mask_token", "pretrained.patch_embed.proj.weight",
                "pretrained.blocks.3.ls2.gamma", "pretrained.norm.bias", "depth_head.projects.3.weight",
                "depth_head.resize_layers.0.weight", "depth_head.scratch.layer4_rn.weight",
                "depth_head.scratch.refinenet4.resConfUnit1.conv2.bias", "depth_head.scratch.output_conv2.2.weight"):
        assert key in original
    assert "depth_head.resize_layers.2.weight" not in original  # identity resize
    assert all(key.startswith(("pretrained.", "depth_head.")) for key in original)


def test_original_round_trip_reproduces_outputs(tiny_depth_model, tmp_path):
    path = _write_original(tiny_depth_model, tmp_path / "depth_anything_vitb14.pth")
    loaded = load_depth_anything_from_original(path)  # architecture read off the file
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    pixel_values = torch.from_numpy(prepare_depth_input(data.astronaut(), TINY_SIZE))[None]
    expected = predict_depth(tiny_depth_model, pixel_values)
    assert torch.count_nonzero(expected) > 0
    torch.testing.assert_close(predict_depth(loaded, pixel_values), expected, rtol=0, atol=0)
    loaded.save_pretrained(tmp_path / "depth_estimator")  # split q/k/v must not share storage


def test_refinenet4_is_the_fusion_block_that_runs_first(tiny_depth_model):
    # Original refinenet4 fuses only the deepest features, so its resConfUnit1 is never used;
    # refinenet1's is. This pins the reversed refinenet order independently of the round trip.
    config = tiny_depth_model.config
    original = to_original_depth_anything_state_dict(tiny_depth_model.state_dict(), config)
    pixel_values = torch.from_numpy(prepare_depth_input(data.astronaut(), TINY_SIZE))[None]

    def depth_with_changed(block):
        changed = dict(original)
        key = f"depth_head.scratch.{block}.resConfUnit1.conv1.weight"
        changed[key] = changed[key] + 1.0
        model = DepthAnythingForDepthEstimation(config).eval()
        model.load_state_dict(convert_original_depth_anything_state_dict(changed, config))
        return predict_depth(model, pixel_values)

    reference = predict_depth(tiny_depth_model, pixel_values)
    torch.testing.assert_close(depth_with_changed("refinenet4"), reference)
    assert not torch.allclose(depth_with_changed("refinenet1"), reference)


def test_unknown_key_is_a_one_line_user_error(tiny_depth_model, tmp_path):
    path = _write_original(tiny_depth_model, tmp_path / "d.pth",
                           lambda sd: sd.__setitem__("pretrained.register_tokens", torch.zeros(1, 4, 64)))
    with pytest.raises(MimicBrushError, match=r"unknown weight pretrained\.register_tokens") as error:
        load_depth_anything_from_original(path, depth_anything_config("tiny"))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("key", ["pretrained.blocks.2.ls1.gamma", "pretrained.cls_token"])
def test_missing_key_is_a_user_error(tiny_depth_model, tmp_path, key):
    path = _write_original(tiny_depth_model, tmp_path / "d.pth", lambda sd: sd.pop(key))
    with pytest.raises(MimicBrushError, match="missing weight " + key.replace(".", r"\.")):
        load_depth_anything_from_original(path)


@pytest.mark.parametrize("key, shape", [("depth_head.projects.1.weight", (16, 64, 1, 2)),
                                        ("pretrained.blocks.0.attn.qkv.weight", (191, 64)),
                                        ("pretrained.patch_embed.proj.weight", (64, 3, 16, 16))])
def test_wrong_shape_is_a_one_line_user_error_naming_the_key(tiny_depth_model, tmp_path, key, shape):
    path = _write_original(tiny_depth_model, tmp_path / "d.pth", lambda sd: sd.__setitem__(key, torch.zeros(shape)))
    with pytest.raises(MimicBrushError, match=key.replace(".", r"\.")) as error:
        load_depth_anything_from_original(path, depth_anything_config("tiny"))
    assert "\n" not in str(error.value)


def test_released_size_weights_do_not_load_into_tiny_config(tiny_depth_model, tmp_path):
    path = _write_original(tiny_depth_model, tmp_path / "d.pth")
    with pytest.raises(MimicBrushError, match="missing weight pretrained.blocks.10"):
        load_depth_anything_from_original(path, depth_anything_config("vitb14"))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(MimicBrushError, match="not found"):
        load_depth_anything_from_original(tmp_path / "nothing.pth", depth_anything_config("tiny"))
