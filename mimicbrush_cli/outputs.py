"""Atomic output files: a result is written to a temporary sibling and renamed into place, so an
interrupted or failed run never leaves a half-written image behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import MimicBrushError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def check_image_output_path(path: Path) -> None:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise MimicBrushError(f"output {path} must end in one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    if path.exists() and path.is_dir():
        raise MimicBrushError(f"output {path} is a directory")
    _check_writable_from(path.parent, path)


def check_folder_output_path(path: Path) -> None:
    """Before any work: `path` can be created as a folder (or is one) and written in."""
    if path.exists() and not path.is_dir():
        raise MimicBrushError(f"output {path} is a file, not a folder")
    _check_writable_from(path, path)


def _check_writable_from(folder: Path, path: Path) -> None:
    # The nearest existing folder on the way to `path` must be a folder, and writable.
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MimicBrushError(f"cannot write {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise MimicBrushError(f"cannot write {path}: {ancestor} is not writable")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        # mkstemp creates the file private (0600); the result gets the permissions a plain open() would give.
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_image_atomically(image: np.ndarray, path: Path) -> None:
    """Encode `image` (uint8 HxWx3, or HxW grey) in the format of `path`'s suffix and rename it into place."""
    import io

    check_image_output_path(path)
    buffer = io.BytesIO()
    format_name = Image.registered_extensions()[path.suffix.lower()]
    Image.fromarray(image).save(buffer, format=format_name)
    write_bytes_atomically(path, buffer.getvalue())
