import numpy as np
import pytest
from skimage import data

from mimicbrush_cli.benchmark.backbones import MetricModels, load_backbones, resolve_model_folder
from mimicbrush_cli.errors import MimicBrushError


@pytest.fixture(scope="module")
def backbones(metric_models_dir):
    return load_backbones(MetricModels.from_folder(metric_models_dir, device="cpu"), need_identity=True,
                          need_perceptual=True)


def test_tiny_backbones_load_through_the_metrics_models_folder(backbones):
    assert backbones.dino is not None and backbones.clip is not None and backbones.lpips is not None


def test_dino_embeds_images_of_any_shape(backbones):
    embeddings = backbones.dino([data.coffee()[:50, :90], data.chelsea()[:90, :40]])
    assert embeddings.shape == (2, 32)
    assert np.isfinite(embeddings).all()


def test_clip_embeds_images_and_texts_in_one_space(backbones):
    assert backbones.clip.images([data.coffee()]).shape == (1, 16)
    assert backbones.clip.texts(["a cup of coffee", "a cat"]).shape == (2, 16)


def test_hub_model_offline_without_cache_is_one_line_error_naming_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MimicBrushError, match="--metrics-models") as error:
        resolve_model_folder("facebook/dinov2-base", "DINO-I (DINOv2)")
    assert "\n" not in str(error.value)


def test_missing_metrics_models_folder_is_user_error(tmp_path):
    with pytest.raises(MimicBrushError, match="not found"):
        MetricModels.from_folder(tmp_path / "nowhere")
