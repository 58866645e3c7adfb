"""The training objective: the imitative U-Net's denoising prediction, guided by the reference U-Net.

For each row of a batch (source, reference, mask, depth_source):

    z0      = VAE sample of the source                      (the target latent)
    z_t     = sqrt(ᾱ_t)·z0 + sqrt(1 − ᾱ_t)·ε,  t ~ U[0, 1000)
    input   = z_t | mask | VAE sample of the black-masked source | depth_guider(depth(depth_source))
    loss    = ‖target − imitative_unet(input, t, CLIP tokens of the reference; reference features)‖²

where the target is what the scheduler's `prediction_type` says the U-Net predicts: ε (`epsilon`,
the released model) or v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·z0 (`v_prediction`). Inference needs no
switch: the DDIM step reads the same scheduler config.

with the reference features written by the reference U-Net on the *clean* reference latent at the
same t. Two droppings make one model serve every inference mode:

- depth: with p = 0.5 the depth model's *input* is all zeros (shape control off, as at inference);
- reference: with p = 0.1 a row becomes the CFG branch exactly as inference builds it: no reference
  attention (bank index −1) and the CLIP tokens of an all-zero normalised image.

Optionally (`token_dropout`, off by default) rows that keep the reference attention get the tokens of
the all-zero image too: the reference's global description then cannot stand in for attending to it.

Frozen encoders run outside the autograd graph in `encode_batch`; the trainable modules live in
`TrainingModel`, the one `nn.Module` that accelerate wraps (DDP, FSDP, DeepSpeed), whose forward
returns the loss.

A model trained from nothing first needs what Stable Diffusion would give it (stage 0), trained by
the same loop with another `objective.task`:

- `autoencoder`: the VAE reconstructs both images of each row, on random crops of `crop_size`
  (the VAE is convolutional: crops teach it the same at a fraction of the cost), loss
  L1 + `kl_weight` · KL. At the end the loop sets the VAE's `scaling_factor` to 1 / std of its
  latents, the convention that makes latents unit-variance (`fit_latent_scale`).
- `contrastive`: the image encoder, CLIP-style between the two images of each row (two frames of a
  video, or two augmentations of a photo): matching views embed alike, others apart. This is what
  the frozen encoder is for in MimicBrush: a global description of the reference that survives
  changes of view and light.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import imaging
from ..errors import MimicBrushError
from ..models.depth import depth_input_shape, predict_depth, prepare_depth_input
from ..models.image_encoder import encode_reference_tokens
from ..models.reference_attention import unused_reference_unet_parameters
from ..models.unets import imitative_unet_input
from .config import STAGE_COMPONENTS

TRAINABLE_COMPONENTS = ("imitative_unet", "reference_unet", "image_projection", "depth_guider")


@dataclass
class StepRandomness:
    """Every random draw of one micro-batch, from one seeded generator, so runs replay exactly."""

    noise: torch.Tensor              # (B, 4, h, w) diffusion noise ε
    vae_noise: torch.Tensor          # (3, B, 4, h, w) VAE samples of source, masked source, reference
    timesteps: torch.Tensor          # (B,) long
    keep_reference: torch.Tensor     # (B,) bool; False = CFG-branch row
    zero_depth: torch.Tensor         # (B,) bool; True = depth-model input all zeros
    drop_tokens: torch.Tensor        # (B,) bool; True = CLIP tokens of the all-zero image (attention kept)


def micro_batch_generator(seed: int, step: int, micro_batch: int, rank: int) -> torch.Generator:
    """A generator determined by (seed, optimiser step, micro-batch, process), independent of history."""
    state = np.random.SeedSequence([seed, step, micro_batch, rank]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def draw_randomness(generator: torch.Generator, batch_size: int, latent_size: int, num_train_timesteps: int,
                    reference_dropout: float, depth_dropout: float, token_dropout: float = 0.0) -> StepRandomness:
    shape = (batch_size, 4, latent_size, latent_size)
    return StepRandomness(
        noise=torch.randn(shape, generator=generator),
        vae_noise=torch.randn((3, *shape), generator=generator),
        timesteps=torch.randint(0, num_train_timesteps, (batch_size,), generator=generator),
        keep_reference=torch.rand(batch_size, generator=generator) >= reference_dropout,
        zero_depth=torch.rand(batch_size, generator=generator) < depth_dropout,
        # drawn last, so runs without token dropout replay the draws they always had
        drop_tokens=torch.rand(batch_size, generator=generator) < token_dropout,
    )


# ------------------------------------------------------------------------------ preprocessing
def clip_pixel_values(images: torch.Tensor, feature_extractor) -> torch.Tensor:
    """(B, 3, S, S) squares in [-1, 1] → CLIP inputs: resize to the crop size, OpenAI CLIP mean/std.

    The batched torch twin of `pipeline.clip_pixel_values` on square images (shortest side = crop
    size, so the centre crop is the identity); antialiased bicubic like PIL's resize.
    """
    size = (feature_extractor.crop_size["height"], feature_extractor.crop_size["width"])
    pixels = (images.float() + 1.0) / 2.0
    pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)
    mean = torch.tensor(feature_extractor.image_mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(feature_extractor.image_std, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std  # (B, 3, c, c)


def depth_model_inputs(depth_sources: torch.Tensor, size: int, zero_rows: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) in [-1, 1] → (B, 3, size, size) Depth Anything inputs through the released
    (uint8, cubic, quirky-normalised) preprocessing; rows in `zero_rows` get the all-zero input."""
    rows = []
    for pixels, zero in zip(depth_sources.detach().cpu().float().numpy(), zero_rows.tolist()):
        rows.append(prepare_depth_input(imaging.from_model_range(pixels), size, keep_shape=not zero))
    return torch.from_numpy(np.stack(rows))


