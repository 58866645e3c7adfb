"""What the browser page does, without the page: turn what the browser sent into checked arrays, run
one edit at a time on the server's one model, write the result and the mask as PNGs, and name the
`mimicbrush edit` command that repeats the edit.

Nothing here imports gradio: the page (`page.py`) passes it plain values (PIL images, strings,
numbers), so this logic is tested without a browser. Files are only ever written to a folder the
server created; no path that the browser sends is opened here except through `check_upload`, which
gradio has already confined to its own upload folder.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .. import imaging
from ..edit import EditJob, edit_command_line, edit_images, plan_output_paths, read_reference_region
from ..errors import MimicBrushError
from ..outputs import save_image_atomically
from ..reference_region import check_reference_region
from ..settings import EditSettings, StepCallback

# The repository's examples/ folder, next to the package (a source checkout or an editable install).
# They are not package data: a wheel install has no examples and the page then offers none.
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = {  # name -> (source, reference, mask), as the README's edit commands use them
    "motorcycle": ("motorcycle_left.png", "motorcycle_right.png", "motorcycle_mask.png"),
    "cat": ("cat.png", "coffee.png", "cat_head_mask.png"),
}

# The colour of the mask's paint and of a clicked box.
BOX_COLOUR = (255, 64, 160)


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 20.0        # per uploaded file, enforced by gradio before our code runs
    max_pixels: int = 16_000_000       # per decoded image (source and reference)
    model_options: tuple[str, ...] = ()  # the model flags of `serve`, repeated in the equivalent edit command


@dataclass
class BrowserEdit:
    """One finished edit: arrays for the page, PNG files for download, and the CLI command."""

    source: np.ndarray             # (H, W, 3) uint8
    mask: np.ndarray               # (H, W) bool, True = edited
    samples: list[np.ndarray]      # each (H, W, 3) uint8
    sample_paths: list[Path]
    mask_path: Path
    command: str
    folder: Path = field(repr=False)
    reference_mask_path: Path | None = None  # a painted reference hint, as the command line names it


def find_examples(folder: Path = EXAMPLES_DIR) -> dict[str, tuple[Path, Path, Path]]:
    """The bundled examples whose three files are all present."""
    found = {}
    for name, files in EXAMPLES.items():
        paths = tuple(folder / file for file in files)
        if all(path.is_file() for path in paths):
            found[name] = paths
    return found


def painted_mask(layers: list[Image.Image], shape: tuple[int, ...], what: str = "source") -> np.ndarray:
    """The union of everything painted on the editor's layers (alpha > 0) over the `what` image; erased pixels are
    clear."""
    mask = np.zeros(shape[:2], bool)
    for layer in layers:
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        if alpha.shape != mask.shape:
            raise MimicBrushError(f"painted layer size {alpha.shape[1]}x{alpha.shape[0]} differs from {what} size "
                                  f"{mask.shape[1]}x{mask.shape[0]}: paint again on the new {what}")
        mask |= alpha > 0
    return mask


def box_from_corners(first: tuple[int, int], second: tuple[int, int]) -> str:
    """Two clicked pixels (x, y), in either order -> the box `X0,Y0,X1,Y1` that includes both."""
    (x0, x1), (y0, y1) = sorted((first[0], second[0])), sorted((first[1], second[1]))
    return f"{x0},{y0},{x1 + 1},{y1 + 1}"


def outline(image: np.ndarray, box_text: str | None = None, corner: tuple[int, int] | None = None) -> np.ndarray:
    """A copy of `image` with the box's outline (or a first corner's cross) drawn in the paint colour."""
    shown = image.copy()
    width = max(1, round(max(image.shape[:2]) / 250))
    if box_text:
        box = imaging.parse_box(box_text)
        for rows, cols in ((slice(box.top, box.top + width), slice(box.left, box.right)),
                           (slice(box.bottom - width, box.bottom), slice(box.left, box.right)),
                           (slice(box.top, box.bottom), slice(box.left, box.left + width)),
                           (slice(box.top, box.bottom), slice(box.right - width, box.right))):
            shown[rows, cols] = BOX_COLOUR
    if corner is not None:
        x, y = corner
        reach = 4 * width
        shown[max(0, y - reach):y + reach + 1, max(0, x - width // 2):x + width // 2 + 1] = BOX_COLOUR
        shown[max(0, y - width // 2):y + width // 2 + 1, max(0, x - reach):x + reach + 1] = BOX_COLOUR
    return shown


def check_upload(path: str | Path, name: str | None, what: str, max_pixels: int) -> np.ndarray:
    """Decode an uploaded file (a path in gradio's upload folder) as an image, as `mimicbrush edit` reads files;
    a one-line error naming the upload (never the server's path) if it is not one. An image over `max_pixels` is
    refused from its header, before it is decoded."""
    name = name or "upload"
    try:
        image = imaging.load_image(path, what, max_pixels=max_pixels)
    except imaging.ImageTooLarge as error:
        raise MimicBrushError(error.describe(f"{what} {name}")) from None
    except MimicBrushError:
        raise MimicBrushError(f"{what} {name} is not a readable image") from None
    imaging.check_pixel_count(image, max_pixels, what)
    return image


class EditSession:
    """The server's one model and the edits run on it, one at a time."""

    def __init__(self, pipeline, config: ServeConfig = ServeConfig(), folder: Path | None = None):
        self.pipeline = pipeline
        self.config = config
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="mimicbrush-serve-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the page queues edits too; this holds for any other caller

    @property
    def has_depth_model(self) -> bool:
        return bool(self.pipeline.has_depth_model)

    @property
    def edit_defaults(self) -> EditSettings:
        """The model's own edit settings (`edit_settings.json`), which the page starts from."""
        return getattr(self.pipeline, "edit_defaults", EditSettings())

    @property
    def has_positional_prior(self) -> bool:
        return bool(self.pipeline.has_positional_prior)

    def read_inputs(self, background: Image.Image | None, layers: list[Image.Image], reference: Image.Image | None,
                    mask_box: str = "", invert: bool = False, mask_image: Image.Image | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source, reference and mask arrays from the page, checked as `mimicbrush edit` checks files.

        The mask is the box if one is given, else the mask image if there is one, else the painting.
        """
        if background is None:
            raise MimicBrushError("no source image: upload, paste or load an example")
        if reference is None:
            raise MimicBrushError("no reference image: upload, paste or load an example")
        source, reference_array = imaging.rgb_on_white(background), imaging.rgb_on_white(reference)
        imaging.check_pixel_count(source, self.config.max_pixels, "source image")
        imaging.check_pixel_count(reference_array, self.config.max_pixels, "reference image")
        if mask_box.strip():
            mask = imaging.box_mask(source.shape, imaging.parse_box(mask_box))
        elif mask_image is not None:
            mask = imaging.mask_from_image(mask_image)
        else:
            mask = painted_mask(layers, source.shape)
        mask = ~mask if invert else mask
        imaging.check_edit_inputs(source, reference_array, mask)
        return source, reference_array, mask

    def reference_region(self, reference: np.ndarray, box_text: str = "", layers: list[Image.Image] = (),
                         ) -> imaging.Box | np.ndarray | None:
        """The page's reference hint, the part of the reference to copy from: the box `X0,Y0,X1,Y1` if one is
        typed, else what is painted on the reference (a bool mask), else None (the whole reference). Checked."""
        if box_text.strip():
            box = imaging.parse_box(box_text, "reference box")
            imaging.box_mask(reference.shape, box, "reference box", "reference")
            return box
        painted = painted_mask(list(layers), reference.shape, "reference")
        return painted if painted.any() else None

    def edit(self, source: np.ndarray, reference: np.ndarray, mask: np.ndarray, settings: EditSettings,
             callback: StepCallback | None = None, reference_region: imaging.Box | np.ndarray | None = None,
             ) -> BrowserEdit:
        """Run one checked edit and write `edited*.png` and `mask.png` to a new folder of the session's;
        `reference_region`: a reference hint (`reference_region`), a box or a painted mask, which is written as
        `reference_mask.png` beside them."""
        region, region_words, painted = None, (), None
        if isinstance(reference_region, imaging.Box):
            region = read_reference_region(reference_region, reference)
            region_words = ("--reference-box", reference_region.text())
        elif reference_region is not None:
            check_reference_region(reference, reference_region, "painted reference region")
            region = painted = reference_region
            region_words = ("--reference-mask", "reference_mask.png")
        with self._lock:
            samples = edit_images(self.pipeline, [(source, reference, mask, region)], settings, callback)[0]
        folder = Path(tempfile.mkdtemp(prefix="edit-", dir=self.folder))
        job = EditJob(Path("source.png"), Path("reference.png"), Path("mask.png"))
        sample_paths = plan_output_paths([job], folder / "edited.png", settings.num_samples)[0]
        for image, path in zip(samples, sample_paths):
            save_image_atomically(image, path)
        mask_path = folder / "mask.png"
        save_image_atomically(mask.astype(np.uint8) * 255, mask_path)
        reference_mask_path = None
        if painted is not None:
            reference_mask_path = folder / "reference_mask.png"
            save_image_atomically(painted.astype(np.uint8) * 255, reference_mask_path)
        command = edit_command_line("source.png", "reference.png", "mask.png", "edited.png", settings,
                                    self.config.model_options, self.edit_defaults, region_words)
        return BrowserEdit(source, mask, samples, sample_paths, mask_path, command, folder, reference_mask_path)
