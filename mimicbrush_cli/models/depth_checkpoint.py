"""Depth Anything v1 architecture and weights: named configs, and the original layout
(`depth_anything_vitb14.pth`) <-> transformers `DepthAnythingForDepthEstimation`.

The released file holds the original repository's module names: `pretrained.*` is the DINOv2
backbone (fused `attn.qkv`), `depth_head.*` the DPT head (`projects`, `resize_layers`,
`scratch.layerN_rn`, `scratch.refinenetN`, `scratch.output_conv1/2`). The rename table follows
transformers' own `models/depth_anything/convert_depth_anything_to_hf.py` (`create_rename_keys`
and `read_in_q_k_v`), with the DINOv2 attention names of whichever transformers is installed
(5.x names them `attention.q_proj/k_proj/v_proj/o_proj`, 4.x `attention.attention.query/...`).

The architecture of a file is read off its tensor shapes, so a small model written in the same
layout loads through the same code. Loading is strict: a key the table does not know, a key the
file lacks, or a tensor of the wrong shape is a one-line `MimicBrushError` naming the key as it
is written in the file.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

from ..errors import MimicBrushError
from .pickles import load_weights_pickle
from .state_dicts import first_of, load_state_dict_checked

DEPTH_INPUT_SIZE = 518
DEPTH_PATCH_SIZE = 14
# DINOv2 attention heads are 64 wide in every released size (ViT-S/6, B/12, L/16, g/24 heads).
DINOV2_HEAD_WIDTH = 64
# Fusion blocks run deepest-first: the original `refinenet4` is the first block transformers runs.
_REFINENET_TO_FUSION_LAYER = {1: 3, 2: 2, 3: 1, 4: 0}
# Reassemble layer 2 keeps its resolution (factor 1), so it has no resize weights.
_IDENTITY_RESIZE_LAYER = 2


def _config(hidden_size: int, layers: int, mlp_ratio: int, image_size: int, neck_hidden_sizes: list[int],
            fusion_hidden_size: int, head_hidden_size: int) -> DepthAnythingConfig:
    # Depth Anything v1 reads the last 4 backbone layers, each through the final layer norm, as
    # token sequences (the neck reshapes them); the values of transformers' conversion script.
    backbone = Dinov2Config(
        hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=hidden_size // DINOV2_HEAD_WIDTH,
        mlp_ratio=mlp_ratio, patch_size=DEPTH_PATCH_SIZE, image_size=image_size, layerscale_value=1.0,
        layer_norm_eps=1e-6, qkv_bias=True, use_swiglu_ffn=False, hidden_act="gelu",
        out_indices=list(range(layers - 3, layers + 1)), apply_layernorm=True, reshape_hidden_states=False)
    return DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=hidden_size, patch_size=DEPTH_PATCH_SIZE,
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=list(neck_hidden_sizes),
        fusion_hidden_size=fusion_hidden_size, head_in_index=-1, head_hidden_size=head_hidden_size,
        depth_estimation_type="relative")


def depth_anything_config(name: str = "vitb14") -> DepthAnythingConfig:
    """Named Depth Anything v1 configs: `vitb14` is LiheYoung/depth-anything-base-hf (DINOv2
    ViT-B/14 backbone, the released depth model), `tiny` the same architecture shrunk for tests
    (28 px input, 2 x 2 patches, one 64-wide head)."""
    if name == "vitb14":
        return _config(hidden_size=768, layers=12, mlp_ratio=4, image_size=DEPTH_INPUT_SIZE,
                       neck_hidden_sizes=[96, 192, 384, 768], fusion_hidden_size=128, head_hidden_size=32)
    if name == "tiny":
        return _config(hidden_size=64, layers=4, mlp_ratio=2, image_size=28,
                       neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8)
    raise MimicBrushError(f"unknown depth model {name!r} (known: vitb14, tiny)")


def depth_anything_config_from_original(original: Mapping[str, torch.Tensor]) -> DepthAnythingConfig:
    """The config of an original-layout state dict, read off its tensor shapes."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in original:
            raise MimicBrushError(f"depth model: missing weight {key}")
        return tuple(original[key].shape)

    hidden_size = shape("pretrained.cls_token")[-1]
    layers = 0
    while f"pretrained.blocks.{layers}.mlp.fc1.weight" in original:
        layers += 1
    if layers < 4 or hidden_size % DINOV2_HEAD_WIDTH:
        raise MimicBrushError(f"depth model: not a Depth Anything v1 backbone ({layers} blocks of width {hidden_size})")
    positions = shape("pretrained.pos_embed")[1] - 1
    grid = round(positions ** 0.5)
    return _config(
        hidden_size=hidden_size, layers=layers,
        mlp_ratio=shape("pretrained.blocks.0.mlp.fc1.weight")[0] // hidden_size, image_size=grid * DEPTH_PATCH_SIZE,
        neck_hidden_sizes=[shape(f"depth_head.projects.{i}.weight")[0] for i in range(4)],
        fusion_hidden_size=shape("depth_head.scratch.layer1_rn.weight")[0],
        head_hidden_size=shape("depth_head.scratch.output_conv2.0.weight")[0])


