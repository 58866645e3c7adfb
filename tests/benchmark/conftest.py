"""Tiny random metric networks saved in the layout real ones use, a small benchmark folder, trivial editors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer,
                          Dinov2Config, Dinov2Model)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from mimicbrush_cli.benchmark.lpips import LPIPS, save_lpips

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A byte-level vocabulary without merges: every character is a token."""
    characters = list(bytes_to_unicode().values())
    vocab = {character: index for index, character in enumerate(characters)}
    vocab.update({character + "</w>": len(characters) + index for index, character in enumerate(characters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[])


def write_tiny_metric_models(root: Path) -> Path:
    torch.manual_seed(0)
    dino = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    image_size=56, patch_size=14))
    dino.save_pretrained(root / "dinov2")
    BitImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, do_center_crop=True,
                      image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, resample=3).save_pretrained(root / "dinov2")
    tokenizer = tiny_clip_tokenizer()
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=end, pad_token_id=end,
                         bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>")),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(config).save_pretrained(root / "clip")
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(root / "clip")
    lpips = LPIPS()
    for index in range(5):  # the published heads are non-negative, which keeps distances >= 0
        head = getattr(lpips, f"lin{index}").model[1]
        head.weight.data.abs_()
    save_lpips(lpips, root / "lpips")
    return root


@pytest.fixture(scope="session")
def metric_models_dir(tmp_path_factory) -> Path:
    return write_tiny_metric_models(tmp_path_factory.mktemp("metric_models"))


def ellipse_mask(height: int, width: int, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 < 1


def small(image: np.ndarray, width: int = 128) -> np.ndarray:
    height = round(image.shape[0] * width / image.shape[1])
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def save(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image.astype(np.uint8) * 255 if image.dtype == bool else image).save(path)


def write_benchmark_folder(folder: Path) -> Path:
    """Three samples from scikit-image photos; `cat` has an explicit ground truth, all have prompts."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = {"cat": (data.chelsea(), data.coffee(), "a cat"), "cup": (data.coffee(), data.chelsea(), "a cup of coffee"),
              "astronaut": (data.astronaut(), data.rocket(), "an astronaut")}
    for sample_id, (source, reference, prompt) in photos.items():
        source, reference = small(source), small(reference)
        height, width = source.shape[:2]
        save(source, folder / f"{sample_id}_source.png")
        save(ellipse_mask(height, width, (height / 2, width / 2), (height / 4, width / 4)),
             folder / f"{sample_id}_source_mask.png")
        save(reference, folder / f"{sample_id}_reference.png")
        save(ellipse_mask(*reference.shape[:2], (reference.shape[0] / 2, reference.shape[1] / 2), (20, 30)),
             folder / f"{sample_id}_reference_mask.png")
        (folder / f"{sample_id}_prompt.txt").write_text(prompt + "\n")
    save(small(data.chelsea())[::-1].copy(), folder / "cat_gt.png")
    return folder


@pytest.fixture
def benchmark_dir(tmp_path) -> Path:
    return write_benchmark_folder(tmp_path / "bench")


class MeanColourEditor:
    """Paints the mask with the reference's mean colour; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, source, reference, mask, *, keep_shape, seed):
        self.calls += 1
        result = source.copy()
        result[mask] = reference.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
        return result


class CopyReferenceEditor:
    """Copies the reference (resized to the source) into the mask: a perfect imitator."""

    def __call__(self, source, reference, mask, *, keep_shape, seed):
        resized = np.asarray(Image.fromarray(reference).resize(source.shape[1::-1], Image.Resampling.BILINEAR))
        return np.where(mask[..., None], resized, source)


@pytest.fixture
def mean_colour_editor() -> MeanColourEditor:
    return MeanColourEditor()


@pytest.fixture
def copy_reference_editor() -> CopyReferenceEditor:
    return CopyReferenceEditor()
