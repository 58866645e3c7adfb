"""Shape control: Depth Anything v1 (frozen) and the depth guider (trainable), REFERENCE.md §2 "Depth".

    source square (uint8)  --prepare_depth_input-->  (3, 518, 518)   released preprocessing quirk
                           --predict_depth------->   (B, 1, 518, 518) relu(depth), not normalised
                           --DepthGuider---------->  (B, 4, 64, 64)   the depth latent (U-Net channels 9..12)

Shape control off (no `--keep-shape`) does not skip the depth model: its *input* is all zeros and
it still runs, exactly as in the released code; training zeroes the input with p = 0.5, so one
model serves both modes.

Named Depth Anything configs and the released (original) weight layout live in `depth_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import DepthAnythingForDepthEstimation

from .depth_checkpoint import (
    DEPTH_INPUT_SIZE,
    DEPTH_PATCH_SIZE,
    convert_original_depth_anything_state_dict,
    depth_anything_config,
    depth_anything_config_from_original,
    load_depth_anything_from_original,
    to_original_depth_anything_state_dict,
)

__all__ = [
    "DEPTH_INPUT_SIZE", "DepthGuider", "build_depth_anything", "convert_original_depth_anything_state_dict",
    "depth_anything_config", "depth_anything_config_from_original", "depth_input_shape",
    "load_depth_anything_from_original", "predict_depth", "prepare_depth_input",
    "to_original_depth_anything_state_dict", "zero_depth_input",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------- guider
class DepthGuider(ModelMixin, ConfigMixin):
    """Depth map -> depth latent: a ControlNet-style conditioning embedding, halving per width step.

    conv_in(1 -> c0) SiLU, then per width step i: Conv(ci -> ci) SiLU, Conv(ci -> ci+1, stride 2) SiLU,
    then conv_out(c_last -> 4); all 3x3, padding 1. Released widths (16, 32, 64, 128) give exactly
    the parameter names and shapes of the released `depth_guider` state dict.

    `conv_out` keeps PyTorch's default random init. A new imitative U-Net starts its 4 depth input
    channels at zero (so it first behaves exactly like the inpainting model it came from); if the
    guider's output layer were zero too, neither would ever receive a gradient (each one's gradient is
    multiplied by the other), so exactly one of the two may start at zero.
    """

    @register_to_config
    def __init__(self, conditioning_channels: int = 1, block_channels: Sequence[int] = (16, 32, 64, 128),
                 latent_channels: int = 4) -> None:
        super().__init__()
        block_channels = tuple(block_channels)
        self.conv_in = nn.Conv2d(conditioning_channels, block_channels[0], kernel_size=3, padding=1)
        blocks = []
        for channels_in, channels_out in zip(block_channels[:-1], block_channels[1:]):
            blocks.append(nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(block_channels[-1], latent_channels, kernel_size=3, padding=1)

    def forward(self, depth: torch.Tensor, pixel_size: int | tuple[int, int] = 512) -> torch.Tensor:
        """(B, 1, h, w) depth at any size -> (B, 4, H/f, W/f) for the working pixel size (H, W); f = 8 released."""
        size = (pixel_size, pixel_size) if isinstance(pixel_size, int) else tuple(pixel_size)
        # align_corners=True is the released resize; the released weights were trained with it.
        hidden = F.interpolate(depth, size=size, mode="bilinear", align_corners=True)  # (B, 1, H, W)
        hidden = F.silu(self.conv_in(hidden))
        for block in self.blocks:
            hidden = F.silu(block(hidden))
        return self.conv_out(hidden)  # (B, 4, H/f, W/f)


# ----------------------------------------------------------------------------- Depth Anything
def build_depth_anything(name: str = "vitb14") -> DepthAnythingForDepthEstimation:
    """A frozen, eval-mode Depth Anything with random weights (seed with `torch.manual_seed`)."""
    return DepthAnythingForDepthEstimation(depth_anything_config(name)).eval().requires_grad_(False)


def predict_depth(model: DepthAnythingForDepthEstimation, pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) prepared inputs -> (B, 1, H, W) relative depth, relu'd, not normalised (released)."""
    depth = model(pixel_values=pixel_values).predicted_depth  # (B, H, W)
    return F.relu(depth)[:, None]


# ------------------------------------------------------------------------------ preprocessing
def _constrain_to_multiple(x: float, multiple: int, min_value: int) -> int:
    """Nearest multiple, rounded up instead when that falls below `min_value` (original Resize)."""
    y = int(np.round(x / multiple) * multiple)
    if y < min_value:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def depth_input_shape(height: int, width: int, size: int = DEPTH_INPUT_SIZE,
                      multiple: int = DEPTH_PATCH_SIZE) -> tuple[int, int]:
    """(H, W) the depth model sees: keep aspect, the *shorter* side reaches `size` ("lower_bound"),
    both sides multiples of the patch size. A square gives (size, size) for size a multiple of 14."""
    scale = max(size / height, size / width)
    return (_constrain_to_multiple(scale * height, multiple, size),
            _constrain_to_multiple(scale * width, multiple, size))


def prepare_depth_input(image: np.ndarray, size: int = DEPTH_INPUT_SIZE, keep_shape: bool = True) -> np.ndarray:
    """uint8 (H, W, 3) RGB, already padded to square -> float32 (3, h, w) Depth Anything input.

    The released preprocessing, quirks included: a cubic resize (OpenCV INTER_CUBIC, the released
    interpolation; PIL's bicubic low-pass filters when shrinking and gives different values) on the
    uint8 image, then ImageNet mean/std applied to 0..255 values, then a division by 255. The mean
    is thus all but lost: the model sees (pixel / 255) / std, about [0, 4.5], instead of the
    [-2.1, 2.6] Depth Anything was trained on; the released depth guider learnt from exactly these
    depth maps, so the quirk is kept.

    `keep_shape=False` gives the all-zero input of the same shape (shape control off).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = depth_input_shape(image.shape[0], image.shape[1], size)
    if not keep_shape:
        return np.zeros((3, height, width), np.float32)
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)  # uint8, saturated
    # float64 then float32, then /255 in float32: the order of the released NormalizeImage, PrepareForNet, /255.
    normalised = (resized - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)


def zero_depth_input(like: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Shape control off: zeros shaped like a prepared depth input (numpy or torch, same device)."""
    return torch.zeros_like(like) if isinstance(like, torch.Tensor) else np.zeros_like(like)
