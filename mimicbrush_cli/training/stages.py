"""Stage 0 of a model trained from nothing: its VAE, then its image encoder, before the U-Nets.

Models that start from Stable Diffusion reuse SD's VAE and a pretrained CLIP; the small bundled
`demo` model has neither, so it trains them first, each in a stage of its own:

- `vae`: reconstruct the augmented training images (L1 + a small KL term); afterwards the VAE's
  `scaling_factor` is set to 1 / std of its latents, the convention that makes latents unit-variance.
- `image_encoder`: a CLIP-style contrastive objective between the two images of each training pair
  (two frames of a video, or two augmentations of a photo): matching views embed alike, others apart.
  This is what the frozen encoder is for in MimicBrush: a global description of the reference that
  survives changes of view and light.

Each stage reads the model folder of the previous one (or builds a random model of a named size),
trains its component, and writes `<output_dir>/model/`, a complete model folder. Interrupted stages
resume from `<output_dir>/checkpoint/`; a finished stage is not run again.

    python -m mimicbrush_cli.training.stages CONFIG [key=value ...]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..config import load_config
from ..data.dataset import MimicBrushTrainingSet, TrainingDataConfig
from ..errors import MimicBrushError
from ..loading import load_pipeline_folder
from ..models.build import build_random_pipeline
from ..models.checkpoints import save_pipeline_atomically
from .objective import clip_pixel_values

ProgressCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class StageConfig:
    stage: Literal["vae", "image_encoder"] = "vae"
    data: TrainingDataConfig = field(default_factory=TrainingDataConfig)
    size: str = "demo"              # a random model of this size, when no `init_folder` is given
    init_folder: Path | None = None  # the previous stage's model folder
    steps: int = 600
    batch_size: int = 8             # images (vae) or pairs (image_encoder) per step
    lr: float = 5e-4                # from scratch, small models: far above SD-scale fine-tuning rates
    kl_weight: float = 1e-6         # vae: SD's weight, near-deterministic latents in a smooth space
    crop_size: int = 0              # vae: train on random crops of this side (0: whole images); the VAE is
                                    # convolutional, so crops teach it the same at a fraction of the cost
    temperature: float = 0.07       # image_encoder: CLIP's initial logit temperature
    checkpoint_every: int = 100
    seed: int = 0
    output_dir: Path = Path("runs/stage")


def _items(dataset: MimicBrushTrainingSet, step: int, count: int) -> list[dict]:
    """The dataset items of optimiser step `step`, epoch after epoch, each item seen once per epoch."""
    items = []
    for position in range(step * count, (step + 1) * count):
        epoch, index = divmod(position, len(dataset))
        dataset.set_epoch(epoch)
        items.append(dataset[index])
    return items


def _vae_loss(pipeline, dataset, step: int, config: StageConfig) -> torch.Tensor:
    items = _items(dataset, step, (config.batch_size + 1) // 2)
    images = torch.stack([image for item in items for image in (item["source"], item["reference"])])[:config.batch_size]
    if config.crop_size:
        side = images.shape[-1]
        corners = torch.randint(0, side - config.crop_size + 1, (len(images), 2))
        images = torch.stack([image[:, top:top + config.crop_size, left:left + config.crop_size]
                              for image, (top, left) in zip(images, corners.tolist())])
    posterior = pipeline.vae.encode(images).latent_dist
    reconstruction = pipeline.vae.decode(posterior.sample()).sample
    return F.l1_loss(reconstruction, images) + config.kl_weight * posterior.kl().mean()


def _contrastive_loss(pipeline, dataset, step: int, config: StageConfig) -> torch.Tensor:
    items = _items(dataset, step, config.batch_size)
    views = [torch.stack([item[name] for item in items]) for name in ("source", "reference")]
    embeddings = [F.normalize(pipeline.image_encoder(pixel_values=clip_pixel_values(view, pipeline.feature_extractor))
                              .image_embeds, dim=-1) for view in views]
    logits = embeddings[0] @ embeddings[1].T / config.temperature  # (B, B): pair i matches pair i
    targets = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


STAGES = {"vae": ("vae", _vae_loss), "image_encoder": ("image_encoder", _contrastive_loss)}


def _save_checkpoint(folder: Path, module: torch.nn.Module, optimizer, step: int) -> None:
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in module.state_dict().items()}, staging / "weights.safetensors")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    (staging / "state.json").write_text(json.dumps({"step": step}))
    previous = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


def run_stage(config: StageConfig, progress: ProgressCallback | None = None) -> Path:
    """Train one stage-0 component; returns the model folder for the next stage."""
    if not config.data.shard_dirs:
        raise MimicBrushError("config key data.shard_dirs must name at least one prepared data folder")
    model_dir = Path(config.output_dir) / "model"
    if (model_dir / "model_index.json").is_file():
        return model_dir
    torch.manual_seed(config.seed)
    pipeline = (load_pipeline_folder(config.init_folder) if config.init_folder is not None
                else build_random_pipeline(config.size, seed=config.seed))
    component_name, loss_of_step = STAGES[config.stage]
    module = getattr(pipeline, component_name).train().requires_grad_(True)
    dataset = MimicBrushTrainingSet(config.data)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=0.0)
    checkpoint = Path(config.output_dir) / "checkpoint"
    start = 0
    if (checkpoint / "state.json").is_file():
        module.load_state_dict(load_file(checkpoint / "weights.safetensors"))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        start = json.loads((checkpoint / "state.json").read_text())["step"]
    for step in range(start, config.steps):
        # Every draw of a step (VAE sampling, dataset augmentation) is seeded by the step, so a resumed
        # run computes what an uninterrupted one would have.
        torch.manual_seed(config.seed * 1_000_003 + step)
        loss = loss_of_step(pipeline, dataset, step, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        if progress is not None:
            progress(step + 1, config.steps, loss.item())
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _save_checkpoint(checkpoint, module, optimizer, step + 1)
    module.eval().requires_grad_(False)
    if config.stage == "vae":
        with torch.no_grad():
            latents = torch.cat([pipeline.vae.encode(torch.stack([item["source"] for item in _items(dataset, index, 8)]))
                                 .latent_dist.mean for index in range(4)])
        pipeline.vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    save_pipeline_atomically(pipeline, model_dir)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return model_dir


def main(argv: list[str] | None = None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..cli.app import error_console

    arguments = sys.argv[1:] if argv is None else argv
    if not arguments:
        raise SystemExit(__doc__.strip().splitlines()[-1].strip())
    try:
        config = load_config(StageConfig, arguments[0], dict(argument.split("=", 1) for argument in arguments[1:]))
        with Progress(TextColumn(config.stage), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn()) as bar:
            task = bar.add_task(config.stage, total=config.steps, loss=float("nan"))
            model_dir = run_stage(config, lambda step, total, loss: bar.update(task, completed=step, loss=loss))
    except MimicBrushError as error:
        error_console.print(f"[bold red]error:[/] {error}")
        raise SystemExit(2) from None
    print(f"model folder: {model_dir}")


if __name__ == "__main__":
    main()
