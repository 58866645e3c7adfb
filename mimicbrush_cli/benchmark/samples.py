"""A benchmark folder in the authors' naming, read one sample at a time.

Files per sample `<id>` (PNG, JPEG or WebP):
- `<id>_source`, `<id>_source_mask`, `<id>_reference`: always required;
- `<id>_reference_mask`: required on the inter-ID split (its crop is what DINO-I/CLIP-I compare);
- `<id>_gt` or `<id>_target`: the ground truth of the inner-ID split. Without one, the ground truth
  is the source itself: inner-ID pairs show the same instance, the source region is masked and
  the original source is what a perfect edit reproduces;
- `<id>_prompt.txt`: the text for CLIP-T (inter-ID; CLIP-T is left out without it).

Like the released benchmark runner, every image is resized so its long side is `long_side` pixels
(Lanczos; masks binarised after resizing) before editing and scoring; 0 keeps the original size.
Anything that makes a sample unusable raises `BrokenSample` with a short reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MimicBrushError
from ..imaging import load_image, load_mask, resize_image, resize_mask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
ROLES = ("source_mask", "reference_mask", "source", "reference", "gt", "target", "prompt")
GROUND_TRUTH_ROLES = ("gt", "target")
_FILE_PATTERN = re.compile(rf"^(?P<id>.+?)_(?P<role>{'|'.join(ROLES)})(?P<suffix>\.[A-Za-z]+)$")


class BrokenSample(MimicBrushError):
    """A sample that cannot be edited or scored (missing file, unreadable image, size mismatch)."""


@dataclass(frozen=True)
class BenchmarkSample:
    sample_id: str
    source: np.ndarray                   # (H, W, 3) uint8
    source_mask: np.ndarray              # (H, W) bool
    reference: np.ndarray                # (h, w, 3) uint8
    reference_mask: np.ndarray | None    # (h, w) bool
    ground_truth: np.ndarray | None      # (H, W, 3) uint8
    ground_truth_file: str | None        # the file it came from, or "source"
    prompt: str | None


def sample_files(data_dir: Path) -> dict[str, dict[str, Path]]:
    """{sample id: {role: path}} for every file that follows the naming (a folder so named too, where there is no
    file for its role: reading it makes the sample broken, with the reason)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MimicBrushError(f"benchmark folder not found: {data_dir}")
    files: dict[str, dict[str, Path]] = {}
    for path in sorted(data_dir.iterdir()):
        match = _FILE_PATTERN.match(path.name)
        if not match:
            continue
        role, suffix = match["role"], match["suffix"].lower()
        if (role == "prompt") != (suffix == ".txt") or (role != "prompt" and suffix not in IMAGE_SUFFIXES):
            continue
        roles = files.setdefault(match["id"], {})
        if role not in roles or (path.is_file() and not roles[role].is_file()):  # a file before a folder
            roles[role] = path
    if not files:
        raise MimicBrushError(f"no benchmark samples in {data_dir} (expected <id>_source.png, <id>_source_mask.png, "
                              "<id>_reference.png, ...)")
    return files


def fit_long_side(image: np.ndarray, long_side: int, is_mask: bool) -> np.ndarray:
    height, width = image.shape[:2]
    if not long_side or max(height, width) == long_side:
        return image
    scale = long_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return resize_mask(image, size) if is_mask else resize_image(image, size)


def read_sample(sample_id: str, files: dict[str, Path], split: str, long_side: int = 512) -> BenchmarkSample:
    """Read, check and resize one sample; raises `BrokenSample` with the reason it is unusable."""
    required = ["source", "source_mask", "reference"] + (["reference_mask"] if split == "inter" else [])
    missing = [role for role in required if role not in files]
    if missing:
        raise BrokenSample(f"missing {', '.join(f'{sample_id}_{role}' for role in missing)}")
    try:
        source = load_image(files["source"], "source image")
        source_mask = load_mask(files["source_mask"], what="source mask")
        reference = load_image(files["reference"], "reference image")
        reference_mask = (load_mask(files["reference_mask"], what="reference mask") if "reference_mask" in files
                          else None)
        truth_role = next((role for role in GROUND_TRUTH_ROLES if role in files), None)
        ground_truth = load_image(files[truth_role], "ground truth") if truth_role else None
        prompt = files["prompt"].read_text(encoding="utf-8").strip() if "prompt" in files else None
    except (MimicBrushError, OSError, UnicodeDecodeError) as error:
        raise BrokenSample(str(error)) from error
    if source_mask.shape != source.shape[:2]:
        raise BrokenSample(f"source mask is {source_mask.shape[1]}x{source_mask.shape[0]}, "
                           f"source is {source.shape[1]}x{source.shape[0]}")
    if reference_mask is not None and reference_mask.shape != reference.shape[:2]:
        raise BrokenSample(f"reference mask is {reference_mask.shape[1]}x{reference_mask.shape[0]}, "
                           f"reference is {reference.shape[1]}x{reference.shape[0]}")
    if ground_truth is not None and ground_truth.shape != source.shape:
        raise BrokenSample(f"ground truth is {ground_truth.shape[1]}x{ground_truth.shape[0]}, "
                           f"source is {source.shape[1]}x{source.shape[0]}")
    truth_file = files[truth_role].name if truth_role else None
    if ground_truth is None and split == "inner":
        ground_truth, truth_file = source, "source"
    sample = BenchmarkSample(
        sample_id=sample_id,
        source=fit_long_side(source, long_side, False),
        source_mask=fit_long_side(source_mask, long_side, True),
        reference=fit_long_side(reference, long_side, False),
        reference_mask=None if reference_mask is None else fit_long_side(reference_mask, long_side, True),
        ground_truth=None if ground_truth is None else fit_long_side(ground_truth, long_side, False),
        ground_truth_file=truth_file, prompt=prompt or None)
    if not sample.source_mask.any():
        raise BrokenSample("source mask is empty")
    if sample.reference_mask is not None and not sample.reference_mask.any() and split == "inter":
        raise BrokenSample("reference mask is empty")
    return sample
