"""Shared fixtures: tiny random models in our folder format and in the released layout."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from mimicbrush_cli.loading import build_random_pipeline
from mimicbrush_cli.models.checkpoints import save_released_layout

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_pipeline():
    pipeline = build_random_pipeline("tiny", seed=0)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def tiny_pipeline_without_depth():
    """The tiny pipeline's weights without a depth model (as the bundled demo model is)."""
    from mimicbrush_cli.models.build import build_random_components
    from mimicbrush_cli.pipeline import MimicBrushPipeline

    pipeline = MimicBrushPipeline(**{**build_random_components("tiny", seed=0), "depth_estimator": None})
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_pipeline):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    tiny_pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_released_dir(tmp_path_factory, tiny_pipeline):
    return save_released_layout(tiny_pipeline, tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="session")
def photos():
    """Real photos: a source with a mask over the cat's head, and a reference."""
    source = data.chelsea()  # (300, 451, 3)
    mask = np.zeros(source.shape[:2], bool)
    yy, xx = np.mgrid[:300, :451]
    mask[((yy - 110) / 90) ** 2 + ((xx - 230) / 100) ** 2 < 1] = True
    return source, data.coffee(), mask


@pytest.fixture
def photo_files(tmp_path, photos):
    source, reference, mask = photos
    paths = {"source": tmp_path / "source.png", "reference": tmp_path / "reference.jpg", "mask": tmp_path / "mask.png"}
    Image.fromarray(source).save(paths["source"])
    Image.fromarray(reference).save(paths["reference"])
    Image.fromarray(mask.astype(np.uint8) * 255).save(paths["mask"])
    return paths
