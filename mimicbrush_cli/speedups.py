"""Opt-in ways to run a pipeline faster or in less memory; none is on by default.

Each is measured, for speed and for deviation from the exact output, by `mimicbrush benchmark speed`:

- `channels_last`: U-Nets and VAE in NHWC memory layout (same math, another summation order);
- `compile`: `torch.compile` on both U-Nets (same math; the first edit pays the compilation; with the
  reference attention each U-Net traces as one graph, `benchmark speed --only compile` says whether it wins);
- `cpu_offload`: diffusers' model CPU offload, one component on the accelerator at a time (GPUs
  too small for the whole pipeline; slower);
- `vae_tiling`: the VAE encodes and decodes overlapping tiles (large images in less memory; the
  tile seams blend, so the output differs slightly).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MimicBrushError


@dataclass(frozen=True)
class SpeedOptions:
    channels_last: bool = False
    compile: bool = False
    cpu_offload: bool = False
    vae_tiling: bool = False


def configure_pipeline_speed(pipeline, channels_last: bool = False, compile: bool = False, cpu_offload: bool = False,
                             vae_tiling: bool = False):
    """Apply the chosen speed options to a loaded pipeline in place (and return it)."""
    import torch

    if cpu_offload:
        device = pipeline.device
        if device.type == "cpu":
            raise MimicBrushError("--cpu-offload moves models between the CPU and a GPU; it needs --device cuda (or mps)")
        pipeline.enable_model_cpu_offload(device=device)
    if channels_last:
        for model in (pipeline.imitative_unet, pipeline.reference_unet, pipeline.vae):
            model.to(memory_format=torch.channels_last)
    if vae_tiling:
        pipeline.vae.enable_tiling()
    if compile:
        # In place, so the registered components keep their type, config and dtype.
        pipeline.imitative_unet.compile()
        pipeline.reference_unet.compile()
    return pipeline
