"""LPIPS (Zhang et al., 2018), version 0.1 with the AlexNet trunk, in plain `torch.nn`.

Why not the `lpips` or torchmetrics packages: both build the trunk with torchvision, which this
project cannot depend on (it pulls a CUDA build of torch). The network here is the same one: the
AlexNet `features` stack with torchvision's layer indices and parameter names (`features.0.*`,
`features.3.*`, ...), the v0.1 input scaling, unit-normalised activations after each of the five
ReLUs, and the learned 1×1 linear heads with the `lpips` package's names (`lin0.model.1.weight`...).
So the published files load unchanged:

- trunk: torchvision's ImageNet AlexNet, `alexnet-owt-7be5be79.pth` (download.pytorch.org);
- heads: `alex.pth` from the LPIPS authors' release (v0.1; 6 KB, also shipped in the `lpips` wheel).

Where they are looked for, in order: a folder given by the user (`--metrics-models DIR` → `DIR/lpips/`),
the torch hub cache (`~/.cache/torch/hub/checkpoints`, shared with torchvision and `lpips` users),
the weights inside an installed `lpips` package (found without importing it), then a download to
the torch hub cache unless offline. AlexNet is the `lpips` package's default and the trunk its
authors recommend for use as a metric.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MimicBrushError, WeightsUnavailable
from ..models.pickles import load_weights_pickle

TRUNK_FILE = "alexnet-owt-7be5be79.pth"
TRUNK_URL = f"https://download.pytorch.org/models/{TRUNK_FILE}"
HEADS_FILE = "alex.pth"
HEADS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
ORIGINS = {TRUNK_FILE: f"torchvision's ImageNet AlexNet, {TRUNK_URL}", HEADS_FILE: f"the LPIPS authors' release, {HEADS_URL}"}
CHANNELS = (64, 192, 384, 256, 256)
TAPS = (1, 4, 7, 9, 11)  # indices of the five ReLUs in AlexNet.features whose outputs are compared
MIN_SIDE = 32  # below this AlexNet's strided stem leaves no spatial extent after the second pool


class _LinearHead(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """Distance between images in [-1, 1], (B, 3, H, W) each; 0 for identical inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )
        for index, channels in enumerate(CHANNELS):
            self.add_module(f"lin{index}", _LinearHead(channels))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None], persistent=False)
        self.eval()
        self.requires_grad_(False)

    def _activations(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        hidden, taps = (pixels - self.shift) / self.scale, []
        for index, layer in enumerate(self.features):
            hidden = layer(hidden)
            if index in TAPS:
                taps.append(hidden / (hidden.norm(dim=1, keepdim=True) + 1e-10))
        return taps

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:  # (B,)
        distance = 0
        for index, (a, b) in enumerate(zip(self._activations(first), self._activations(second))):
            head = getattr(self, f"lin{index}").model
            distance = distance + head((a - b) ** 2).mean(dim=(2, 3))
        return distance[:, 0]

    @torch.no_grad()
    def distance(self, first: np.ndarray, second: np.ndarray) -> float:
        """LPIPS between two uint8 (H, W, 3) images of the same size."""
        if first.shape != second.shape:
            raise ValueError(f"images differ in shape: {first.shape} vs {second.shape}")
        parameter = next(self.parameters())
        pixels = torch.from_numpy(np.stack([first, second])).permute(0, 3, 1, 2)
        pixels = pixels.to(parameter.device, torch.float32) / 127.5 - 1.0  # (2, 3, H, W)
        if min(pixels.shape[-2:]) < MIN_SIDE:
            factor = MIN_SIDE / min(pixels.shape[-2:])
            size = [max(MIN_SIDE, round(side * factor)) for side in pixels.shape[-2:]]
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
        return float(self(pixels[:1].to(parameter.dtype), pixels[1:].to(parameter.dtype))[0])


def _installed_lpips_heads() -> Path | None:
    # The lpips package imports torchvision at import time, so find its files without importing it.
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / HEADS_FILE
    return candidate if candidate.is_file() else None


def _weights_file(folder: Path | None, name: str, url: str, offline: bool, installed: Path | None = None) -> Path:
    if folder is not None:
        path = Path(folder) / name
        if not path.is_file():
            raise WeightsUnavailable(f"LPIPS weights {path} not found (the folder needs {TRUNK_FILE} and {HEADS_FILE})")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    if cached.is_file():
        return cached
    if installed is not None:
        return installed
    if offline:
        raise WeightsUnavailable(f"LPIPS weights {name} ({ORIGINS[name]}) are not in {cached.parent} and "
                                 "downloads are off (HF_HUB_OFFLINE); put the file there or pass --metrics-models "
                                 f"DIR (with lpips/{TRUNK_FILE} and lpips/{HEADS_FILE})")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, os.fspath(cached), progress=False)
    except OSError as error:  # URLError and socket errors are OSErrors
        raise WeightsUnavailable(f"cannot download LPIPS weights {name} ({ORIGINS[name]}): {type(error).__name__}; "
                                 "pass --metrics-models DIR with the files in lpips/") from error
    return cached


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    return load_weights_pickle(path, "LPIPS weights")


def load_lpips(folder: str | Path | None = None, offline: bool = False) -> LPIPS:
    """LPIPS-Alex v0.1 with published weights (see the module docstring for where they come from)."""
    folder = Path(folder) if folder is not None else None
    trunk = _load_state(_weights_file(folder, TRUNK_FILE, TRUNK_URL, offline))
    heads = _load_state(_weights_file(folder, HEADS_FILE, HEADS_URL, offline, installed=_installed_lpips_heads()))
    model = LPIPS()
    state = {key: value for key, value in trunk.items() if key.startswith("features.")}
    state.update(heads)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MimicBrushError(f"LPIPS weights do not match AlexNet/LPIPS v0.1 (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")
    return model


def save_lpips(model: LPIPS, folder: str | Path) -> Path:
    """Write `model` in the layout `load_lpips(folder)` reads (the published file names)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, folder / TRUNK_FILE)
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, folder / HEADS_FILE)
    return folder
