"""The training run as typed, frozen dataclasses; `load_train_config` reads one strictly from YAML.

Every default is written here, once. A YAML file only names what differs, and command-line
flags override single keys (`--set optimizer.lr=1e-4`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
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
        _check_numbers(self, "")
        for key, value, ok, rule in self._ranges():
            if not ok:
                raise MimicBrushError(f"config key {key} must be {rule}, got {value!r}")
        if not self.trainable or len(set(self.trainable)) != len(self.trainable):
            raise MimicBrushError("config key trainable must list each trainable module once")
        self._check_task()
        model = self.model
        required = {"folder": ("path",), "stable-diffusion": ("sd15", "sd_inpainting", "image_encoder")}
        needed = required.get(model.init, ())
        for key in needed:
            if getattr(model, key) is None:
                raise MimicBrushError(f"config key model.{key} is required with model.init: {model.init}")

    def _ranges(self):
        """(key, value, whether it is in range, the range in words) for every number with a limit of its own.
        (Every number is also finite and every integer fits 64 bits: `_check_numbers`.)"""
        optimizer, objective, ema, validation = self.optimizer, self.objective, self.ema, self.validation
        at_least = lambda key, value, low: (key, value, value >= low, f"at least {low}")  # noqa: E731
        above = lambda key, value, low: (key, value, value > low, f"above {low}")  # noqa: E731
        yield from (at_least("steps", self.steps, 1), at_least("batch_size", self.batch_size, 1),
                    at_least("gradient_accumulation", self.gradient_accumulation, 1),
                    at_least("log_every", self.log_every, 1), at_least("checkpoint_every", self.checkpoint_every, 0),
                    at_least("keep_checkpoints", self.keep_checkpoints, 0),
                    at_least("num_workers", self.num_workers, 0), at_least("time_limit", self.time_limit, 0),
                    at_least("data.resolution", self.data.resolution, 8),
                    ("data.resolution", self.data.resolution, self.data.resolution % 8 == 0, "a multiple of 8"),
                    above("optimizer.lr", optimizer.lr, 0), above("optimizer.eps", optimizer.eps, 0),
                    at_least("optimizer.weight_decay", optimizer.weight_decay, 0),
                    at_least("optimizer.warmup_steps", optimizer.warmup_steps, 0),
                    at_least("objective.crop_size", objective.crop_size, 0),
                    at_least("objective.kl_weight", objective.kl_weight, 0),
                    above("objective.temperature", objective.temperature, 0),
                    ("ema.decay", ema.decay, 0 <= ema.decay <= 1, "in [0, 1]"),
                    at_least("ema.update_after_step", ema.update_after_step, 0),
                    above("ema.warmup_power", ema.warmup_power, 0),
                    at_least("validation.every", validation.every, 0), at_least("validation.items", validation.items, 1),
                    at_least("validation.steps", validation.steps, 1),
                    at_least("validation.guidance", validation.guidance, 0))
        if optimizer.max_grad_norm is not None:
            yield above("optimizer.max_grad_norm", optimizer.max_grad_norm, 0)
        for index, beta in enumerate(optimizer.betas):
            yield f"optimizer.betas[{index}]", beta, 0 <= beta < 1, "in [0, 1)"
        for key, p in (("objective.reference_dropout", objective.reference_dropout),
                       ("objective.depth_dropout", objective.depth_dropout),
                       ("objective.token_dropout", objective.token_dropout)):
            yield key, p, 0.0 <= p <= 1.0, "a probability in [0, 1]"

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


MAX_INTEGER = 2**63 - 1  # what torch and numpy take (steps, sizes, seeds)


def _check_numbers(config: Any, prefix: str) -> None:
    """Every number of a config tree is finite, every integer fits 64 bits, and every seed is not negative
    (NaN passes every comparison's `not`, infinity most; a seed or count past 64 bits fails deep in torch)."""
    for item in fields(config):
        value, key = getattr(config, item.name), f"{prefix}{item.name}"
        values = [(f"{key}[{index}]", entry) for index, entry in enumerate(value)] if isinstance(value, tuple) \
            else [(key, value)]
        for name, entry in values:
            if is_dataclass(entry):
                _check_numbers(entry, f"{name}.")
            elif isinstance(entry, float) and not math.isfinite(entry):
                raise MimicBrushError(f"config key {name} must be a finite number, got {entry!r}")
            elif isinstance(entry, int) and not isinstance(entry, bool):
                if abs(entry) > MAX_INTEGER:
                    raise MimicBrushError(f"config key {name} must be at most {MAX_INTEGER}, got {entry}")
                if item.name == "seed" and entry < 0:
                    raise MimicBrushError(f"config key {name} must be at least 0, got {entry}")


def load_train_config(source: str | Path | dict[str, Any] | None = None,
                      overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A `TrainConfig` from a YAML file (or mapping) plus dotted-key overrides; user errors are one line."""
    try:
        return load_config(TrainConfig, source, overrides)
    except TypeError as error:  # a key given as a scalar where a section is expected, etc.
        raise MimicBrushError(f"invalid training config: {error}") from None
