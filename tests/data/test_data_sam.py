import json

import numpy as np
import pytest
from skimage import data

from mimicbrush_cli.data.sam import SkippedInput, read_sam_sample, rle_counts_from_string, rle_decode, rle_encode

FILTERS = dict(min_area=0.01, max_area=0.5, min_predicted_iou=0.88, min_stability_score=0.95, max_masks=16, max_side=0)


def test_rle_round_trip_compressed_string():
    mask = data.camera() > 120
    rle = rle_encode(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [512, 512]
    np.testing.assert_array_equal(rle_decode(rle), mask)
    np.testing.assert_array_equal(rle_decode(json.loads(json.dumps(rle))), mask)


def test_rle_round_trip_uncompressed_list_counts():
    mask = data.coins() > 100
    runs = rle_counts_from_string(rle_encode(mask)["counts"].encode())
    assert sum(runs) == mask.size
    np.testing.assert_array_equal(rle_decode({"size": list(mask.shape), "counts": runs}), mask)


def test_rle_whose_counts_disagree_with_size_is_rejected():
    rle = rle_encode(data.camera() > 120)
    with pytest.raises(ValueError):
        rle_decode({"size": [100, 100], "counts": rle["counts"]})
    with pytest.raises(ValueError):
        rle_decode({"size": [4, 4], "counts": [3, 20]})


def test_sam_masks_are_filtered_by_area_iou_and_stability(tmp_path, write_sa1b):
    image = data.chelsea()[::2, ::2].copy()
    shape = image.shape[:2]
    big = np.zeros(shape, bool)
    big[20:100, 40:160] = True
    tiny = np.zeros(shape, bool)
    tiny[5:7, 5:7] = True
    path = write_sa1b(tmp_path, "1", image, [big, tiny, ~tiny])
    sample = read_sam_sample(path, **FILTERS)
    assert len(sample.masks) == 1 and (sample.masks[0] == big).all()
    assert sample.rejects == {"mask-too-small": 1, "mask-too-large": 1}
    unsure = write_sa1b(tmp_path, "2", image, [big], predicted_iou=0.5)
    with pytest.raises(SkippedInput, match="low-predicted-iou"):
        read_sam_sample(unsure, **FILTERS)
    unstable = write_sa1b(tmp_path, "3", image, [big], stability_score=0.5)
    with pytest.raises(SkippedInput, match="low-stability-score"):
        read_sam_sample(unstable, **FILTERS)


def test_rle_sized_unlike_its_image_is_rejected(tmp_path, write_sa1b):
    image = data.coffee()[::4, ::4].copy()
    wrong = np.zeros((image.shape[0] + 8, image.shape[1]), bool)
    wrong[10:60, 10:60] = True
    right = np.zeros(image.shape[:2], bool)
    right[10:60, 10:60] = True
    sample = read_sam_sample(write_sa1b(tmp_path, "1", image, [wrong, right]), **FILTERS)
    assert sample.rejects["rle-size-mismatch"] == 1 and len(sample.masks) == 1


def test_malformed_json_is_skipped(tmp_path, write_sa1b):
    image = data.coffee()[::4, ::4].copy()
    path = write_sa1b(tmp_path, "1", image, [])
    path.with_suffix(".json").write_text('{"annotations": [')
    with pytest.raises(SkippedInput, match="malformed-json"):
        read_sam_sample(path, **FILTERS)


def test_sam_images_are_downscaled_with_their_masks(tmp_path, write_sa1b):
    image = data.chelsea()
    mask = np.zeros(image.shape[:2], bool)
    mask[50:250, 100:300] = True
    sample = read_sam_sample(write_sa1b(tmp_path, "1", image, [mask]), **(FILTERS | {"max_side": 200}))
    assert sample.image.shape[:2] == sample.masks[0].shape == (133, 200)
