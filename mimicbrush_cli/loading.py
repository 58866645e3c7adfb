"""Where a pipeline comes from (`--weights`, `--model`), and which device and dtype it runs on.

The one place that assembles a `MimicBrushPipeline` from the components `models/` builds or loads.

- `--weights DIR`: a local folder, either in our own format (`model_index.json` + safetensors, as
  written by `mimicbrush convert` or `mimicbrush train --export`) or in the released layout
  (`cleansd/` + `MimicBrush/`). The format is detected.
- `--model NAME`: `released` downloads the released weights from the Hugging Face Hub (cached by
  huggingface_hub); `demo` (the default) is the small model bundled with the package, trained by
  `scripts/train_demo_model.sh`; `random-tiny`, `random-demo` and `random-released` build random
  weights of a named size (their output is noise: for tests and speed checks).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from .errors import MimicBrushError, first_line
from .model_names import BUNDLED_MODEL_DIR, MODEL_NAMES, check_model_name, edit_defaults  # noqa: F401 (re-exported)
from .speedups import SpeedOptions, configure_pipeline_speed

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MimicBrushError("--device cuda requested but no CUDA device is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise MimicBrushError("--device mps requested but MPS is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise MimicBrushError(f"unknown device {name!r} (use auto, cpu, cuda or mps)")
    return torch.device(name)


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """fp16 on accelerators and fp32 on CPU unless asked otherwise."""
    if name is None or name == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    try:
        return DTYPES[name]
    except KeyError:
        raise MimicBrushError(f"unknown dtype {name!r} (use fp32, fp16 or bf16)") from None


@contextmanager
def _without_transformers_progress_bars():
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _components(folder: Path) -> dict[str, tuple[str, str]]:
    """The components `model_index.json` names, as name → (library, class); [null, null] is no component."""
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MimicBrushError(f"cannot read {folder / 'model_index.json'}: {first_line(error)}") from error
    return {name: tuple(entry) for name, entry in index.items() if not name.startswith("_") and isinstance(entry, list)
            and len(entry) == 2 and entry[1] is not None}


def _key_problems(missing, unexpected) -> list[str]:
    return [f"{word} {min(keys)}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")
            for word, keys in (("missing", set(missing)), ("unexpected", set(unexpected))) if keys]


def _load_transformers_models(folder: Path, components: dict[str, tuple[str, str]]) -> dict:
    """The transformers models of a folder, loaded with their loading report: a file that does not hold a
    model's weights would otherwise load as random weights with a warning. transformers maps the keys it
    renames on load, so its report (not the file's keys) is the test."""
    import transformers
    from safetensors import SafetensorError

    loaded = {}
    for name, (library, class_name) in components.items():
        model_class = getattr(transformers, class_name, None) if library == "transformers" else None
        if model_class is None or not issubclass(model_class, transformers.PreTrainedModel):
            continue
        try:
            model, info = model_class.from_pretrained(folder / name, local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, KeyError, SafetensorError) as error:  # SafetensorError: a truncated file
            raise MimicBrushError(f"cannot load model folder {folder}: {folder / name}: {first_line(error)}") from error
        mismatched = [key for key, *_ in info.get("mismatched_keys", [])]
        problems = _key_problems(info.get("missing_keys", []), info.get("unexpected_keys", []))
        problems += [f"wrong shape {min(mismatched)}"] if mismatched else []
        if problems:
            raise MimicBrushError(f"cannot load model folder {folder}: {folder / name} does not hold the {name} weights "
                                  f"({'; '.join(problems)})")
        loaded[name] = model
    return loaded


def _check_weights_files(pipeline, folder: Path) -> None:
    """Each diffusers model's safetensors must hold exactly its weights: diffusers leaves a weight missing from the
    file on the meta device, and moving the model then fails far from the cause. (transformers models are checked
    as they load, by `_load_transformers_models`.)"""
    from diffusers import ModelMixin
    from safetensors import safe_open

    for name, component in pipeline.components.items():
        files = sorted((folder / name).glob("*.safetensors"))
        if not isinstance(component, ModelMixin) or not files:
            continue
        stored: set[str] = set()
        for path in files:
            with safe_open(path, "pt") as weights:
                stored.update(weights.keys())
        expected = set(component.state_dict())
        problems = _key_problems(expected - stored, stored - expected)
        if problems:
            where = files[0] if len(files) == 1 else folder / name
            raise MimicBrushError(f"cannot load model folder {folder}: {where} does not hold the {name} weights "
                                  f"({'; '.join(problems)})")


def build_random_pipeline(size_name: str = "tiny", seed: int = 0, resolution: int | None = None):
    """A `MimicBrushPipeline` of a named size with random weights (no download), optionally at another
    working resolution."""
    from .models.build import build_random_components
    from .pipeline import MimicBrushPipeline

    return MimicBrushPipeline(**build_random_components(size_name, seed=seed, resolution=resolution))


def load_released_pipeline(layout):
    """A `MimicBrushPipeline` from the released layout (`models.checkpoints.ReleasedLayout`)."""
    from .models.checkpoints import load_released_components
    from .pipeline import MimicBrushPipeline

    return MimicBrushPipeline(**load_released_components(layout))


def convert_released_weights(source: Path, destination: Path) -> None:
    """`mimicbrush convert`: the released layout → our safetensors model folder."""
    from .models.checkpoints import released_layout, save_pipeline_atomically

    pipeline = load_released_pipeline(released_layout(Path(source)))
    save_pipeline_atomically(pipeline, Path(destination))


def load_pipeline_folder(folder: Path):
    """A pipeline from a folder in our format or in the released layout."""
    from .models.checkpoints import is_released_layout, released_layout
    from .pipeline import MimicBrushPipeline

    folder = Path(folder)
    if folder.is_file():
        raise MimicBrushError(f"--weights takes a folder, and {folder} is a file (pass the folder that holds "
                              "model_index.json, or the released layout's folder)")
    if not folder.is_dir():
        raise MimicBrushError(f"weights folder not found: {folder}")
    if (folder / "model_index.json").is_file():
        components = _components(folder)
        for name in components:
            if not (folder / name).is_dir():  # diffusers would name the root's config.json
                raise MimicBrushError(f"cannot load model folder {folder}: it has no {name}/ folder "
                                      f"(model_index.json lists a {name} component)")
        try:
            with _without_transformers_progress_bars():  # a local load takes a second: no bar on the terminal
                checked = _load_transformers_models(folder, components)
                pipeline = MimicBrushPipeline.from_pretrained(folder, local_files_only=True, **checked)
        except (OSError, ValueError, KeyError) as error:
            raise MimicBrushError(f"cannot load model folder {folder}: {first_line(error)}") from error
        _check_weights_files(pipeline, folder)
        return pipeline
    if is_released_layout(folder):
        return load_released_pipeline(released_layout(folder))
    raise MimicBrushError(f"{folder} is neither a model folder (model_index.json) nor the released layout "
                          "(cleansd/ + MimicBrush/)")


def load_pipeline(weights: Path | None = None, model: str | None = None, device: str = "auto",
                  dtype: str | None = None, speed: SpeedOptions = SpeedOptions()):
    """The pipeline named by `--weights` or `--model`, on its device and dtype, with the chosen speed options."""
    from .models.checkpoints import download_released_layout

    if weights is not None and model is not None:
        raise MimicBrushError("pass either --weights or --model, not both")
    if weights is not None:
        pipeline = load_pipeline_folder(weights)
    else:
        model = model or "demo"
        if model == "demo":
            if not (BUNDLED_MODEL_DIR / "model_index.json").is_file():
                raise MimicBrushError("no demo model is bundled with this installation; pass --weights DIR or "
                                      "--model released|random-tiny")
            pipeline = load_pipeline_folder(BUNDLED_MODEL_DIR)
        elif model == "released":
            pipeline = load_released_pipeline(download_released_layout())
        elif model.startswith("random-"):
            pipeline = build_random_pipeline(model.removeprefix("random-"))
        else:
            check_model_name(model)
    pipeline.edit_defaults = edit_defaults(weights, model)
    return place_pipeline(pipeline, device, dtype, speed)


def place_pipeline(pipeline, device: str = "auto", dtype: str | None = None, speed: SpeedOptions = SpeedOptions()):
    """`pipeline` moved to its device and dtype, progress bars off, with the chosen speed options: how
    every pipeline that runs edits is made ready."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    pipeline.to(torch_device) if torch_dtype == torch.float32 else pipeline.to(torch_device, torch_dtype)
    pipeline.set_progress_bar_config(disable=True)
    return configure_pipeline_speed(pipeline, **asdict(speed))
