"""Export a trained pipeline as the model folder `mimicbrush edit --weights DIR` loads."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MimicBrushError
from ..models.checkpoints import save_pipeline_atomically
from ..models.state_dicts import load_state_dict_checked


def export_trained_pipeline(accelerator, pipeline, ema, trained_parameters, destination: Path) -> Path | None:
    """Write `pipeline` (with the EMA weights when EMA is on) in fp32 safetensors; main process only.

    Frozen modules may have run in half precision during training; the folder is written in fp32
    so that it loads like every other model folder.
    """
    destination = Path(destination)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            ema.store(trained_parameters)
            ema.copy_to(trained_parameters)
        try:
            for module in pipeline.components.values():
                if isinstance(module, torch.nn.Module) and module.dtype != torch.float32:
                    module.to(torch.float32)
            save_pipeline_atomically(pipeline, destination, replace_model=True)
        finally:
            if ema is not None:
                ema.restore(trained_parameters)
    accelerator.wait_for_everyone()
    return destination


def export_checkpoint(config, checkpoint: Path, destination: Path, use_ema: bool = True) -> Path:
    """A training checkpoint → an `edit --weights` folder, in one process (any strategy that wrote it).

    Builds the run's starting pipeline from `config.model`, loads the checkpoint's trained weights
    (its EMA weights when present and `use_ema`), and saves the pipeline.
    """
    from safetensors.torch import load_file

    from .initialise import build_training_pipeline
    from .objective import TrainingModel

    checkpoint = Path(checkpoint)
    weights_file = checkpoint / ("ema.safetensors" if use_ema and (checkpoint / "ema.safetensors").is_file()
                                 else "weights.safetensors")
    if not weights_file.is_file():
        raise MimicBrushError(f"not a training checkpoint (no weights.safetensors): {checkpoint}")
    pipeline = build_training_pipeline(config.model)
    model = TrainingModel(pipeline, config.trainable)
    # The EMA file holds the trained parameters only; the weights file every parameter.
    required = {name for name, parameter in model.named_parameters()
                if parameter.requires_grad or weights_file.name == "weights.safetensors"}
    load_state_dict_checked(model, load_file(weights_file), f"checkpoint {checkpoint.name} does not match the "
                            "config's model", allowed_missing=set(model.state_dict()) - required)
    if config.objective.task == "autoencoder":  # as `train` does before its own export
        from .batches import open_training_data
        from .objective import fit_latent_scale

        fit_latent_scale(pipeline.vae, open_training_data(config.data))
    save_pipeline_atomically(pipeline, Path(destination))
    return Path(destination)
