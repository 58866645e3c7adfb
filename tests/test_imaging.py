import numpy as np
import pytest
from PIL import Image
from skimage import data

from mimicbrush_cli import imaging
from mimicbrush_cli.errors import MimicBrushError


def test_pad_then_unpad_round_trip():
    image = data.astronaut()[:300, :200]
    padded, box = imaging.pad_to_square(image, imaging.WHITE)
    assert padded.shape == (300, 300, 3)
    assert (padded[:, :box.left] == 255).all() and (padded[:, box.right:] == 255).all()
    np.testing.assert_array_equal(imaging.unpad(padded, box), image)


def test_mask_pads_black():
    mask = np.ones((10, 4), bool)
    padded, box = imaging.pad_to_square(mask, False)
    assert padded.sum() == 40 and box.left == 3


def test_pixels_outside_blurred_mask_equal_source_exactly():
    rng = np.random.default_rng(0)
    source = data.chelsea()
    prediction = rng.integers(0, 256, source.shape, dtype=np.uint8)
    mask = np.zeros(source.shape[:2], bool)
    mask[100:150, 120:200] = True
    result = imaging.paste_back(source, prediction, mask)
    alpha = imaging.blend_alpha(mask)
    outside = alpha == 0
    assert outside.sum() > 0.8 * outside.size
    np.testing.assert_array_equal(result[outside], source[outside])
    inside = mask & (alpha > 0.999)
    assert inside.any()
    assert np.abs(result[inside].astype(int) - prediction[inside].astype(int)).max() <= 1


def test_lanczos_blend_alpha_spreads_ten_gaussian_passes_in_float():
    mask = np.zeros((64, 64), bool)
    mask[32, 32] = True
    alpha = imaging.blend_alpha(mask, "lanczos")
    assert alpha[32, 32] < 1 and (alpha > 0).sum() == 21 * 21  # 10 passes of a 3x3 kernel reach 10 pixels


def test_released_blend_alpha_rounds_the_blur_tail_to_zero():
    mask = np.zeros((64, 64), bool)
    mask[32, 32] = True
    alpha = imaging.blend_alpha(mask)
    assert alpha.dtype == np.float64 and (alpha > 0).sum() < 21 * 21  # each 8-bit pass rounds small values away
    np.testing.assert_array_equal(np.rint(alpha * 255), alpha * 255)  # whole 8-bit levels


def test_lanczos_paste_back_resizes_with_lanczos_and_rounds(photos):
    source, reference, mask = photos
    prepared = imaging.prepare_edit(source, reference, mask, 64, crop=False)
    prediction = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    lanczos = imaging.finish_edit(source, mask, prepared, prediction, "lanczos")
    side = prepared.source_square.shape[0]
    resized = imaging.unpad(imaging.resize_image(prediction, side), prepared.pad)
    alpha = imaging.blend_alpha(mask, "lanczos")[..., None]
    expected = np.rint(resized * alpha + source * (1 - alpha))
    inside = alpha[..., 0] > 0
    assert np.abs(lanczos[inside] - expected[inside]).max() <= 1  # float32 blend vs float64 here
    assert not np.array_equal(lanczos, imaging.finish_edit(source, mask, prepared, prediction))


def test_unknown_paste_back_kernel_is_an_error():
    with pytest.raises(ValueError, match="paste_back"):
        imaging.blend_alpha(np.ones((4, 4), bool), "bicubic")


def test_resize_mask_binarises_at_half():
    mask = np.zeros((100, 100), bool)
    mask[:50] = True
    resized = imaging.resize_mask(mask, 10)
    assert resized.dtype == bool and resized[:5].all() and not resized[5:].any()


def test_context_crop_box_is_square_around_small_mask_and_inside_image():
    mask = np.zeros((2000, 3000), bool)
    mask[1900:1950, 2950:2990] = True
    box = imaging.context_crop_box(mask, min_side=512)
    assert box.height == box.width == 512
    assert box.bottom == 2000 and box.right == 3000
    assert mask[box.slices()].sum() == mask.sum()


