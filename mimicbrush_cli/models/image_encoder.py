"""CLIP image encoder + the trainable projection that turns reference images into cross-attention tokens."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from transformers import CLIPVisionModelWithProjection

__all__ = ["ImageTokenProjection", "ModelMixin", "encode_reference_tokens"]


class ImageTokenProjection(ModelMixin, ConfigMixin):
    """Linear map from CLIP hidden width (1280 for ViT-H) to the U-Nets' cross-attention width (768)."""

    @register_to_config
    def __init__(self, image_hidden_size: int = 1280, cross_attention_dim: int = 768) -> None:
        super().__init__()
        self.projector = nn.Linear(image_hidden_size, cross_attention_dim)

    def forward(self, image_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.projector(image_hidden_states)  # (B, 1 + patches, cross_attention_dim)


def encode_reference_tokens(image_encoder: CLIPVisionModelWithProjection, projection: ImageTokenProjection,
                            clip_pixel_values: torch.Tensor) -> torch.Tensor:
    """Cross-attention tokens of CLIP-preprocessed images: penultimate hidden state, projected.

    (B, 3, 224, 224) → (B, 257, 768) at released size. The unconditional tokens are this function on
    an all-zero *normalised* image.
    """
    outputs = image_encoder(pixel_values=clip_pixel_values.to(image_encoder.dtype), output_hidden_states=True)
    penultimate = outputs.hidden_states[-2]  # (B, 1 + patches, hidden)
    return projection(penultimate.to(projection.dtype))
