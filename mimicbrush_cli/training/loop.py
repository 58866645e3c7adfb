"""The training loop on accelerate: one process on a CPU, `accelerate launch` for DDP on many GPUs or
nodes (FSDP2 and DeepSpeed ZeRO-2 through the configs in `configs/accelerate/`; all three also on CPU
processes, see `make_accelerator`).

One optimiser step = `gradient_accumulation` micro-batches of `batch_size` rows per process. Every
random draw of a micro-batch comes from a generator seeded by (seed, step, micro-batch, process) and
the data order is a function of (seed, epoch), so a run resumed from a checkpoint replays exactly
the losses of a run that never stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from ..errors import MimicBrushError
from ..loading import resolve_device
from .batches import DataPosition, MicroBatchStream, ResumableBatchSampler, open_training_data
from .checkpointing import load_checkpoint, resolve_resume, save_checkpoint
from .config import TrainConfig
from .initialise import build_training_pipeline
from .objective import TrainingModel, fit_latent_scale, micro_batch_generator, micro_batch_inputs
from .scalars import ScalarLog

StepCallback = Callable[["StepReport"], None]
MIXED_PRECISION_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class StepReport:
    step: int
    total_steps: int
    loss: float
    lr: float
    steps_per_second: float


@dataclass
class TrainResult:
    output_dir: Path
    step: int                                   # the run's optimiser step at the end
    losses: dict[int, float] = field(default_factory=dict)  # step → loss, steps run by this call
    seconds: float = 0.0                        # wall time of those steps
    last_checkpoint: Path | None = None
    exported: Path | None = None
    pipeline: Any = None                        # the trained pipeline (live weights, not EMA)

    @property
    def steps_per_second(self) -> float:
        return len(self.losses) / self.seconds if self.seconds > 0 else 0.0


def make_optimizer(parameters, config) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return optimizer_class(parameters, lr=config.lr, betas=config.betas, eps=config.eps,
                           weight_decay=config.weight_decay)


def place_for_training(pipeline, model: TrainingModel, device: torch.device, dtype: torch.dtype) -> None:
    """Trained modules stay fp32 (autocast does the mixed precision); frozen ones run in `dtype`."""
    pipeline.to(device)
    for module in (pipeline.depth_estimator, *model._frozen.values()):
        if module is not None and module.dtype != dtype:
            module.to(dtype)


def make_accelerator(mixed_precision: str) -> Accelerator:
    """The run's accelerator, as the environment `accelerate launch` sets up says.

    On a machine without a GPU, `cpu=True` is what lets a torchrun/accelerate-launched job run as
    MULTI_CPU (gloo) instead of as unrelated single processes. For the sharded strategies accelerate
    (1.16) needs help on CPU processes:

    - FSDP: `AcceleratorState.__init__` (accelerate/state.py) turns an FSDP launch config into FSDP only
      for GPU-like process groups, not MULTI_CPU, so the processes would silently train as plain DDP.
      Here they get the FSDP plugin the launch config describes, as GPUs would; accelerate's own FSDP2
      code (`fully_shard`, `save_state`/`load_state`) runs from there. FSDP1 does not run on CPU.
    - DeepSpeed: accelerate sets it up only with `cpu=False`, and then finds no process-group backend
      for CPU processes (each would think it is the only one) unless told gloo.
    """
    from accelerate.state import PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin, InitProcessGroupKwargs

    cpu = resolve_device("auto").type == "cpu"
    launched_with = {name: os.environ.get(f"ACCELERATE_USE_{name}", "false").lower() == "true"
                     for name in ("FSDP", "DEEPSPEED")}
    if cpu and launched_with["DEEPSPEED"] and "LOCAL_RANK" in os.environ:
        return Accelerator(mixed_precision=mixed_precision, kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    if accelerator.distributed_type == DistributedType.MULTI_CPU and launched_with["FSDP"]:
        plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables of the launch config
        if plugin.fsdp_version != 2:
            raise MimicBrushError("FSDP on CPU processes needs fsdp_version: 2 (torch's FSDP1 wants a GPU); "
                                  "see configs/accelerate/fsdp2_cpu.yaml")
        # What AcceleratorState.__init__ does for GPUs. PartialState's copy too: every later
        # AcceleratorState() copies its distributed_type back in.
        accelerator.state.fsdp_plugin = plugin
        accelerator.state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return accelerator


def train(config: TrainConfig, dataset=None, validation_dataset=None, *, show_progress: bool = True,
          on_step: StepCallback | None = None, accelerator: Accelerator | None = None) -> TrainResult:
    """Train (or continue training) a MimicBrush pipeline as `config` says; see `TrainConfig`.

    `dataset` overrides `config.data` (a map-style dataset of dicts with `source`, `reference`,
    `depth_source` (3, S, S) in [-1, 1] and `mask` (1, S, S), 1 = generate).
    """
    if dataset is None:
        dataset = open_training_data(config.data)
    accelerator = accelerator or make_accelerator(config.mixed_precision)
    check_distributed_support(config, accelerator.distributed_type)
    output_dir = Path(config.output_dir)
    pipeline = build_training_pipeline(config.model)
    model = TrainingModel(pipeline, config.trainable, config.objective.kl_weight, config.objective.temperature)
    if config.gradient_checkpointing:
        for name in ("imitative_unet", "reference_unet"):
            if name in model.trained:
                model.trained[name].enable_gradient_checkpointing()
    place_for_training(pipeline, model, accelerator.device, MIXED_PRECISION_DTYPES[config.mixed_precision])

    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config.optimizer)
    lr_scheduler = get_scheduler(config.optimizer.schedule, optimizer, num_warmup_steps=config.optimizer.warmup_steps,
                                 num_training_steps=max(config.steps, 1))
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed needs the per-process micro-batch size up front; accelerate reads it from a prepared
        # DataLoader, which this loop (its own resumable batch stream) does not have.
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size
    # The LR schedule stays unprepared: it is stepped once per optimiser step, whatever the process count.
    model, optimizer = accelerator.prepare(model, optimizer)
    trained_parameters = [p for p in accelerator.unwrap_model(model).parameters() if p.requires_grad]
    ema = None
    if config.ema.enabled and accelerator.is_main_process:
        ema = EMAModel(trained_parameters, decay=config.ema.decay, update_after_step=config.ema.update_after_step,
                       use_ema_warmup=config.ema.warmup, power=config.ema.warmup_power)

    step, position = 0, DataPosition()
    resume_from = resolve_resume(output_dir, config.resume)
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from, model, optimizer, lr_scheduler, ema)
        if state.get("seed", config.seed) != config.seed:
            raise MimicBrushError(f"checkpoint {resume_from.name} was written with seed {state['seed']}, the config "
                                  f"says {config.seed}: the data order and noise would not continue")
        step, position = int(state["step"]), DataPosition(**state["data"])

    sampler = ResumableBatchSampler(len(dataset), config.batch_size, config.seed,
                                    accelerator.num_processes, accelerator.process_index)
    stream = MicroBatchStream(dataset, sampler, position, config.num_workers)
    log = ScalarLog(output_dir / "logs", config.logger, resumed_step=step) if accelerator.is_main_process else None
    validation = _Validation(config, pipeline, validation_dataset or dataset, output_dir) \
        if accelerator.is_main_process and config.validation.every > 0 else None

    result = TrainResult(output_dir=output_dir, step=step, pipeline=pipeline)
    progress = _Progress(config.steps, step, enabled=show_progress and accelerator.is_main_process,
                         every=config.log_every)
    started = time.perf_counter()
    out_of_time = False
    try:
        with progress:
            while step < config.steps and not out_of_time:
                model.train()
                micro_losses = []
                for micro_batch in range(config.gradient_accumulation):
                    encoded = micro_batch_inputs(
                        pipeline, stream.next(),
                        micro_batch_generator(config.seed, step, micro_batch, accelerator.process_index),
                        config.objective)
                    last = micro_batch == config.gradient_accumulation - 1
                    with nullcontext() if last else accelerator.no_sync(model):
                        loss = model(encoded)
                        accelerator.backward(loss / config.gradient_accumulation)
                    micro_losses.append(loss.detach().float())
                    pipeline.bank.clear()
                grad_norm = None
                if config.optimizer.max_grad_norm is not None:
                    grad_norm = accelerator.clip_grad_norm_(trained_parameters, config.optimizer.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if ema is not None:
                    ema.step(trained_parameters)
                loss_value = accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean").item()
                lr = lr_scheduler.get_last_lr()[0]
                result.losses[step] = loss_value
                elapsed = time.perf_counter() - started
                speed = len(result.losses) / elapsed
                # Every process stops at the same step: the main process's clock decides.
                out_of_time = config.time_limit > 0 and _agree(accelerator, elapsed >= config.time_limit * 60)
                last_step = step == config.steps or out_of_time
                progress.update(step, loss_value, lr, speed, force=last_step)
                if log is not None and (step % config.log_every == 0 or last_step):
                    log.log(step, loss=loss_value, lr=lr, steps_per_second=speed,
                            grad_norm=float(grad_norm) if grad_norm is not None else "")
                if (config.checkpoint_every and step % config.checkpoint_every == 0) or last_step:
                    result.last_checkpoint = save_checkpoint(
                        accelerator, output_dir, step, model, optimizer, lr_scheduler, ema,
                        {"data": stream.position.state_dict(), "seed": config.seed}, config.keep_checkpoints)
                if validation is not None and (step % config.validation.every == 0 or last_step):
                    validation.run(step, ema, trained_parameters)
                if config.validation.every > 0:
                    accelerator.wait_for_everyone()
                result.seconds = time.perf_counter() - started
                if on_step is not None:
                    on_step(StepReport(step, config.steps, loss_value, lr, speed))
    finally:
        if log is not None:
            log.close()
    result.step = step
    if out_of_time:
        progress.note(f"train: time limit of {config.time_limit:g} min reached at step {step}/{config.steps}; "
                      "--resume latest goes on")
    if config.objective.task == "autoencoder" and accelerator.is_main_process:
        fit_latent_scale(pipeline.vae, dataset)
    if config.export is not None:
        from .export import export_trained_pipeline

        result.exported = export_trained_pipeline(accelerator, pipeline, ema, trained_parameters, config.export)
    return result


def _agree(accelerator: Accelerator, flag: bool) -> bool:
    """The main process's `flag`, on every process."""
    if accelerator.num_processes == 1:
        return flag
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([flag], device=accelerator.device)).item())