# ------------------------------------------------------------------------------ the batch
def prediction_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the U-Net should output for `latents` noised with `noise` at `timesteps`."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise MimicBrushError(f"cannot train a model whose scheduler predicts {prediction_type!r} "
                          "(set model.prediction_type: epsilon or v_prediction)")


@dataclass
class EncodedBatch:
    """A micro-batch after the frozen encoders, ready for `TrainingModel.forward`."""

    noisy_latents: torch.Tensor          # (B, 4, h, w)
    target: torch.Tensor                 # (B, 4, h, w): ε or v (see the module docstring)
    timesteps: torch.Tensor              # (B,) long
    mask_latents: torch.Tensor           # (B, 1, h, w), 1 = generate
    masked_source_latents: torch.Tensor  # (B, 4, h, w)
    reference_latents: torch.Tensor      # (B, 4, h, w), clean
    clip_pixel_values: torch.Tensor      # (B, 3, c, c); all zeros on CFG-branch rows
    depth: torch.Tensor                  # (B, 1, d, d) depth maps (relu'd, not normalised)
    keep_reference: torch.Tensor         # (B,) bool
    pixel_size: int


@torch.no_grad()
def encode_batch(pipeline, batch: dict, randomness: StepRandomness) -> EncodedBatch:
    """Run the frozen parts (VAE, CLIP preprocessing, depth model) on one collated micro-batch."""
    device = pipeline.device
    source = batch["source"].to(device, torch.float32)        # (B, 3, S, S) in [-1, 1]
    reference = batch["reference"].to(device, torch.float32)
    mask = batch["mask"].to(device, torch.float32)            # (B, 1, S, S), 1 = generate
    batch_size, pixel_size = source.shape[0], source.shape[-1]
    latent_size = pixel_size // pipeline.vae_scale_factor
    masked_source = torch.where(mask > 0.5, torch.tensor(-1.0, device=device), source)
    latents = pipeline.encode_latents(torch.cat([source, masked_source, reference]),
                                      randomness.vae_noise.flatten(0, 1))  # (3B, 4, h, w)
    source_latents, masked_source_latents, reference_latents = latents.split(batch_size)
    noise = randomness.noise.to(device)
    timesteps = randomness.timesteps.to(device)
    keep_reference = randomness.keep_reference.to(device)
    if pipeline.depth_estimator is None:  # no depth model: all-zero maps, nothing to preprocess on the CPU
        size = pipeline.config.depth_input_size
        depth = torch.zeros(batch_size, 1, *depth_input_shape(size, size, size), device=device)
    else:
        depth_inputs = depth_model_inputs(batch["depth_source"], pipeline.config.depth_input_size,
                                          randomness.zero_depth)
        depth = predict_depth(pipeline.depth_estimator, depth_inputs.to(device, pipeline.depth_estimator.dtype))
    clip_pixels = clip_pixel_values(reference, pipeline.feature_extractor)
    # A CFG-branch row sees the tokens of an all-zero normalised image, exactly as `unconditional_tokens`.
    with_tokens = keep_reference & ~randomness.drop_tokens.to(device)
    clip_pixels = torch.where(with_tokens.view(-1, 1, 1, 1), clip_pixels, torch.zeros_like(clip_pixels))
    return EncodedBatch(
        noisy_latents=pipeline.scheduler.add_noise(source_latents, noise, timesteps),
        target=prediction_target(pipeline.scheduler, source_latents, noise, timesteps), timesteps=timesteps,
        mask_latents=F.interpolate(mask, size=(latent_size, latent_size), mode="nearest"),
        masked_source_latents=masked_source_latents, reference_latents=reference_latents,
        clip_pixel_values=clip_pixels, depth=depth.float(), keep_reference=keep_reference, pixel_size=pixel_size)