def test_context_crop_box_of_small_image_is_whole_image():
    mask = np.zeros((300, 400), bool)
    mask[10:20, 10:20] = True
    box = imaging.context_crop_box(mask, min_side=512)
    assert (box.top, box.left, box.bottom, box.right) == (0, 0, 300, 400)


def test_prepare_and_finish_edit_round_trip_geometry():
    source = data.coffee()  # 400x600
    mask = np.zeros(source.shape[:2], bool)
    mask[150:250, 300:420] = True
    prepared = imaging.prepare_edit(source, data.chelsea(), mask, resolution=64, crop=False)
    assert prepared.masked_source.shape == (64, 64, 3) and prepared.mask.shape == (64, 64)
    assert prepared.reference.shape == (64, 64, 3)
    result = imaging.finish_edit(source, mask, prepared, np.zeros((64, 64, 3), np.uint8))
    assert result.shape == source.shape
    assert result[200, 360].max() < 30  # inside the mask: the (black) prediction
    np.testing.assert_array_equal(result[:100], source[:100])


def test_black_out_mask_paints_black_which_the_model_sees_as_minus_one():
    image = np.full((4, 4, 3), 200, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    masked = imaging.to_model_range(imaging.black_out_mask(image, mask))
    assert (masked[:, 0, 0] == -1).all() and np.allclose(masked[:, 1, 1], 200 / 127.5 - 1)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_load_mask_accepts_grayscale_rgb_and_alpha(tmp_path, mode):
    values = np.zeros((20, 30), np.uint8)
    values[5:10, 5:15] = 255
    if mode == "RGBA":
        rgba = np.zeros((20, 30, 4), np.uint8)
        rgba[..., 3] = values  # opaque where the edit is, transparent elsewhere
        Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    else:
        Image.fromarray(values).convert(mode).save(tmp_path / "m.png")
    mask = imaging.load_mask(tmp_path / "m.png")
    assert mask.sum() == 50 and mask[7, 7]
    assert imaging.load_mask(tmp_path / "m.png", invert=True).sum() == 600 - 50


def test_load_image_rejects_non_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(MimicBrushError, match="not a readable image"):
        imaging.load_image(path)


def test_check_edit_inputs_rejects_size_mismatch_empty_and_non_bool_masks():
    source = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(MimicBrushError, match="bool"):
        imaging.check_edit_inputs(source, source, np.full((20, 30), 255, np.uint8))
    with pytest.raises(MimicBrushError, match="differs"):
        imaging.check_edit_inputs(source, source, np.ones((20, 20), bool))
    with pytest.raises(MimicBrushError, match="empty"):
        imaging.check_edit_inputs(source, source, np.zeros((20, 30), bool))


def test_sixteen_bit_greyscale_source_and_mask_keep_their_tones(tmp_path):
    photo = data.camera()  # 8-bit greyscale
    Image.fromarray(photo.astype(np.uint16) * 257).save(tmp_path / "photo16.png")
    mask = np.zeros(photo.shape, np.uint16)
    mask[100:200, 100:300] = 65535
    Image.fromarray(mask).save(tmp_path / "mask16.png")
    assert Image.open(tmp_path / "photo16.png").mode.startswith("I")
    loaded = imaging.load_image(tmp_path / "photo16.png")
    np.testing.assert_array_equal(loaded[..., 0], photo)
    loaded_mask = imaging.load_mask(tmp_path / "mask16.png")
    assert loaded_mask.sum() == 100 * 200 and loaded_mask[150, 200] and not loaded_mask[50, 50]
    # images decoded elsewhere (the browser page's uploads) go through the same conversion
    np.testing.assert_array_equal(imaging.rgb_on_white(Image.open(tmp_path / "photo16.png"))[..., 0], photo)
    np.testing.assert_array_equal(imaging.mask_from_image(Image.open(tmp_path / "mask16.png")), loaded_mask)
