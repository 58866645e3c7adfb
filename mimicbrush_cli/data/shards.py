"""The prepared training set on disk: WebDataset tar shards, each committed by a JSON sidecar.

Layout of an output folder:

    shards/video-<id>.tar   <key>.source.jpg, <key>.reference.jpg, <key>.json   (a video pair)
    shards/sam-<id>.tar     <key>.image.jpg, <key>.json (object masks as COCO RLE) (a SAM image)
    shards/<name>.json      the sidecar: inputs the shard covers (done or skipped, with reason, and
                            the size and mtime each had), its samples with byte offsets of their
                            members, rejects, SSIM histogram, and the shards it replaces
    manifest.jsonl          every sample, sorted by key (rebuilt from the sidecars after each run)
    summary.json, ssim_histogram.png

Why tar shards: they are the WebDataset format every streaming loader reads, they stream at disk
speed, and a few large files suit cluster filesystems far better than millions of JPEGs. Random
access for the map-style Dataset comes from the member offsets written in each sidecar.

Why sidecars: a shard's tar and then its sidecar are each written to a temporary file and renamed,
and only a sidecar marks its inputs done. A run killed midway leaves at most a tar without a
sidecar, which the next run rewrites (shard names derive from the inputs they cover, so the rewrite
is the same file): nothing is lost, nothing is duplicated, and existing shards are never modified.
A temporary file is named after the host and the process writing it; one whose process is gone
(killed with kill -9, say) is deleted by the next run on that host.

An input that changed after its shard was written (a truncated download completed) makes the shard
stale: its inputs are processed again into a new shard whose sidecar names the stale one under
`replaces`. From the moment that sidecar is committed the stale shard is ignored, so each input is
covered by exactly one shard at every moment; its files are deleted afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..outputs import commit_file, write_text_atomically

TEMPORARY_MARK = ".tmp-"  # .<file name>.tmp-<host>-<pid>

SHARDS_FOLDER = "shards"
MANIFEST_NAME = "manifest.jsonl"


def stable_id(text: str, length: int = 16) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def shard_name(kind: str, input_ids: list[str], replaces: Sequence[str] = ()) -> str:
    """The shard's name derives from the inputs it covers, so a rerun of the same chunk rewrites the same file,
    and from the shards it replaces, so that it never takes the name of one of them."""
    return f"{kind}-{stable_id(chr(10).join([*input_ids, *(f'replaces {name}' for name in replaces)]))}"


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class ShardWriter:
    """Collects samples of one shard in memory-light tar form and commits tar + sidecar atomically."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.temporary = temporary_path(folder / f"{name}.tar")
        self._tar: tarfile.TarFile | None = None
        self.samples: list[dict[str, Any]] = []

    def add(self, key: str, members: dict[str, bytes], record: dict[str, Any]) -> None:
        """Add one sample: `members` maps extensions ("source.jpg") to bytes; `record` goes to the sidecar."""
        if self._tar is None:
            self._tar = tarfile.open(self.temporary, "w", format=tarfile.USTAR_FORMAT)
        offsets = {}
        for extension, data in members.items():
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size = len(data)
            info.mode = 0o644
            header = len(info.tobuf(self._tar.format, self._tar.encoding, self._tar.errors))
            offsets[extension] = [self._tar.offset + header, len(data)]
            self._tar.addfile(info, io.BytesIO(data))
        self.samples.append({"key": key, **record, "members": offsets})

    def commit(self, sidecar: dict[str, Any]) -> Path:
        """Rename the tar into place, then write the sidecar that marks the shard's inputs done."""
        tar_name = None
        if self._tar is not None:
            self._tar.close()
            tar_name = f"{self.name}.tar"
            commit_file(self.temporary, self.folder / tar_name)
        sidecar = {**sidecar, "tar": tar_name, "samples": self.samples}
        path = self.folder / f"{self.name}.json"
        temporary = temporary_path(path)
        try:
            temporary.write_text(json.dumps(sidecar, indent=1, sort_keys=True), encoding="utf-8")
            commit_file(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return path

    def discard(self) -> None:
        """Drop an uncommitted shard: close and delete its temporary tar."""
        if self._tar is not None:
            self._tar.close()
        self.temporary.unlink(missing_ok=True)


def temporary_path(path: Path) -> Path:
    """Where this process writes `path` before renaming it into place."""
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{socket.gethostname()}-{os.getpid()}")


def remove_stale_temporaries(output: Path) -> None:
    """Delete the temporary shard files of processes of this host that are gone; called before this process writes
    any. Those of live processes, and of other hosts (array jobs on a cluster share the output folder), are kept."""
    if os.name != "posix":  # os.kill(pid, 0) is a liveness test on POSIX only
        return
    host = socket.gethostname()
    for path in (output / SHARDS_FOLDER).glob(f".*{TEMPORARY_MARK}*"):
        writer_host, _, pid = path.name.rpartition(TEMPORARY_MARK)[2].rpartition("-")
        # This process has written nothing yet: a file with its pid is from an earlier one (a container's pids repeat).
        if writer_host == host and pid.isdigit() and (int(pid) == os.getpid() or not _is_alive(int(pid))):
            path.unlink(missing_ok=True)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_sidecars(output: Path, replaced: bool = False) -> list[dict[str, Any]]:
    """Every committed shard sidecar under `output` that no other replaces (only those, with `replaced`),
    sorted by shard name."""
    folder = output / SHARDS_FOLDER
    sidecars = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
        sidecar["path"] = str(path)
        sidecars.append(sidecar)
    names = {name for sidecar in sidecars for name in sidecar.get("replaces", [])}
    return [sidecar for sidecar in sidecars if (Path(sidecar["path"]).stem in names) == replaced]


def remove_replaced_shards(output: Path) -> None:
    for sidecar in read_sidecars(output, replaced=True):
        Path(sidecar["path"]).unlink(missing_ok=True)
        if sidecar["tar"]:
            (output / SHARDS_FOLDER / sidecar["tar"]).unlink(missing_ok=True)


def manifest_records(sidecars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per sample, sorted by key. Where a sample lives (shard, offsets) stays in the sidecars,
    so the manifest does not depend on how the work was split into jobs, workers or resumed runs."""
    records = [{name: value for name, value in sample.items() if name != "members"}
               for sidecar in sidecars for sample in sidecar["samples"]]
    return sorted(records, key=lambda record: record["key"])


def write_manifest(output: Path, sidecars: list[dict[str, Any]]) -> Path:
    path = output / MANIFEST_NAME
    write_text_atomically(path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in manifest_records(sidecars)))
    return path


def read_member(shard: Path, offset_size: list[int]) -> bytes:
    offset, size = offset_size
    with open(shard, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def iter_samples(output: Path, kind: str | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(tar path, sample record with member offsets) for every committed sample, in key order."""
    entries = []
    for sidecar in read_sidecars(output):
        for sample in sidecar["samples"]:
            if kind is None or sample["kind"] == kind:
                entries.append((output / SHARDS_FOLDER / sidecar["tar"], sample))
    yield from sorted(entries, key=lambda entry: entry[1]["key"])
