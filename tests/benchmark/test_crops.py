import numpy as np

from mimicbrush_cli.benchmark.crops import box_crop, foreground_crop, remove_background


def test_box_crop_cuts_the_tight_bounding_box_of_the_mask():
    image = np.arange(10 * 12 * 3, dtype=np.int64).reshape(10, 12, 3).astype(np.uint8)
    mask = np.zeros((10, 12), bool)
    mask[2, 3] = mask[6, 8] = True
    crop = box_crop(image, mask)
    assert crop.shape == (5, 6, 3)
    np.testing.assert_array_equal(crop, image[2:7, 3:9])


def test_remove_background_paints_outside_the_mask_white():
    image = np.full((4, 4, 3), 7, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    cleaned = remove_background(image, mask)
    assert (cleaned[mask] == 7).all() and (cleaned[~mask] == 255).all()
    assert (image == 7).all()  # the input is left alone


def test_foreground_crop_is_background_removed_then_boxed():
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    mask[2, 3] = False  # a corner inside the box but outside the mask
    crop = foreground_crop(image, mask)
    assert crop.shape == (3, 3, 3)
    assert (crop[0, 0] == 255).all() and (crop[1, 1] == 0).all()