@functools.lru_cache(maxsize=1)
def _attention_names() -> tuple[str, str, str, str]:
    """(query, key, value, output) module names inside a transformers DINOv2 layer."""
    from transformers import Dinov2Config
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Layer

    with torch.device("meta"):
        layer = Dinov2Layer(Dinov2Config(hidden_size=8, num_attention_heads=1))
    if "attention.q_proj.weight" in layer.state_dict():
        return "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj"
    return ("attention.attention.query", "attention.attention.key", "attention.attention.value",
            "attention.output.dense")


def _rename_table(config: DepthAnythingConfig) -> dict[str, str]:
    """Original key -> transformers key, for every tensor except the fused qkv projections."""
    layers = config.backbone_config.num_hidden_layers
    *_, output = _attention_names()
    table = {
        "pretrained.cls_token": "backbone.embeddings.cls_token",
        "pretrained.mask_token": "backbone.embeddings.mask_token",
        "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
        "pretrained.patch_embed.proj.weight": "backbone.embeddings.patch_embeddings.projection.weight",
        "pretrained.patch_embed.proj.bias": "backbone.embeddings.patch_embeddings.projection.bias",
        "pretrained.norm.weight": "backbone.layernorm.weight",
        "pretrained.norm.bias": "backbone.layernorm.bias",
        "depth_head.scratch.output_conv1.weight": "head.conv1.weight",
        "depth_head.scratch.output_conv1.bias": "head.conv1.bias",
        # output_conv2 is Sequential(conv, ReLU, conv, ReLU, Identity): indices 0 and 2 hold weights.
        "depth_head.scratch.output_conv2.0.weight": "head.conv2.weight",
        "depth_head.scratch.output_conv2.0.bias": "head.conv2.bias",
        "depth_head.scratch.output_conv2.2.weight": "head.conv3.weight",
        "depth_head.scratch.output_conv2.2.bias": "head.conv3.bias",
    }
    for i in range(layers):
        block, layer = f"pretrained.blocks.{i}", f"backbone.encoder.layer.{i}"
        table[f"{block}.ls1.gamma"] = f"{layer}.layer_scale1.lambda1"
        table[f"{block}.ls2.gamma"] = f"{layer}.layer_scale2.lambda1"
        for name, new_name in (("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"),
                               ("mlp.fc2", "mlp.fc2"), ("attn.proj", output)):
            for kind in ("weight", "bias"):
                table[f"{block}.{name}.{kind}"] = f"{layer}.{new_name}.{kind}"
    for i in range(len(config.neck_hidden_sizes)):
        reassemble = f"neck.reassemble_stage.layers.{i}"
        for kind in ("weight", "bias"):
            table[f"depth_head.projects.{i}.{kind}"] = f"{reassemble}.projection.{kind}"
            if i != _IDENTITY_RESIZE_LAYER:
                table[f"depth_head.resize_layers.{i}.{kind}"] = f"{reassemble}.resize.{kind}"
        table[f"depth_head.scratch.layer{i + 1}_rn.weight"] = f"neck.convs.{i}.weight"  # bias-free convs
    for refinenet, fusion in _REFINENET_TO_FUSION_LAYER.items():
        source, target = f"depth_head.scratch.refinenet{refinenet}", f"neck.fusion_stage.layers.{fusion}"
        pairs = [("out_conv", "projection")] + [
            (f"resConfUnit{unit}.conv{conv}", f"residual_layer{unit}.convolution{conv}")
            for unit in (1, 2) for conv in (1, 2)]
        for name, new_name in pairs:
            for kind in ("weight", "bias"):
                table[f"{source}.{name}.{kind}"] = f"{target}.{new_name}.{kind}"
    return table


