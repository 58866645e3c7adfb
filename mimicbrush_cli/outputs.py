"""Atomic outputs: the one way this package writes a file or commits a folder.

A file is written to a temporary sibling, flushed to disk and renamed over its destination, and
the folder's entry is flushed too; a folder is assembled under a hidden name and renamed into
place, the folder it replaces renamed aside first and removed only after. An interrupted run, or
a power cut, leaves the old complete result or the new one, never a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import MimicBrushError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def check_image_output_path(path: Path) -> None:
    """Before any work: `path` is an image name, and a file can be written in its folder (created if missing)."""
    path = Path(path)
    _check_image_suffix(path)
    if path.exists() and path.is_dir():
        raise MimicBrushError(f"output {path} is a directory")
    _check_can_write_in(path.parent, path)


def _check_image_suffix(path: Path) -> None:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise MimicBrushError(f"output {path} must end in one of {', '.join(sorted(IMAGE_SUFFIXES))}")


def check_folder_output_path(path: Path, renamed_into_place: bool = False) -> None:
    """Before any work: `path` is a folder, or can be created as one, and files can be written in it.

    `renamed_into_place`: the folder is assembled beside `path` and renamed over it (a model folder), so it is
    its parent that must take new entries."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MimicBrushError(f"output {path} is a file, not a folder")
    _check_can_write_in(path.parent if renamed_into_place else path, path)


def check_model_output_folder(destination: Path, replace_model: bool = False) -> None:
    """Refuse a non-empty `destination`, unless `replace_model` and it is a model folder."""
    destination = Path(destination)
    if destination.is_dir() and any(destination.iterdir()):
        if not (replace_model and (destination / "model_index.json").is_file()):
            raise MimicBrushError(f"output folder {destination} exists and is not empty"
                                  + ("" if not replace_model else " (and is not a model folder to replace)"))


def check_outputs_spare_inputs(outputs: Iterable[Path], inputs: Iterable[tuple[str, object]]) -> None:
    """Refuse an output whose writing would replace an input: the input itself (by any path, or a symbolic link
    either way), or, for a folder, the folder that holds it. `inputs` are (what, path) pairs; entries that are not
    paths (a mask box) are skipped. Another hard link to an input is no input: writing renames a new file over
    that name, and the input keeps its content."""
    named = [(what, Path(path)) for what, path in inputs if isinstance(path, (str, os.PathLike))]
    for output in map(Path, outputs):
        for replaced in {_entry(output), Path(os.path.realpath(output))}:
            for what, path in named:
                for location in {_entry(path), Path(os.path.realpath(path))}:
                    if location == replaced:
                        raise MimicBrushError(f"output {output} would overwrite the {what} {path}: "
                                              "choose another output")
                    if replaced in location.parents:
                        raise MimicBrushError(f"output {output} would replace the folder that holds the {what} "
                                              f"{path}: choose another output")


def _entry(path: Path) -> Path:
    """The folder entry that writing `path` replaces: its folder resolved, its own name kept (a link there is
    replaced by the new file, not followed)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name if path.name else path


def _check_can_write_in(folder: Path, path: Path) -> None:
    """Create `folder`'s missing folders and a file in it, then remove what was created: only doing it tells.
    (os.access answers for the real user id, and says yes to root for folders nothing can be created in, such
    as /proc or a read-only mount.) `path` is the output, for the message."""
    folder = Path(folder)
    missing = []
    ancestor = folder
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        missing.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MimicBrushError(f"cannot write {path}: {ancestor} is a file, not a folder")
    created = []
    try:
        for each in reversed(missing):
            try:
                each.mkdir()
            except OSError as error:
                raise MimicBrushError(f"cannot write {path}: cannot create folder {each} "
                                      f"({error.strerror or type(error).__name__})") from error
            created.append(each)
        try:
            # The temporary name the atomic writer would use: a name too long for the file system fails here too.
            descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        except OSError as error:
            raise MimicBrushError(f"cannot write {path}: {folder} is not writable "
                                  f"({error.strerror or type(error).__name__})") from error
        os.close(descriptor)
        os.unlink(probe)
    finally:
        for each in reversed(created):
            try:
                each.rmdir()
            except OSError:
                pass  # something else has put a file there meanwhile: it is no longer ours to remove


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries, so a rename inside it survives a power cut (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def commit_file(temporary: Path, path: Path) -> None:
    """Flush the fully written `temporary` to disk and rename it over `path` (same folder)."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_folder(Path(path).parent)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        # mkstemp creates the file private (0600); the result gets the permissions a plain open() would give.
        os.chmod(temporary, 0o666 & ~current_umask())
        commit_file(Path(temporary), path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    write_bytes_atomically(path, text.encode("utf-8"))


def commit_folder(staging: Path, destination: Path) -> None:
    """Rename the complete folder `staging` to `destination` (same parent), replacing any folder there.

    The old folder is renamed aside before the new one is renamed in and deleted only after, so a
    complete copy exists at every moment (under the hidden aside name for the instant between the
    two renames); if the second rename fails, the old folder is put back.
    """
    staging, destination = Path(staging), Path(destination)
    for root, _, files in os.walk(staging):
        for name in files:
            with open(Path(root) / name, "rb+") as handle:
                os.fsync(handle.fileno())
        fsync_folder(Path(root))
    aside = None
    if destination.exists():
        aside = destination.with_name(f".{destination.name}.old-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(destination, aside)
    try:
        os.replace(staging, destination)
    except BaseException:
        if aside is not None:
            os.replace(aside, destination)
        raise
    fsync_folder(destination.parent)
    if aside is not None:
        shutil.rmtree(aside)


def save_image_atomically(image: np.ndarray, path: Path) -> None:
    """Encode `image` (uint8 HxWx3, or HxW grey) in the format of `path`'s suffix and rename it into place."""
    import io

    path = Path(path)
    _check_image_suffix(path)  # the output was checked before the work; here only its format matters
    buffer = io.BytesIO()
    format_name = Image.registered_extensions()[path.suffix.lower()]
    Image.fromarray(image).save(buffer, format=format_name)
    write_bytes_atomically(path, buffer.getvalue())
