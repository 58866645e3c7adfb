"""Issue 26, images: every way an input file can be bad or unusual, through every door that reads one.

The doors: `mimicbrush edit` (the file as SRC, as REF and as MASK), `mimicbrush benchmark part|texture` (a sample's
file) and the serve page's upload check (`check_upload`). A refused file is one line, `error: ...`, exit code 2,
before any model loads and with no output written; the benchmark's documented behaviour is different by design:
it reports the sample as skipped (with the same reason) and scores the rest.

What the unusual-but-valid files decode to (decided here, the same through every door):
- JPEG bytes in a file named .png: decoded by content, like any other image (the name's suffix is not trusted);
- an animated GIF: its first frame;
- a CMYK JPEG (Adobe-inverted, as Photoshop and Pillow write them): RGB = 255 * (1 - C) * (1 - K) per channel;
- a palette PNG with transparency: as an image, composited on white (as padding is); as a mask, its alpha;
- an EXIF-rotated JPEG: the orientation is applied, to images and masks alike, so the arrays are what a viewer
  shows, a mask painted over the shown photo lines up, and results are written upright (with no EXIF tag);
- a header that claims more pixels than the limit (a decompression bomb): refused from the header, before decoding.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data
from typer.testing import CliRunner

from mimicbrush_cli import imaging
from mimicbrush_cli.benchmark.samples import BrokenSample, read_sample, sample_files
from mimicbrush_cli.cli.app import app
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.web.session import check_upload

from one_line import assert_one_error_line

runner = CliRunner()

PHOTO = data.chelsea()        # (300, 451, 3): the source
REFERENCE = data.coffee()     # (400, 600, 3)
MASK = np.zeros(PHOTO.shape[:2], bool)
MASK[96:200, 200:312] = True  # the cat's head, on JPEG block edges

REFUSED = ["missing", "folder", "empty", "truncated-png", "truncated-jpeg", "text-named-png", "huge-header-png"]
UNUSUAL = ["jpeg-named-png", "animated-gif", "cmyk-jpeg", "palette-png-transparent", "exif-rotated-jpeg"]
SUFFIX = {"truncated-jpeg": ".jpg", "animated-gif": ".gif", "cmyk-jpeg": ".jpg", "exif-rotated-jpeg": ".jpg"}
HUGE = 100_000  # the huge header's side: 10^10 pixels, 30 GB as RGB


# ---------------------------------------------------------------- the catalogue's files

def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_header_png(width: int, height: int) -> bytes:
    """A well-formed PNG start whose header claims width x height RGB pixels, with one row of them."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    first_row = zlib.compress(b"\x00" * (1 + 3 * width), 9)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", first_row)
            + png_chunk(b"IEND", b""))


def as_image(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8) * 255 if values.dtype == bool else values)