def _qkv_table(config: DepthAnythingConfig) -> dict[str, tuple[str, str, str]]:
    """Fused original qkv key -> the three transformers keys it splits into (in q, k, v order)."""
    query, key, value, _ = _attention_names()
    table = {}
    for i in range(config.backbone_config.num_hidden_layers):
        for kind in ("weight", "bias"):
            table[f"pretrained.blocks.{i}.attn.qkv.{kind}"] = tuple(
                f"backbone.encoder.layer.{i}.{name}.{kind}" for name in (query, key, value))
    return table


def convert_original_depth_anything_state_dict(original: Mapping[str, torch.Tensor],
                                               config: DepthAnythingConfig) -> dict[str, torch.Tensor]:
    """Original Depth Anything state dict -> `DepthAnythingForDepthEstimation` state dict.

    Raises `MimicBrushError` on a key the original layout does not have, on a missing key, and on
    a fused qkv tensor that cannot be split into three equal parts.
    """
    renames, fused = _rename_table(config), _qkv_table(config)
    unknown = set(original) - set(renames) - set(fused)
    if unknown:
        raise MimicBrushError(f"depth model: {first_of(unknown, 'unknown weight')}")
    missing = (set(renames) | set(fused)) - set(original)
    if missing:
        raise MimicBrushError(f"depth model: {first_of(missing, 'missing weight')}")
    hidden = config.backbone_config.hidden_size
    converted = {renames[key]: tensor for key, tensor in original.items() if key in renames}
    for key, targets in fused.items():
        tensor = original[key]  # (3 * hidden, hidden) or (3 * hidden,)
        if tensor.shape[0] != 3 * hidden:
            raise MimicBrushError(f"depth model: weight {key} has shape {tuple(tensor.shape)}, "
                                  f"expected {3 * hidden} rows (query, key, value of width {hidden})")
        # Clones, not views: safetensors refuses to save tensors that share one storage.
        for target, part in zip(targets, tensor.chunk(3, dim=0)):
            converted[target] = part.clone()
    return converted


def to_original_depth_anything_state_dict(hf_state_dict: Mapping[str, torch.Tensor],
                                          config: DepthAnythingConfig) -> dict[str, torch.Tensor]:
    """`DepthAnythingForDepthEstimation` state dict -> the original layout (the released file's)."""
    original = {old: hf_state_dict[new] for old, new in _rename_table(config).items()}
    for key, targets in _qkv_table(config).items():
        original[key] = torch.cat([hf_state_dict[target] for target in targets], dim=0)
    return original


def _original_name(config: DepthAnythingConfig) -> dict[str, str]:
    """transformers key -> the original key it came from (for error messages)."""
    names = {new: old for old, new in _rename_table(config).items()}
    for old, targets in _qkv_table(config).items():
        names.update({target: old for target in targets})
    return names


def load_depth_anything_from_original(path: str | Path,
                                     config: DepthAnythingConfig | None = None) -> DepthAnythingForDepthEstimation:
    """A frozen, eval-mode Depth Anything from a `.pth` in the original layout (strict). Without
    `config`, the architecture is read off the file's shapes."""
    path = Path(path)
    if not path.is_file():
        raise MimicBrushError(f"depth model weights not found: {path}")
    original = load_weights_pickle(path, "depth model weights")
    if not isinstance(original, Mapping) or not all(isinstance(v, torch.Tensor) for v in original.values()):
        raise MimicBrushError(f"{path} is not a Depth Anything state dict (expected a dict of tensors)")
    try:
        config = config if config is not None else depth_anything_config_from_original(original)
        state_dict = convert_original_depth_anything_state_dict(original, config)
    except MimicBrushError as error:
        raise MimicBrushError(f"{path.name}: {error}") from error

    # Built on the meta device and filled by assignment: no time spent on a random init that the
    # file overwrites anyway (the model has no buffers, so every tensor comes from the file).
    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(config)
    load_state_dict_checked(model, state_dict, f"{path.name}: depth model", assign=True,
                            file_names=_original_name(config))
    return model.eval().requires_grad_(False)