@dataclass
class AutoencoderBatch:
    """Images for `objective.task: autoencoder`: source and reference of every row, cropped."""

    images: torch.Tensor             # (2B, 3, c, c) in [-1, 1]
    vae_noise: torch.Tensor          # (2B, 4, c/f, c/f): the posterior sample's noise


@dataclass
class ContrastiveBatch:
    """Two views per row for `objective.task: contrastive`, as CLIP pixel values."""

    views: tuple[torch.Tensor, torch.Tensor]  # (B, 3, c, c) each: row i of one matches row i of the other


def random_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A `size` square from each of (N, 3, S, S) `images`, at corners drawn from `generator`."""
    side = images.shape[-1]
    if not size or size >= side:
        return images
    corners = torch.randint(0, side - size + 1, (images.shape[0], 2), generator=generator).tolist()
    return torch.stack([image[:, top:top + size, left:left + size] for image, (top, left) in zip(images, corners)])


def micro_batch_inputs(pipeline, batch: dict, generator: torch.Generator, objective) -> Any:
    """What `TrainingModel.forward` takes for one collated micro-batch under `objective` (an
    `ObjectiveConfig`); every random draw comes from `generator`."""
    if objective.task == "autoencoder":
        images = torch.stack([batch["source"], batch["reference"]], dim=1).flatten(0, 1)  # (2B, 3, S, S)
        images = random_crops(images.to(pipeline.device, torch.float32), objective.crop_size, generator)
        latent_size = images.shape[-1] // pipeline.vae_scale_factor
        noise = torch.randn((images.shape[0], pipeline.vae.config.latent_channels, latent_size, latent_size),
                            generator=generator)
        return AutoencoderBatch(images=images, vae_noise=noise.to(pipeline.device))
    if objective.task == "contrastive":
        return ContrastiveBatch(views=tuple(clip_pixel_values(batch[name].to(pipeline.device), pipeline.feature_extractor)
                                            for name in ("source", "reference")))
    randomness = draw_randomness(generator, batch["source"].shape[0],
                                 batch["source"].shape[-1] // pipeline.vae_scale_factor,
                                 pipeline.scheduler.config.num_train_timesteps, objective.reference_dropout,
                                 objective.depth_dropout, objective.token_dropout)
    return encode_batch(pipeline, batch, randomness)


@torch.no_grad()
def fit_latent_scale(vae, dataset, items: int = 16, batch_size: int = 8) -> None:
    """Set the VAE's `scaling_factor` to 1 / std of its latent means over the source and reference of the
    first `items` items of epoch 0, at full size (the same images however the run went): the convention
    that makes latents unit-variance, as SD's 0.18215 does for its VAE."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    rows = [dataset[index] for index in range(min(len(dataset), items))]
    images = torch.stack([row[name] for row in rows for name in ("source", "reference")])
    vae.eval()
    latents = torch.cat([vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist.mean.float()
                         for chunk in images.split(batch_size)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))


