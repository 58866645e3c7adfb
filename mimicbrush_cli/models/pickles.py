"""Reading `.bin` / `.pt` / `.pth` weights: tensors only, never code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import MimicBrushError, first_line

# What `torch.load` raises for a file that is not a readable checkpoint: a truncated zip archive or a
# non-zip file (RuntimeError), an empty file (EOFError), arbitrary bytes (KeyError, ValueError), an
# unreadable file (OSError), or a pickle naming something other than tensors (UnpicklingError).
_NOT_A_CHECKPOINT = (RuntimeError, EOFError, KeyError, ValueError, OSError)


def load_weights_pickle(path: Path, what: str, mmap: bool = False) -> Any:
    """`torch.load(path, weights_only=True)` with a one-line user error for a file it cannot load."""
    try:
        if mmap:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
                pass
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise MimicBrushError(f"refused to unpickle {what} {path}: it holds objects other than tensors "
                              "(loading it could run code); it is not a loadable checkpoint") from error
    except _NOT_A_CHECKPOINT as error:
        raise MimicBrushError(f"{what} {path} is not a loadable checkpoint (corrupt, truncated or another "
                              f"format): {first_line(error)}") from error