def posterised(values: np.ndarray, levels: int = 4) -> tuple[np.ndarray, list[int]]:
    """(indices, palette): the photo in `levels`**3 exact colours, for formats that store a palette."""
    step = 255 // (levels - 1)
    quantised = np.rint(values.astype(float) / step).astype(np.uint8)  # 0..levels-1 per channel
    indices = (quantised[..., 0] * levels + quantised[..., 1]) * levels + quantised[..., 2]
    palette = [channel * step for index in range(levels ** 3)
               for channel in (index // levels ** 2, index // levels % levels, index % levels)]
    return indices.astype(np.uint8), palette


def palette_image(indices: np.ndarray, palette: list[int]) -> Image.Image:
    image = Image.fromarray(indices, "P")
    image.putpalette(palette)
    return image


def cmyk_of(rgb: np.ndarray) -> np.ndarray:
    """The CMYK (0-255) that prints `rgb` under RGB = 255 (1 - C)(1 - K): the black in K, the rest in CMY."""
    rgb = rgb.astype(float)
    k = 255 - rgb.max(axis=-1)
    white = np.maximum(255 - k, 1)[..., None]
    cmy = 255 * (1 - rgb / white)
    return np.rint(np.concatenate([cmy, k[..., None]], axis=-1)).clip(0, 255).astype(np.uint8)


# What each EXIF orientation asks a viewer to do, and the inverse that makes the stored pixels from the shown ones.
SHOW = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90}
STORE = {**SHOW, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def exif_rotated_jpeg(shown: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(shown.transpose(STORE[orientation]), "JPEG", quality=95, exif=exif)


def write_case(kind: str, path: Path, content: np.ndarray) -> Path:
    """Write the catalogue's `kind` of file at `path` (its suffix as given), showing `content` (an RGB photo or
    a bool mask) where the kind holds an image; returns the path."""
    is_mask = content.dtype == bool
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated-png":
        whole = encoded(as_image(content), "PNG")
        path.write_bytes(whole[:len(whole) // 2])
    elif kind == "truncated-jpeg":
        whole = encoded(as_image(content), "JPEG", quality=95)
        path.write_bytes(whole[:len(whole) // 2])
    elif kind == "text-named-png":
        path.write_text("a shopping list, not an image\n")
    elif kind == "huge-header-png":
        path.write_bytes(huge_header_png(HUGE, HUGE))
    elif kind == "jpeg-named-png":
        path.write_bytes(encoded(as_image(content), "JPEG", quality=95))
    elif kind == "animated-gif":
        # frame 0 shows the content exactly (a few palette colours); frame 1 is something else
        if is_mask:
            first, second = as_image(content).convert("P"), as_image(~content).convert("P")
        else:
            indices, palette = posterised(content)
            first, second = palette_image(indices, palette), palette_image(indices[::-1].copy(), palette)
        first.save(path, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    elif kind == "cmyk-jpeg":
        rgb = np.repeat(content[..., None], 3, axis=-1) * np.uint8(255) if is_mask else content
        Image.fromarray(cmyk_of(rgb), "CMYK").save(path, "JPEG", quality=95)
    elif kind == "palette-png-transparent":
        if is_mask:  # painted black and opaque on white and transparent: only the alpha says where
            image = palette_image(content.astype(np.uint8), [255, 255, 255, 0, 0, 0])
            image.save(path, "PNG", transparency=bytes([0, 255]))
        else:  # the photo's colours, with the dark ones fully transparent and the mid-greys half
            indices, palette = posterised(content)
            palette_image(indices, palette).save(path, "PNG", transparency=palette_alpha(palette))
    elif kind == "exif-rotated-jpeg":
        path.write_bytes(exif_rotated_jpeg(as_image(content), 6))
    else:
        raise AssertionError(kind)
    return path


def palette_alpha(palette: list[int]) -> bytes:
    colours = np.asarray(palette).reshape(-1, 3)
    alpha = np.where(colours.sum(axis=1) < 200, 0, np.where(np.ptp(colours, axis=1) == 0, 128, 255))
    return bytes(alpha.astype(np.uint8).tolist())


def expected_image(kind: str, content: np.ndarray) -> tuple[np.ndarray, float]:
    """What an unusual file showing the photo `content` must decode to, and the mean error JPEG may add."""
    if kind == "animated-gif":
        indices, palette = posterised(content)
        return np.asarray(palette, np.uint8).reshape(-1, 3)[indices], 0.0
    if kind == "palette-png-transparent":
        indices, palette = posterised(content)
        colours = np.asarray(palette, float).reshape(-1, 3)
        alpha = np.frombuffer(palette_alpha(palette), np.uint8)[:, None] / 255.0
        on_white = colours * alpha + 255 * (1 - alpha)
        return np.rint(on_white)[indices].astype(np.uint8), 0.0
    return content, 3.0  # the JPEG kinds: the photo itself, up to JPEG's error


def assert_shows(decoded: np.ndarray, expected: np.ndarray, mean_error: float) -> None:
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape, (decoded.dtype, decoded.shape)
    error = np.abs(decoded.astype(int) - expected.astype(int))
    if mean_error:
        assert error.mean() < mean_error, error.mean()
    else:
        assert error.max() <= 1, error.max()  # compositing may round either way


# ---------------------------------------------------------------- mimicbrush edit

ROLES = ["SRC", "REF", "MASK"]


def edit_files(folder: Path, role: str, kind: str) -> tuple[list[Path], Path]:
    """SRC REF MASK paths with the catalogue's `kind` in `role` (the others good), and an empty output folder."""
    good = {"SRC": folder / "source.png", "REF": folder / "reference.png", "MASK": folder / "mask.png"}
    Image.fromarray(PHOTO).save(good["SRC"])
    Image.fromarray(REFERENCE).save(good["REF"])
    as_image(MASK).save(good["MASK"])
    content = {"SRC": PHOTO, "REF": REFERENCE, "MASK": MASK}[role]
    good[role] = write_case(kind, folder / f"{kind}{SUFFIX.get(kind, '.png')}", content)
    (folder / "out").mkdir()
    return [good["SRC"], good["REF"], good["MASK"]], folder / "out" / "edited.png"


def edit(inputs: list[Path], output: Path):
    return runner.invoke(app, ["edit", *map(str, inputs), "-o", str(output), "--model", "random-tiny", "--steps", "1",
                               "--device", "cpu"])


# The reason each refused kind must give, in the CLI's words.
REASONS = {"missing": "not found", "folder": "is a folder", "empty": "is empty", "truncated-png": "truncated",
           "truncated-jpeg": "truncated", "text-named-png": "not a readable image",
           "huge-header-png": "over the limit"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", REFUSED)
def test_edit_refuses_a_bad_file_in_one_line_before_loading_anything(tmp_path, monkeypatch, kind, role):
    inputs, output = edit_files(tmp_path, role, kind)
    loaded = []
    monkeypatch.setattr("mimicbrush_cli.loading.load_pipeline", lambda *args, **kwargs: loaded.append(1))
    started = time.perf_counter()
    line = assert_one_error_line(edit(inputs, output))
    assert time.perf_counter() - started < 5
    bad = inputs[ROLES.index(role)]
    assert str(bad) in line and REASONS[kind] in line.replace(str(bad), ""), line
    assert not loaded and list(output.parent.iterdir()) == []


def edited_pixels(folder: Path, role: str, kind: str) -> np.ndarray:
    inputs, output = edit_files(folder, role, kind)
    result = edit(inputs, output)
    assert result.exit_code == 0, result.output
    assert "".join(result.output.split()) == f"wrote{output}", result.output  # no warning from the decoder either
    assert sorted(output.parent.iterdir()) == [output]
    return np.asarray(Image.open(output))


UNTOUCHED = imaging.blend_alpha(MASK) == 0  # where an edit keeps the source's pixels exactly


@pytest.mark.parametrize("kind", UNUSUAL)
def test_edit_takes_an_unusual_source_as_it_shows(tmp_path, kind):
    edited = edited_pixels(tmp_path, "SRC", kind)
    expected, mean_error = expected_image(kind, PHOTO)
    assert edited.shape == PHOTO.shape  # upright: the EXIF-rotated one is stored 451 x 300
    assert_shows(np.where(UNTOUCHED[..., None], edited, expected), expected, mean_error)


@pytest.mark.parametrize("kind", UNUSUAL)
def test_edit_takes_an_unusual_reference(tmp_path, kind):
    assert edited_pixels(tmp_path, "REF", kind).shape == PHOTO.shape


@pytest.mark.parametrize("kind", UNUSUAL)
def test_edit_takes_an_unusual_mask_where_it_shows(tmp_path, kind):
    edited = edited_pixels(tmp_path, "MASK", kind)
    np.testing.assert_array_equal(edited[UNTOUCHED], PHOTO[UNTOUCHED])
    assert (edited[MASK] != PHOTO[MASK]).any(axis=-1).mean() > 0.5  # and the mask's region was repainted


# ---------------------------------------------------------------- the decoded arrays

@pytest.mark.parametrize("kind", UNUSUAL)
def test_unusual_image_files_decode_to_what_they_show(tmp_path, kind):
    path = write_case(kind, tmp_path / f"photo{SUFFIX.get(kind, '.png')}", PHOTO)
    expected, mean_error = expected_image(kind, PHOTO)
    assert_shows(imaging.load_image(path), expected, mean_error)


@pytest.mark.parametrize("kind", UNUSUAL)
def test_unusual_mask_files_decode_to_what_they_show(tmp_path, kind):
    path = write_case(kind, tmp_path / f"mask{SUFFIX.get(kind, '.png')}", MASK)
    np.testing.assert_array_equal(imaging.load_mask(path), MASK)


def test_an_animated_gif_is_its_first_frame(tmp_path):
    red, blue = Image.new("RGB", (16, 12), (255, 0, 0)), Image.new("RGB", (16, 12), (0, 0, 255))
    red.save(tmp_path / "a.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(tmp_path / "a.gif").n_frames == 2
    assert (imaging.load_image(tmp_path / "a.gif") == (255, 0, 0)).all()


def test_a_cmyk_jpeg_is_converted_multiplicatively(tmp_path):
    # flat 16x16 patches, so that JPEG keeps them flat: (C, M, Y, K) -> 255 (1 - C)(1 - M)... per channel
    patches = np.array([[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 128], [128, 0, 0, 128], [0, 255, 255, 0]], np.uint8)
    Image.fromarray(np.repeat(np.repeat(patches[None], 16, 0), 16, 1), "CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    rgb = imaging.load_image(tmp_path / "c.jpg")[8, 8::16]
    expected = [[255, 255, 255], [0, 255, 255], [127, 127, 127], [63, 127, 127], [255, 0, 0]]
    assert np.abs(rgb.astype(int) - expected).max() <= 2, rgb


def test_a_palette_png_with_transparency_is_on_white_as_an_image_and_its_alpha_as_a_mask(tmp_path):
    image = palette_image(np.array([[0, 1, 2, 3]] * 4, np.uint8), [255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0])
    image.save(tmp_path / "p.png", transparency=bytes([255, 0, 128, 255]))
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(imaging.load_image(tmp_path / "p.png")[0],
                                  [[255, 0, 0], [255, 255, 255], [127, 127, 255], [0, 0, 0]])
    np.testing.assert_array_equal(imaging.load_mask(tmp_path / "p.png")[0], [True, False, False, True])


def test_a_palette_png_whose_transparency_is_unused_is_read_by_brightness_without_a_warning(tmp_path, recwarn):
    image = palette_image(np.array([[0, 1]] * 4, np.uint8), [0, 0, 0, 255, 255, 255, 9, 9, 9])
    image.save(tmp_path / "p.png", transparency=bytes([255, 255, 0]))  # the transparent colour is not used
    np.testing.assert_array_equal(imaging.load_mask(tmp_path / "p.png")[0], [False, True])
    assert not [warning for warning in recwarn if "Palette" in str(warning.message)]


@pytest.mark.parametrize("orientation", sorted(SHOW))
def test_every_exif_orientation_is_applied_to_images_and_masks_alike(tmp_path, orientation):
    (tmp_path / "photo.jpg").write_bytes(exif_rotated_jpeg(Image.fromarray(PHOTO), orientation))
    (tmp_path / "mask.jpg").write_bytes(exif_rotated_jpeg(as_image(MASK), orientation))
    assert Image.open(tmp_path / "photo.jpg").getexif()[0x0112] == orientation
    assert_shows(imaging.load_image(tmp_path / "photo.jpg"), PHOTO, 3.0)
    np.testing.assert_array_equal(imaging.load_mask(tmp_path / "mask.jpg"), MASK)
    shown = ImageOps.exif_transpose(Image.open(tmp_path / "photo.jpg"))
    np.testing.assert_array_equal(imaging.load_image(tmp_path / "photo.jpg"), np.asarray(shown))


def test_a_huge_header_is_refused_before_decoding(tmp_path, monkeypatch):
    # 5000 x 5000 is under Pillow's own limit: only our check, from the header, stops it being decoded
    (tmp_path / "big.png").write_bytes(huge_header_png(5000, 5000))
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", lambda image: pytest.fail("decoded"))
    with pytest.raises(MimicBrushError, match=r"^image is 5000x5000 = 25.0 MP, over the limit of 16.0 MP: "):
        imaging.load_image(tmp_path / "big.png", max_pixels=16_000_000)


# ---------------------------------------------------------------- mimicbrush benchmark

@pytest.fixture
def offline_metrics(tmp_path, monkeypatch):
    """SSIM and PSNR only: no LPIPS weights anywhere, nothing downloaded."""
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    monkeypatch.setattr("mimicbrush_cli.benchmark.lpips._installed_lpips_heads", lambda: None)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)


def benchmark_folder(folder: Path, role: str | None = None, kinds: dict[str, str] | None = None) -> Path:
    """A `good` sample and, for each (id, kind) of `kinds`, a sample whose `role` file is that kind (its suffix as
    named)."""
    folder.mkdir()
    kinds = kinds or {}
    for sample_id in ("good", *kinds):
        for name, content in (("source", PHOTO), ("source_mask", MASK), ("reference", REFERENCE),
                              ("reference_mask", np.ones(REFERENCE.shape[:2], bool))):
            path = folder / f"{sample_id}_{name}.png"
            if sample_id in kinds and name == role:
                write_case(kinds[sample_id], path.with_suffix(SUFFIX.get(kinds[sample_id], ".png")), content)
            else:
                as_image(content).save(path)
    return folder


def benchmark(task: str, folder: Path, output: Path):
    return runner.invoke(app, ["benchmark", task, str(folder), "--split", "inner", "-o", str(output), "--model",
                               "random-tiny", "--steps", "1", "--long-side", "0", "--device", "cpu"])


BENCHMARK_REASONS = {**REASONS, "missing": "missing bad_"}


def unwrapped(text: str) -> str:
    return "".join(text.split())


@pytest.mark.slow  # a benchmark run of every kind of bad file at once
@pytest.mark.parametrize("task, role", [("part", "source"), ("texture", "source_mask")])
def test_benchmark_skips_each_sample_with_a_bad_file_and_scores_the_rest(tmp_path, offline_metrics, task, role):
    kinds = {f"bad{index:02d}": kind for index, kind in enumerate(REFUSED)}
    folder = benchmark_folder(tmp_path / "bench", role, kinds)
    result = benchmark(task, folder, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == len(kinds), result.output
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted(stored["broken"]) == sorted(kinds) and list(stored["samples"]) == ["good"]
    for sample_id, kind in kinds.items():
        reason = stored["broken"][sample_id]
        assert BENCHMARK_REASONS[kind].replace("bad_", f"{sample_id}_") in reason and "\n" not in reason, reason
        assert unwrapped(f"skipped {sample_id}: {reason}") in unwrapped(result.output)  # the console wraps lines
        assert not list((tmp_path / "out").rglob(f"{sample_id}*"))


@pytest.mark.parametrize("kind", REFUSED)
def test_a_bad_file_is_a_broken_sample_with_its_reason(tmp_path, kind):
    folder = benchmark_folder(tmp_path / "bench", "reference", {"bad": kind})
    files = sample_files(folder)
    with pytest.raises(BrokenSample) as error:
        read_sample("bad", files["bad"], "inter", long_side=0)
    assert BENCHMARK_REASONS[kind] in str(error.value) and "\n" not in str(error.value), error.value


def test_benchmark_where_the_only_sample_is_bad_skips_it_and_exits_2(tmp_path, offline_metrics):
    folder = tmp_path / "bench"
    folder.mkdir()
    for name, content in (("source", PHOTO), ("source_mask", MASK), ("reference", REFERENCE)):
        as_image(content).save(folder / f"only_{name}.png")
    write_case("huge-header-png", folder / "only_source.png", PHOTO)
    result = benchmark("part", folder, tmp_path / "out")
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[-1].startswith("error: no sample was scored: all 1 were skipped")
    assert len([line for line in lines if line.startswith("skipped ")]) == 1 and "Traceback" not in result.output
    assert unwrapped(f"skipped only: source image is 10000.0 MP, over the limit of 179.0 MP: "
                     f"{folder / 'only_source.png'}") in unwrapped(result.output)


@pytest.mark.slow  # one benchmark run of every unusual kind at once
def test_benchmark_reads_unusual_files_as_they_show(tmp_path, offline_metrics):
    folder = tmp_path / "bench"
    folder.mkdir()
    kinds = {f"odd{index:02d}": kind for index, kind in enumerate(UNUSUAL)}
    for sample_id, kind in kinds.items():
        suffix = ".png" if kind == "animated-gif" else SUFFIX.get(kind, ".png")  # a benchmark folder has no .gif
        for name, content in (("source", PHOTO), ("source_mask", MASK), ("reference", REFERENCE)):
            write_case(kind, folder / f"{sample_id}_{name}{suffix}", content)
        sample = read_sample(sample_id, sample_files(folder)[sample_id], "inner", long_side=0)
        expected, mean_error = expected_image(kind, PHOTO)
        assert_shows(sample.source, expected, mean_error)
        np.testing.assert_array_equal(sample.source_mask, MASK)
        assert_shows(sample.reference, *expected_image(kind, REFERENCE))
    result = benchmark("texture", folder, tmp_path / "out")
    assert result.exit_code == 0 and "skipped" not in result.output, result.output
    for sample_id, kind in kinds.items():
        expected, mean_error = expected_image(kind, PHOTO)
        edited = np.asarray(Image.open(tmp_path / "out" / "samples" / f"{sample_id}_result.png"))
        assert_shows(np.where(UNTOUCHED[..., None], edited, expected), expected, mean_error)


# ---------------------------------------------------------------- the serve page's upload check

@pytest.mark.parametrize("kind", REFUSED)
def test_upload_check_refuses_a_bad_file_in_one_line_naming_the_upload_not_the_server_path(tmp_path, kind):
    upload = write_case(kind, tmp_path / "upload.png", PHOTO)
    started = time.perf_counter()
    with pytest.raises(MimicBrushError) as error:
        check_upload(upload, "holiday.png", "reference image", max_pixels=16_000_000)
    assert time.perf_counter() - started < 2
    message = str(error.value)
    if kind == "huge-header-png":
        assert message == "reference image holiday.png is 10000.0 MP, over the limit of 16.0 MP"
    else:
        assert message == "reference image holiday.png is not a readable image"
    assert str(tmp_path) not in message and "\n" not in message


def test_upload_check_refuses_an_image_over_the_pixel_limit_from_its_header(tmp_path, monkeypatch):
    (tmp_path / "upload.png").write_bytes(huge_header_png(5000, 5000))
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", lambda image: pytest.fail("decoded"))
    with pytest.raises(MimicBrushError) as error:
        check_upload(tmp_path / "upload.png", "big.png", "source image", max_pixels=16_000_000)
    assert str(error.value) == "source image big.png is 5000x5000 = 25.0 MP, over the limit of 16.0 MP"


@pytest.mark.parametrize("kind", UNUSUAL)
def test_upload_check_takes_an_unusual_file_as_it_shows(tmp_path, kind):
    upload = write_case(kind, tmp_path / f"upload{SUFFIX.get(kind, '.png')}", PHOTO)
    assert_shows(check_upload(upload, "holiday.png", "source image", max_pixels=16_000_000),
                 *expected_image(kind, PHOTO))
