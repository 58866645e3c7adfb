"""The training run as typed, frozen dataclasses; `load_train_config` reads one strictly from YAML.

Every default is written here, once. A YAML file only names what differs, and command-line
flags override single keys (`--set optimizer.lr=1e-4`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import load_config
from ..data.dataset import TrainingDataConfig
from ..errors import MimicBrushError

TrainableModule = Literal["imitative_unet", "reference_unet", "image_projection", "depth_guider", "vae",
                          "image_encoder"]
STAGE_COMPONENTS = {"autoencoder": "vae", "contrastive": "image_encoder"}  # objective.task → the one module it trains
DEFAULT_TRAINABLE: tuple[TrainableModule, ...] = ("imitative_unet", "image_projection", "depth_guider")


@dataclass(frozen=True)
class ModelConfig:
    """Where the weights start.

    - `random`: a named size (`tiny`, `demo`, `released`) with random weights;
    - `folder`: a model folder in our format (`mimicbrush convert` / `train --export`) or the released layout;
    - `stable-diffusion`: the paper's initialisation: imitative U-Net from SD-inpainting (9 → 13
      channels), reference U-Net from SD-1.5, the VAE, a CLIP image encoder folder and, optionally, the
      original Depth Anything weights; projection and depth guider start fresh.
    """

    init: Literal["random", "folder", "stable-diffusion"] = "random"
    size: str = "tiny"
    path: Path | None = None                 # init: folder
    sd15: Path | None = None                 # init: stable-diffusion — SD-1.5 diffusers folder (unet/, vae/)
    sd_inpainting: Path | None = None        # init: stable-diffusion — SD-inpainting diffusers folder (unet/)
    vae: Path | None = None                  # default: <sd15>/vae
    image_encoder: Path | None = None        # CLIPVisionModelWithProjection folder
    depth_model: Path | None = None          # depth_anything_vitb14.pth; none: depth input is all zeros
    seed: int = 0                            # random init and fresh modules
    align_reference_unet: bool = False       # start the reference U-Net as a copy of the imitative one, as
                                             # SD init gives the paper (models/unets.py); for models from nothing
    reference_positions: Literal["none", "local"] | None = None
                                             # positions in the reference attention (models/reference_attention.py);
                                             # None: the starting model's
    prediction_type: Literal["epsilon", "v_prediction"] | None = None
                                             # what the imitative U-Net predicts; written into the scheduler
                                             # config the exported model carries. None: the starting model's
                                             # (released: epsilon)


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adam", "adamw"] = "adam"  # paper: Adam, lr 1e-5
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0


@dataclass(frozen=True)
class ObjectiveConfig:
    task: Literal["edit", "autoencoder", "contrastive"] = "edit"
                                             # edit: the MimicBrush objective; autoencoder / contrastive: stage 0
                                             # of a model from nothing, its VAE / image encoder (objective.py)
    reference_dropout: float = 0.1           # rows trained as the CFG branch (paper 10%, random)
    depth_dropout: float = 0.5               # rows whose depth-model input is all zeros (shape control off)
    token_dropout: float = 0.0               # rows that keep reference attention but see the all-zero image's
                                             # CLIP tokens, so the tokens cannot stand in for attention
    crop_size: int = 0                       # autoencoder: random crops of this side (0: whole images)
    kl_weight: float = 1e-6                  # autoencoder: SD's weight, near-deterministic latents
    temperature: float = 0.07                # contrastive: CLIP's initial logit temperature


@dataclass(frozen=True)
class EMAConfig:
    enabled: bool = False
    decay: float = 0.9999
    update_after_step: int = 0
    warmup: bool = True
    warmup_power: float = 0.75


@dataclass(frozen=True)
class ValidationConfig:
    every: int = 500                         # 0: never
    items: int = 4                           # the first N items of the validation data
    shard_dirs: tuple[Path, ...] = ()        # held-out prepared data; default: the training data
    steps: int = 20
    guidance: float = 5.0
    keep_shape: bool = False
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: TrainingDataConfig = field(default_factory=TrainingDataConfig)  # shards, mix, augmentation, masking
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    trainable: tuple[TrainableModule, ...] = DEFAULT_TRAINABLE
    steps: int = 1000                        # optimiser steps
    time_limit: float = 0.0                  # minutes: stop at the first step past this much training time,
                                             # checkpoint and export as at the end (0: none); --resume goes on
    batch_size: int = 1                      # per process, per micro-batch
    gradient_accumulation: int = 1
    num_workers: int = 0                     # data-loading processes per training process
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500              # 0: only at the end
    keep_checkpoints: int = 3                # 0: keep all
    log_every: int = 1
    logger: Literal["csv", "tensorboard"] = "csv"
    seed: int = 0
    output_dir: Path = Path("runs/train")
    resume: str | None = None                # "latest" or a checkpoint folder
    export: Path | None = None               # write an `edit --weights` folder at the end

    def __post_init__(self) -> None:
        in_range = {"steps": self.steps >= 1, "batch_size": self.batch_size >= 1,
                    "gradient_accumulation": self.gradient_accumulation >= 1, "log_every": self.log_every >= 1,
                    "checkpoint_every": self.checkpoint_every >= 0, "keep_checkpoints": self.keep_checkpoints >= 0,
                    "num_workers": self.num_workers >= 0, "data.resolution": self.data.resolution % 8 == 0,
                    "validation.every": self.validation.every >= 0, "validation.steps": self.validation.steps >= 1,
                    "optimizer.lr": self.optimizer.lr > 0, "optimizer.warmup_steps": self.optimizer.warmup_steps >= 0,
                    "time_limit": self.time_limit >= 0}
        for key, ok in in_range.items():
            if not ok:
                raise MimicBrushError(f"config key {key} is out of range")
        for key, p in (("objective.reference_dropout", self.objective.reference_dropout),
                       ("objective.depth_dropout", self.objective.depth_dropout),
                       ("objective.token_dropout", self.objective.token_dropout)):
            if not 0.0 <= p <= 1.0:
                raise MimicBrushError(f"config key {key} must be a probability in [0, 1], got {p}")
        if not self.trainable or len(set(self.trainable)) != len(self.trainable):
            raise MimicBrushError("config key trainable must list each trainable module once")
        self._check_task()
        model = self.model
        required = {"folder": ("path",), "stable-diffusion": ("sd15", "sd_inpainting", "image_encoder")}
        needed = required.get(model.init, ())
        for key in needed:
            if getattr(model, key) is None:
                raise MimicBrushError(f"config key model.{key} is required with model.init: {model.init}")


    def _check_task(self) -> None:
        task = self.objective.task
        if task in STAGE_COMPONENTS:
            module = STAGE_COMPONENTS[task]
            if tuple(self.trainable) != (module,):
                raise MimicBrushError(f"objective.task {task} trains the {module} alone: set trainable: [{module}]")
            if self.validation.every:
                raise MimicBrushError(f"validation renders edits: set validation.every: 0 with objective.task {task}")
        elif set(self.trainable) & set(STAGE_COMPONENTS.values()):
            raise MimicBrushError("the vae and image_encoder are trained by objective.task autoencoder / contrastive, "
                                  "alone; the edit objective keeps them frozen")
        if self.objective.crop_size < 0 or self.objective.kl_weight < 0 or self.objective.temperature <= 0:
            raise MimicBrushError("config keys objective.crop_size, kl_weight must be >= 0 and temperature > 0")


def load_train_config(source: str | Path | dict[str, Any] | None = None,
                      overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A `TrainConfig` from a YAML file (or mapping) plus dotted-key overrides; user errors are one line."""
    try:
        return load_config(TrainConfig, source, overrides)
    except TypeError as error:  # a key given as a scalar where a section is expected, etc.
        raise MimicBrushError(f"invalid training config: {error}") from None
