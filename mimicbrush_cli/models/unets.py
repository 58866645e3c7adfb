"""The two U-Nets: the imitative U-Net (13-channel denoiser) and the reference U-Net (feature extractor)."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

# Channel layout of the imitative U-Net's input; the order is part of the released weights.
NOISY_LATENT_CHANNELS = slice(0, 4)
MASK_CHANNEL = slice(4, 5)
MASKED_SOURCE_CHANNELS = slice(5, 9)
DEPTH_LATENT_CHANNELS = slice(9, 13)
IMITATIVE_IN_CHANNELS = 13
INPAINTING_IN_CHANNELS = 9


def imitative_unet_input(noisy_latents: torch.Tensor, mask: torch.Tensor, masked_source_latents: torch.Tensor,
                         depth_latents: torch.Tensor) -> torch.Tensor:
    """Concatenate the imitative U-Net's input: noisy (4) | mask (1) | masked source (4) | depth (4)."""
    return torch.cat([noisy_latents, mask, masked_source_latents, depth_latents], dim=1)  # (B, 13, h, w)


def widen_inpainting_unet(inpainting_unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """An imitative U-Net from an SD-inpainting U-Net: 9 → 13 input channels.

    The 9 pretrained input channels are copied and the 4 new depth channels start at zero, so the
    widened model computes exactly what the inpainting model did until training teaches it depth.
    """
    old_conv = inpainting_unet.conv_in
    if old_conv.in_channels != INPAINTING_IN_CHANNELS:
        raise ValueError(f"expected a {INPAINTING_IN_CHANNELS}-channel inpainting U-Net, got {old_conv.in_channels}")
    new_conv = torch.nn.Conv2d(IMITATIVE_IN_CHANNELS, old_conv.out_channels, kernel_size=old_conv.kernel_size,
                               stride=old_conv.stride, padding=old_conv.padding,
                               dtype=old_conv.weight.dtype, device=old_conv.weight.device)
    with torch.no_grad():
        new_conv.weight.zero_()
        new_conv.weight[:, :INPAINTING_IN_CHANNELS] = old_conv.weight
        new_conv.bias.copy_(old_conv.bias)
    inpainting_unet.conv_in = new_conv
    inpainting_unet.register_to_config(in_channels=IMITATIVE_IN_CHANNELS)
    return inpainting_unet


def align_reference_unet(reference_unet: UNet2DConditionModel, imitative_unet: UNet2DConditionModel) -> None:
    """Start the reference U-Net as a copy of the imitative U-Net (in place).

    The paper gets this for free: both U-Nets come from Stable Diffusion, so the reference U-Net's keys
    and values live in the same feature space as the imitative U-Net's queries from the first step, and
    reference attention can match content at once. Two U-Nets initialised at random independently
    share no such space and must discover it; this copies every weight whose shape agrees. The 4-channel
    `conv_in` gets the sum of the imitative U-Net's noisy-latent and masked-source kernels: on a clean,
    unmasked latent both of those inputs carry the same content, so the two U-Nets compute the same
    first features for it.
    """
    imitative_state = imitative_unet.state_dict()
    aligned = {}
    for name, value in reference_unet.state_dict().items():
        if name == "conv_in.weight":
            kernel = imitative_state[name]
            aligned[name] = kernel[:, NOISY_LATENT_CHANNELS] + kernel[:, MASKED_SOURCE_CHANNELS]
        elif name in imitative_state and imitative_state[name].shape == value.shape:
            aligned[name] = imitative_state[name]
        else:
            aligned[name] = value
    reference_unet.load_state_dict(aligned)
