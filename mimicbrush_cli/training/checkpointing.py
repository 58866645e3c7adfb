"""Training checkpoints: everything a killed run needs to continue as if it never stopped.

    <output_dir>/checkpoints/step-000500/
        weights.safetensors      the trained modules (keys `trained.<component>.<parameter>`)
        ema.safetensors          EMA weights, same keys (when EMA is on)
        optimizer.pt             optimiser state (tensors and numbers only: loads with weights_only=True)
        rng-<rank>.safetensors   each process's torch RNG state
        state.json               step, data position, LR-schedule, EMA and grad-scaler counters

A checkpoint is assembled in a hidden sibling folder and renamed into place once every process has
written its part (`outputs.commit_folder`, which also replaces a checkpoint of the same step without a
moment where neither exists), so a folder named `step-*` is always complete. FSDP and DeepSpeed shard the model
and optimiser: there accelerate's own `save_state` (in `accelerate/`: per-process shards, or one file under
FSDP's FULL_STATE_DICT) replaces optimizer.pt and is what a resume loads; weights.safetensors is still
written, gathered whole, for `export.export_checkpoint`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_file, save_file

from ..errors import MimicBrushError, first_line
from ..outputs import commit_folder

CHECKPOINTS_FOLDER = "checkpoints"
STATE_FILE = "state.json"
SHARDED_TYPES = (DistributedType.FSDP, DistributedType.DEEPSPEED)


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return []
    found = [path for path in folder.glob("step-*") if (path / STATE_FILE).is_file()]
    return sorted(found, key=lambda path: int(path.name.removeprefix("step-")))


def resolve_resume(output_dir: Path, resume: str | None) -> Path | None:
    """`latest` → the newest checkpoint of the run (None when there is none yet); else a checkpoint folder."""
    if resume is None:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise MimicBrushError(f"not a training checkpoint (no {STATE_FILE}): {path}")
    return path


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().contiguous().cpu() for key, value in state.items()}


def _trained_parameter_names(model: torch.nn.Module) -> list[str]:
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, model, optimizer, lr_scheduler,
                    ema, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint of `step` (all processes call this) and prune to the newest `keep`."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    final = folder / checkpoint_name(step)
    staging = folder / f".{final.name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()

    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, staging / f"rng-{accelerator.process_index}.safetensors")
    if accelerator.distributed_type in SHARDED_TYPES:
        accelerator.save_state(str(staging / "accelerate"))
    weights = accelerator.get_state_dict(model)  # gathers shards on the main process under FSDP/DeepSpeed
    if accelerator.is_main_process:
        save_file(_contiguous(weights), staging / "weights.safetensors")
        if accelerator.distributed_type not in SHARDED_TYPES:
            torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        full_state = {**state, "step": step, "lr_scheduler": lr_scheduler.state_dict(),
                      "world_size": accelerator.num_processes}
        if accelerator.scaler is not None:
            full_state["grad_scaler"] = accelerator.scaler.state_dict()
        if ema is not None:
            names = _trained_parameter_names(accelerator.unwrap_model(model))
            save_file(_contiguous(dict(zip(names, ema.shadow_params))), staging / "ema.safetensors")
            full_state["ema"] = {key: value for key, value in ema.state_dict().items() if key != "shadow_params"}
        (staging / STATE_FILE).write_text(json.dumps(full_state, indent=1))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        commit_folder(staging, final)
        prune_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()
    return final


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` checkpoints (0: keep all), and what a killed removal left.

    Each goes out of the `step-*` names by a rename before its files are deleted, so a process killed midway
    leaves a hidden folder (removed here next time), never a `step-*` folder with files missing."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        doomed = folder / f".{old.name}.removing"
        shutil.rmtree(doomed, ignore_errors=True)
        old.rename(doomed)
    for doomed in folder.glob(".step-*.removing"):
        shutil.rmtree(doomed, ignore_errors=True)


def load_checkpoint(accelerator: Accelerator, path: Path, model, optimizer, lr_scheduler, ema) -> dict[str, Any]:
    """Restore a checkpoint into the prepared objects; returns its state (step, data position, ...)."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise MimicBrushError(f"cannot read checkpoint {path}: {error}") from None
    if state.get("world_size", accelerator.num_processes) != accelerator.num_processes:
        raise MimicBrushError(f"checkpoint {path.name} was written by {state['world_size']} processes; resume it "
                              f"with the same number (got {accelerator.num_processes}) so the data order continues")
    if accelerator.distributed_type in SHARDED_TYPES:
        accelerator.load_state(str(path / "accelerate"))
    else:
        unwrapped = accelerator.unwrap_model(model)
        try:
            unwrapped.load_state_dict(load_file(path / "weights.safetensors"))
        except RuntimeError as error:
            raise MimicBrushError(f"checkpoint {path.name} does not match this model: "
                                  f"{first_line(error)}") from None
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    if accelerator.scaler is not None and "grad_scaler" in state:
        accelerator.scaler.load_state_dict(state["grad_scaler"])
    rng_file = path / f"rng-{accelerator.process_index}.safetensors"
    if rng_file.is_file():
        rng = load_file(rng_file)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    if ema is not None:
        ema_file = path / "ema.safetensors"
        if ema_file.is_file() and "ema" in state:
            shadows = load_file(ema_file)
            names = _trained_parameter_names(accelerator.unwrap_model(model))
            device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
            ema.load_state_dict({**state["ema"], "shadow_params": [shadows[name].to(device) for name in names]})
    return state