# ------------------------------------------------------------------------------ the model
class TrainingModel(nn.Module):
    """The trainable modules of a pipeline as one `nn.Module`; `forward(EncodedBatch)` is the loss.

    Only the trained components are registered submodules (so DDP/FSDP/DeepSpeed see exactly the
    trained parameters); the frozen ones are referenced, not registered. The modules are the
    pipeline's own objects: training them trains the pipeline.
    """

    def __init__(self, pipeline, trainable: tuple[str, ...], kl_weight: float = 1e-6, temperature: float = 0.07) -> None:
        super().__init__()
        components = (*TRAINABLE_COMPONENTS, *STAGE_COMPONENTS.values())
        unknown = set(trainable) - set(components)
        if unknown:
            raise ValueError(f"not a trainable component: {sorted(unknown)}")
        self.trained = nn.ModuleDict({name: getattr(pipeline, name) for name in trainable})
        self._frozen = {name: getattr(pipeline, name) for name in components if name not in trainable}
        self.bank = pipeline.bank
        self.kl_weight, self.temperature = kl_weight, temperature
        for name, module in self.trained.items():
            module.train().requires_grad_(True)
        for module in self._frozen.values():
            module.eval().requires_grad_(False)
        if "reference_unet" in self.trained:
            # They never influence the written features: no gradient reaches them, and DDP would
            # otherwise wait for one.
            unused = set(unused_reference_unet_parameters(pipeline.reference_unet))
            for name, parameter in pipeline.reference_unet.named_parameters():
                if name in unused:
                    parameter.requires_grad_(False)

    def component(self, name: str) -> nn.Module:
        return self.trained[name] if name in self.trained else self._frozen[name]

    def predict(self, batch: EncodedBatch) -> torch.Tensor:
        """The imitative U-Net's (B, 4, h, w) prediction of `batch.target`, reference features written first."""
        imitative_unet = self.component("imitative_unet")
        reference_unet = self.component("reference_unet")
        tokens = encode_reference_tokens(self.component("image_encoder"), self.component("image_projection"),
                                         batch.clip_pixel_values)  # (B, T, D)
        depth_latents = self.component("depth_guider")(batch.depth, batch.pixel_size)  # (B, 4, h, w)

        keep = batch.keep_reference
        batch_size = keep.shape[0]
        reference_trains = "reference_unet" in self.trained
        # A frozen reference U-Net only needs the rows that read it; a trained one runs on every row so
        # that its parameters take part in every step (DDP requires it) even when all rows are dropped.
        rows = torch.arange(batch_size, device=keep.device) if reference_trains else torch.nonzero(keep).squeeze(1)
        position = torch.full((batch_size,), -1, dtype=torch.long, device=keep.device)
        position[rows] = torch.arange(rows.numel(), device=keep.device)
        if rows.numel():
            dtype = reference_unet.dtype
            with nullcontext() if reference_trains else torch.no_grad():
                self.bank.clear()
                reference_unet(batch.reference_latents[rows].to(dtype), batch.timesteps[rows],
                               encoder_hidden_states=tokens[rows].to(dtype))
        # The bank keeps features and index until the next forward: gradient checkpointing re-reads
        # them while recomputing reader blocks during backward.
        self.bank.reference_index = torch.where(keep, position, -1)

        model_input = imitative_unet_input(batch.noisy_latents, batch.mask_latents, batch.masked_source_latents,
                                           depth_latents)  # (B, 13, h, w)
        dtype = imitative_unet.dtype
        return imitative_unet(model_input.to(dtype), batch.timesteps, encoder_hidden_states=tokens.to(dtype)).sample

    def forward(self, batch: EncodedBatch | AutoencoderBatch | ContrastiveBatch) -> torch.Tensor:
        if isinstance(batch, AutoencoderBatch):
            return self.autoencoder_loss(batch)
        if isinstance(batch, ContrastiveBatch):
            return self.contrastive_loss(batch)
        loss = F.mse_loss(self.predict(batch).float(), batch.target.float())
        if "reference_unet" in self.trained and not bool(batch.keep_reference.any()):
            loss = loss + 0.0 * sum(features.float().mean() for features in self.bank.features if features is not None)
        return loss

    def autoencoder_loss(self, batch: AutoencoderBatch) -> torch.Tensor:
        vae = self.component("vae")
        posterior = vae.encode(batch.images).latent_dist
        reconstruction = vae.decode(posterior.mean + posterior.std * batch.vae_noise).sample
        return F.l1_loss(reconstruction, batch.images) + self.kl_weight * posterior.kl().mean()

    def contrastive_loss(self, batch: ContrastiveBatch) -> torch.Tensor:
        encoder = self.component("image_encoder")
        embeddings = [F.normalize(encoder(pixel_values=view).image_embeds, dim=-1) for view in batch.views]
        logits = embeddings[0] @ embeddings[1].T / self.temperature  # (B, B): row i matches row i
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
