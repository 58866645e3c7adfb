import numpy as np
import pytest
from PIL import Image

from mimicbrush_cli.benchmark.samples import BrokenSample, read_sample, sample_files
from mimicbrush_cli.errors import MimicBrushError


def test_sample_files_group_the_authors_naming_by_id(benchmark_dir):
    files = sample_files(benchmark_dir)
    assert sorted(files) == ["astronaut", "cat", "cup"]
    assert set(files["cat"]) == {"source", "source_mask", "reference", "reference_mask", "prompt", "gt"}
    assert files["cup"]["source_mask"].name == "cup_source_mask.png"


def test_inner_split_falls_back_to_the_source_as_ground_truth(benchmark_dir):
    files = sample_files(benchmark_dir)
    cup = read_sample("cup", files["cup"], "inner", long_side=0)
    np.testing.assert_array_equal(cup.ground_truth, cup.source)
    assert cup.ground_truth_file == "source"
    assert read_sample("cat", files["cat"], "inner", long_side=0).ground_truth_file == "cat_gt.png"


def test_read_sample_resizes_the_long_side(benchmark_dir):
    sample = read_sample("cat", sample_files(benchmark_dir)["cat"], "inter", long_side=64)
    assert max(sample.source.shape[:2]) == 64 and sample.source_mask.shape == sample.source.shape[:2]
    assert max(sample.reference.shape[:2]) == 64 and sample.reference_mask.shape == sample.reference.shape[:2]
    assert sample.prompt == "a cat"


def test_missing_reference_is_a_broken_sample(benchmark_dir):
    (benchmark_dir / "cup_reference.png").unlink()
    with pytest.raises(BrokenSample, match="cup_reference"):
        read_sample("cup", sample_files(benchmark_dir)["cup"], "inter")


def test_mask_size_mismatch_is_a_broken_sample(benchmark_dir):
    Image.new("L", (10, 10), 255).save(benchmark_dir / "cup_source_mask.png")
    with pytest.raises(BrokenSample, match="source mask is 10x10"):
        read_sample("cup", sample_files(benchmark_dir)["cup"], "inner")


def test_folder_without_samples_is_user_error(tmp_path):
    with pytest.raises(MimicBrushError, match="no benchmark samples"):
        sample_files(tmp_path)
