"""`mimicbrush train`: the self-supervised training loop (one CPU process, or `accelerate launch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..config import parse_overrides, read_yaml
from .app import app, quiet_libraries

console = Console(stderr=True)


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config (YAML); see configs/train_*.yaml.")],
    set_: Annotated[list[str], typer.Option("--set", help="Override a config key: --set optimizer.lr=1e-4 "
                                            "(repeatable; values are YAML).")] = [],  # noqa: B006
    steps: Annotated[int | None, typer.Option(min=1, help="Override `steps`.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Override `output_dir`.")] = None,
    resume: Annotated[str | None, typer.Option(help="`latest` or a checkpoint folder.")] = None,
    export: Annotated[Path | None, typer.Option(help="At the end, write a model folder that `edit --weights` "
                                                "loads.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train MimicBrush: noise prediction with reference attention, CFG and depth dropping.

    Multi-GPU / multi-node: `accelerate launch --config_file configs/accelerate/ddp.yaml "$(which mimicbrush)"
    train --config CFG`.
    """
    # A missing or unreadable config and a malformed --set are reported before torch is imported.
    data = read_yaml(config)
    overrides = parse_overrides(set_)
    quiet_libraries()
    from ..outputs import check_folder_output_path, check_model_output_folder, check_outputs_spare_inputs
    from ..training import load_train_config, train

    # Non-string values are taken as they are (strings would be read as YAML).
    for key, value in (("steps", steps), ("output_dir", output_dir), ("resume", resume), ("export", export)):
        if value is not None:
            overrides[key] = value
    train_config = load_train_config(data, overrides)
    # Every output is checked before the model is built: a run must not train for hours and then fail to write.
    check_folder_output_path(train_config.output_dir)
    if train_config.export is not None:
        check_folder_output_path(train_config.export, renamed_into_place=True)
        check_model_output_folder(train_config.export, replace_model=True)
        model = train_config.model
        check_outputs_spare_inputs([train_config.export], [
            ("training run folder (output_dir)", train_config.output_dir),
            ("starting model (model.path)", model.path if model.init == "folder" else None),
            ("resumed checkpoint", train_config.resume if train_config.resume not in (None, "latest") else None),
            *(("training data", folder) for folder in train_config.data.shard_dirs)])
    result = train(train_config, show_progress=progress)
    console.print(f"[green]trained[/] to step {result.step} ({result.steps_per_second:.2f} steps/s) "
                  f"in {result.output_dir}")
    if result.last_checkpoint is not None:
        console.print(f"checkpoint {result.last_checkpoint}")
    if result.exported is not None:
        console.print(f"[green]exported[/] {result.exported}")
