"""The models `--model NAME` names, and each one's default edit settings, without torch (for `--help`).

`loading.py` builds or loads each of them; `models/build.py` holds the random sizes' configs.
"""

from __future__ import annotations

from pathlib import Path

from .errors import MimicBrushError
from .settings import EditSettings

BUNDLED_MODEL_DIR = Path(__file__).parent / "assets" / "demo_model"
RANDOM_SIZES = ("tiny", "demo", "demo-f4", "released")  # the keys of models/build.py's MODEL_SIZES
MODELS = {
    "demo": "the small model bundled with the package, the default",
    "released": "the released weights from the Hugging Face Hub, ~10 GB",
    **{f"random-{size}": "" for size in RANDOM_SIZES},
}
MODEL_NAMES = tuple(MODELS)
MODEL_HELP = (", ".join(f"{name} ({text})" if text else name for name, text in MODELS.items())
              + " (random weights of that size: noise, for tests and speed checks).")


def check_model_name(model: str) -> None:
    if model not in MODELS:
        raise MimicBrushError(f"unknown model {model!r} (use {', '.join(MODEL_NAMES)} or --weights DIR)")


def edit_defaults(weights: Path | None = None, model: str | None = None) -> EditSettings:
    """The default edit settings of the model that `--weights` or `--model` names: a model folder's
    `edit_settings.json` (the bundled model's chosen settings), else the released defaults. Read before any model
    loads."""
    if weights is not None and model is not None:
        raise MimicBrushError("pass either --weights or --model, not both")
    if weights is not None:
        return EditSettings.from_model_folder(weights) if Path(weights).is_dir() else EditSettings()
    model = model or "demo"
    check_model_name(model)
    return EditSettings.from_model_folder(BUNDLED_MODEL_DIR) if model == "demo" else EditSettings()