def check_distributed_support(config: TrainConfig, distributed_type: DistributedType) -> None:
    """What each sharding strategy cannot do in this loop, as one-line errors before any work."""
    if distributed_type == DistributedType.DEEPSPEED and config.gradient_accumulation > 1:
        raise MimicBrushError("gradient_accumulation > 1 is not supported under DeepSpeed: raise batch_size instead")
    if distributed_type == DistributedType.FSDP:
        unsupported = [name for name, on in (("ema.enabled", config.ema.enabled), ("validation.every",
                       config.validation.every > 0), ("export", config.export is not None)) if on]
        if unsupported:
            raise MimicBrushError(f"{unsupported[0]} is not supported under FSDP (parameters are sharded); export "
                                  "a checkpoint afterwards with mimicbrush_cli.training.export.export_checkpoint")


class _Validation:
    def __init__(self, config: TrainConfig, pipeline, dataset, output_dir: Path) -> None:
        from .validation import validation_items

        if config.validation.shard_dirs:
            dataset = open_training_data(replace(config.data, shard_dirs=config.validation.shard_dirs))
        self.config, self.pipeline = config.validation, pipeline
        self.items = validation_items(dataset, config.validation.items)
        self.folder = output_dir / "validation"

    def run(self, step: int, ema, parameters) -> None:
        from .validation import save_validation_grid

        if ema is not None:
            ema.store(parameters)
            ema.copy_to(parameters)
        try:
            save_validation_grid(self.pipeline, self.items, self.config, self.folder / f"step-{step:06d}.png")
        finally:
            if ema is not None:
                ema.restore(parameters)


class _Progress:
    """Progress of the main process: a rich bar (loss, lr, it/s, ETA) on a terminal; off a terminal (a
    log file, a pipe), a line every `every` steps, which a bar would not show until the end."""

    def __init__(self, total: int, start: int, enabled: bool, every: int = 1) -> None:
        from rich.console import Console

        self.enabled, self.total, self.every = enabled, total, every
        self.console = Console(stderr=True)
        self.progress = None
        if not enabled or not self.console.is_terminal:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} it/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
        self.task = self.progress.add_task("train", total=total, completed=start, loss="-", lr="-", speed="-")

    def __enter__(self):
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def update(self, step: int, loss: float, lr: float, speed: float, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", speed=f"{speed:.2f}")
        elif step % self.every == 0 or step == self.total or force:
            self.console.print(f"train {step}/{self.total} loss {loss:.4f} lr {lr:.2e} {speed:.2f} it/s",
                               highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False, soft_wrap=True)
