import json

import numpy as np
import pytest
import torch

from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.loading import convert_released_weights, load_pipeline_folder
from mimicbrush_cli.models.state_dicts import load_state_dict_checked
from mimicbrush_cli.pipeline import EditSettings

SETTINGS = EditSettings(steps=2, seed=3, keep_shape=True)


def edit(pipeline, photos):
    source, reference, mask = photos
    return pipeline(source, reference, mask, SETTINGS)[0][0]


def test_released_layout_round_trip_reproduces_the_model(tiny_pipeline, tiny_released_dir, photos):
    loaded = load_pipeline_folder(tiny_released_dir)
    for name in ("imitative_unet", "reference_unet", "image_encoder", "image_projection", "depth_guider",
                 "depth_estimator", "vae"):
        original, restored = getattr(tiny_pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        for key, tensor in restored.items():
            if key in original and not key.startswith(("conv_out", "conv_norm_out")):
                assert torch.equal(tensor, original[key]) or "up_blocks.1.attentions.1" in key, f"{name}.{key}"
    np.testing.assert_array_equal(edit(loaded, photos), edit(tiny_pipeline, photos))


def test_released_checkpoint_omits_reference_tail(tiny_released_dir):
    checkpoint = torch.load(tiny_released_dir / "MimicBrush/mimicbrush/mimicbrush.bin", weights_only=True)
    assert not any(key.startswith("conv_out") for key in checkpoint["referencenet"])
    assert "vision_model.embeddings.position_ids" in checkpoint["image_encoder"]


def test_convert_then_load_our_format_gives_identical_edits(tiny_pipeline, tiny_released_dir, tmp_path, photos):
    destination = tmp_path / "converted"
    convert_released_weights(tiny_released_dir, destination)
    assert (destination / "model_index.json").is_file()
    assert list(destination.glob("imitative_unet/*.safetensors"))
    assert not list(destination.rglob("*.bin")) and not list(destination.rglob("*.pth"))
    index = json.loads((destination / "model_index.json").read_text())
    assert index["_class_name"] == "MimicBrushPipeline"
    loaded = load_pipeline_folder(destination)
    np.testing.assert_array_equal(edit(loaded, photos), edit(tiny_pipeline, photos))


def test_our_format_round_trip(tiny_pipeline, tiny_model_dir, photos):
    loaded = load_pipeline_folder(tiny_model_dir)
    np.testing.assert_array_equal(edit(loaded, photos), edit(tiny_pipeline, photos))


def test_unknown_key_fails_loudly():
    module = torch.nn.Linear(2, 3)
    state = dict(module.state_dict(), extra=torch.zeros(1))
    with pytest.raises(MimicBrushError, match="unknown weight extra"):
        load_state_dict_checked(module, state, "layer")


def test_wrong_shape_fails_loudly():
    module = torch.nn.Linear(2, 3)
    state = {"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}
    with pytest.raises(MimicBrushError, match=r"weight has shape \(3, 3\), expected \(3, 2\)"):
        load_state_dict_checked(module, state, "layer")


def test_missing_key_fails_loudly():
    with pytest.raises(MimicBrushError, match="missing weight bias"):
        load_state_dict_checked(torch.nn.Linear(2, 3), {"weight": torch.zeros(3, 2)}, "layer")


def test_incomplete_released_folder_names_the_missing_file(tiny_released_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_released_dir, broken)
    (broken / "MimicBrush/depth_model/depth_anything_vitb14.pth").unlink()
    with pytest.raises(MimicBrushError, match="weights folder incomplete: missing .*depth_anything_vitb14.pth"):
        load_pipeline_folder(broken)


def test_released_checkpoint_with_corrupted_weight_shape_fails(tiny_released_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_released_dir, broken)
    path = broken / "MimicBrush/mimicbrush/mimicbrush.bin"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["unet"]["conv_in.weight"] = checkpoint["unet"]["conv_in.weight"][:, :9]
    torch.save(checkpoint, path)
    with pytest.raises(MimicBrushError, match="conv_in.weight has shape"):
        load_pipeline_folder(broken)


def test_widened_inpainting_unet_keeps_pretrained_channels():
    from diffusers import UNet2DConditionModel

    from mimicbrush_cli.models.build import model_size
    from mimicbrush_cli.models.unets import widen_inpainting_unet

    torch.manual_seed(0)
    inpainting = UNet2DConditionModel(**{**model_size("tiny").unet, "in_channels": 9})
    old_weight = inpainting.conv_in.weight.detach().clone()
    widened = widen_inpainting_unet(inpainting)
    assert widened.config.in_channels == 13
    torch.testing.assert_close(widened.conv_in.weight[:, :9], old_weight)
    assert torch.count_nonzero(widened.conv_in.weight[:, 9:]) == 0


def test_convert_of_a_missing_folder_says_not_found(tmp_path):
    with pytest.raises(MimicBrushError, match="weights folder not found"):
        convert_released_weights(tmp_path / "absent", tmp_path / "out")
    assert not (tmp_path / "out").exists()
