"""The networks behind DINO-I, CLIP-I, CLIP-T and LPIPS, loaded from a local folder or the Hub.

Defaults (the paper names the model families, not the checkpoints):
- DINO-I: `facebook/dinov2-base` through `transformers.Dinov2Model`; the embedding is the CLS
  token of the last hidden state.
- CLIP-I and CLIP-T: `openai/clip-vit-large-patch14` through `transformers.CLIPModel`; image and
  text embeddings are the projected ones (what `CLIPVisionModelWithProjection` and the text tower
  give), so one model serves both scores.
- LPIPS: AlexNet v0.1, see `lpips.py`.

`--metrics-models DIR` points at a folder with `dinov2/`, `clip/` (transformers folders written by
`save_pretrained`, with their processor/tokenizer files) and `lpips/`. Without it, Hub ids are
resolved to a local snapshot with huggingface_hub (only config, processor, tokenizer and
safetensors files). Weights that are absent (offline, HF_HUB_OFFLINE, or unreachable without a cached
copy; a subfolder missing from DIR) leave their metrics unmeasured (`MetricBackbones.not_measured`):
the other metrics are still computed. Both paths end in the same `from_pretrained(folder)` call,
which is what the tests exercise with tiny random models.

Only the networks above are the paper's: scores from a `--metrics-models` folder are marked as
measured with other networks wherever they stand beside the paper's rows (`MetricModels.stand_ins`).

Crops are padded to a white square before the processors, whose centre crop would otherwise cut
the sides of elongated objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import MimicBrushError, WeightsUnavailable, first_line
from ..imaging import WHITE, pad_to_square
from .lpips import LPIPS, load_lpips

DINO_MODEL = "facebook/dinov2-base"
CLIP_MODEL = "openai/clip-vit-large-patch14"
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
METRICS_MODELS_HINT = "pass --metrics-models DIR (with dinov2/, clip/ and lpips/ inside)"


@dataclass(frozen=True)
class MetricModels:
    """Where each metric network comes from: a Hub id or a local folder (LPIPS: a folder or None)."""

    dino: str = DINO_MODEL
    clip: str = CLIP_MODEL
    lpips: str | None = None
    device: str = "auto"

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "auto") -> "MetricModels":
        folder = Path(folder)
        if not folder.is_dir():
            raise MimicBrushError(f"metrics models folder not found: {folder}")
        return cls(dino=str(folder / "dinov2"), clip=str(folder / "clip"), lpips=str(folder / "lpips"), device=device)

    def stand_ins(self) -> dict[str, str]:
        """{metric: where its network comes from} for the metrics not measured with the paper's networks."""
        sources = {"dino_i": None if self.dino == DINO_MODEL else self.dino,
                   "clip_i": None if self.clip == CLIP_MODEL else self.clip,
                   "clip_t": None if self.clip == CLIP_MODEL else self.clip, "lpips": self.lpips}
        return {metric: source for metric, source in sources.items() if source is not None}


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_model_folder(name: str, what: str) -> Path:
    """A local folder for `name`: itself if it is a path, else the Hub snapshot (cached or downloaded)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or name.startswith(".") or name.count("/") != 1:
        raise WeightsUnavailable(f"{what} model folder not found: {name}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    errors: tuple[type[BaseException], ...] = (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError)
    try:
        import httpx

        errors += (httpx.HTTPError,)
    except ImportError:
        pass
    try:
        return Path(snapshot_download(name, allow_patterns=SNAPSHOT_PATTERNS, local_files_only=hub_offline()))
    except errors as error:
        reason = "the Hub is offline" if hub_offline() or isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)) \
            else type(error).__name__
        raise WeightsUnavailable(f"{what} weights {name} are not available ({reason}); {METRICS_MODELS_HINT}") from error


def _device(name: str) -> torch.device:
    from ..loading import resolve_device

    return resolve_device(name)


def _white_squares(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [pad_to_square(image, WHITE)[0] for image in images]


def _pooled(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class DinoEmbedder:
    """DINOv2 CLS embeddings of images (uint8 RGB of any size)."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        from transformers import AutoImageProcessor, Dinov2Model

        try:
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            self.model = Dinov2Model.from_pretrained(folder, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as error:
            raise MimicBrushError(f"cannot load DINOv2 from {folder}: {first_line(error)}") from error
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:  # (N, D)
        pixels = self.processor(images=_white_squares(images), return_tensors="pt")["pixel_values"]
        hidden = self.model(pixel_values=pixel_values_on(pixels, self.model)).last_hidden_state  # (N, 1 + P, D)
        return hidden[:, 0].float().cpu().numpy()


class ClipEmbedder:
    """CLIP projected image and text embeddings."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        from transformers import AutoProcessor, CLIPModel

        try:
            self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as error:
            raise MimicBrushError(f"cannot load CLIP from {folder}: {first_line(error)}") from error
        self.device = device

    @torch.no_grad()
    def images(self, images: Sequence[np.ndarray]) -> np.ndarray:  # (N, D)
        pixels = self.processor(images=_white_squares(images), return_tensors="pt")["pixel_values"]
        return _pooled(self.model.get_image_features(pixel_values=pixel_values_on(pixels, self.model))).float().cpu().numpy()

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> np.ndarray:  # (N, D)
        tokens = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True,
                                max_length=self.model.config.text_config.max_position_embeddings)
        tokens = {key: value.to(self.device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}
        return _pooled(self.model.get_text_features(**tokens)).float().cpu().numpy()


def pixel_values_on(pixels: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    parameter = next(model.parameters())
    return pixels.to(parameter.device, parameter.dtype)


@dataclass
class MetricBackbones:
    """The loaded networks a split needs; the others are None. `not_measured`: {metric: why} for the metrics
    whose network's weights are absent."""

    dino: DinoEmbedder | None = None
    clip: ClipEmbedder | None = None
    lpips: LPIPS | None = None
    not_measured: dict[str, str] = field(default_factory=dict)


def load_backbones(models: MetricModels, need_identity: bool, need_perceptual: bool) -> MetricBackbones:
    """Load DINOv2 + CLIP (`need_identity`, inter-ID) and/or LPIPS (`need_perceptual`, inner-ID); a network
    whose weights are absent is left None and its metrics are listed in `not_measured`."""
    device = _device(models.device)
    backbones = MetricBackbones()
    loaders = {"dino": (("dino_i",), lambda: DinoEmbedder(resolve_model_folder(models.dino, "DINO-I (DINOv2)"), device)),
               "clip": (("clip_i", "clip_t"),
                        lambda: ClipEmbedder(resolve_model_folder(models.clip, "CLIP-I/CLIP-T (CLIP)"), device)),
               "lpips": (("lpips",), lambda: load_lpips(models.lpips, offline=hub_offline()).to(device))}
    needed = (["dino", "clip"] if need_identity else []) + (["lpips"] if need_perceptual else [])
    for name in needed:
        metrics, load = loaders[name]
        try:
            setattr(backbones, name, load())
        except WeightsUnavailable as error:
            backbones.not_measured.update(dict.fromkeys(metrics, str(error)))
    return backbones
