import json

import numpy as np
import pytest
from PIL import Image

from mimicbrush_cli.benchmark.backbones import MetricModels
from mimicbrush_cli.benchmark.runner import BenchmarkSettings, run_benchmark
from mimicbrush_cli.errors import MimicBrushError


def run(benchmark_dir, output, editor, metric_models_dir, split="inner", seed=0):
    settings = BenchmarkSettings(task="part", split=split, seed=seed, long_side=96)
    return run_benchmark(benchmark_dir, output, settings, editor,
                         metric_models=MetricModels.from_folder(metric_models_dir, device="cpu"),
                         editor_info={"editor": "mean colour"})


def test_inner_run_writes_scores_grids_and_markdown(benchmark_dir, tmp_path, mean_colour_editor, metric_models_dir):
    results = run(benchmark_dir, tmp_path / "out", mean_colour_editor, metric_models_dir)
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["count"] == 3 and stored["broken_count"] == 0
    assert set(stored["means"]) >= {"ssim", "psnr", "lpips"}
    assert 0 < stored["samples"]["cup"]["scores"]["ssim"] < 1
    assert results.means["lpips"] > 0
    grid = Image.open(tmp_path / "out" / "grids" / "cat.png")
    assert grid.height > 96 and grid.width > 4 * 96  # five panels: source, mask, reference, result, ground truth
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "MimicBrush (paper) | 0.70 | 17.54 | 0.28" in markdown and "**this run**" in markdown


def test_inter_run_scores_dino_clip_and_clip_t(tmp_path, metric_models_dir):
    """A result whose masked object is the reference's own (same image, same mask) scores DINO-I = CLIP-I = 100;
    CLIP-T is CLIP's own image-text similarity of the whole result, ×100."""
    import torch
    from skimage import data
    from transformers import CLIPModel, CLIPProcessor

    folder = tmp_path / "bench"
    folder.mkdir()
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((96, 96)))  # square: no padding before CLIP
    yy, xx = np.mgrid[:96, :96]
    mask = Image.fromarray(((((yy - 48) / 30) ** 2 + ((xx - 48) / 20) ** 2 < 1) * 255).astype(np.uint8))
    for name, image in (("source", Image.fromarray(photo)), ("source_mask", mask), ("reference", Image.fromarray(photo)),
                        ("reference_mask", mask)):
        image.save(folder / f"twin_{name}.png")
    (folder / "twin_prompt.txt").write_text("an astronaut\n")

    def unchanged(source, reference, mask, *, keep_shape, seed):
        return source.copy()

    scores = run(folder, tmp_path / "out", unchanged, metric_models_dir, split="inter").samples["twin"]["scores"]
    assert set(scores) == {"dino_i", "clip_i", "clip_t"}
    assert scores["dino_i"] == pytest.approx(100, abs=1e-4) and scores["clip_i"] == pytest.approx(100, abs=1e-4)
    clip = CLIPModel.from_pretrained(metric_models_dir / "clip").eval()
    inputs = CLIPProcessor.from_pretrained(metric_models_dir / "clip")(text=["an astronaut"], images=[photo],
                                                                        return_tensors="pt")
    with torch.no_grad():
        output = clip(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                      pixel_values=inputs["pixel_values"])
        expected = 100 * float(output.logits_per_image[0, 0] / clip.logit_scale.exp())
    assert scores["clip_t"] == pytest.approx(expected, abs=1e-3)


def test_rerun_skips_finished_samples(benchmark_dir, tmp_path, mean_colour_editor, metric_models_dir):
    run(benchmark_dir, tmp_path / "out", mean_colour_editor, metric_models_dir)
    assert mean_colour_editor.calls == 3
    (tmp_path / "out" / "samples" / "cup.json").unlink()  # as if interrupted before cup finished
    results = run(benchmark_dir, tmp_path / "out", mean_colour_editor, metric_models_dir)
    assert mean_colour_editor.calls == 4
    assert (results.edited, results.resumed) == (1, 2)


def test_broken_samples_are_reported_and_skipped(benchmark_dir, tmp_path, mean_colour_editor, metric_models_dir):
    (benchmark_dir / "cup_reference.png").unlink()
    Image.new("L", (10, 10), 255).save(benchmark_dir / "astronaut_source_mask.png")
    results = run(benchmark_dir, tmp_path / "out", mean_colour_editor, metric_models_dir)
    assert sorted(results.broken) == ["astronaut", "cup"] and list(results.samples) == ["cat"]
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["broken_count"] == 2 and "missing cup_reference" in stored["broken"]["cup"]
    assert "Skipped 2 broken sample(s)" in (tmp_path / "out" / "results.md").read_text()


def test_resuming_with_other_settings_is_refused(benchmark_dir, tmp_path, mean_colour_editor, metric_models_dir):
    run(benchmark_dir, tmp_path / "out", mean_colour_editor, metric_models_dir)
    with pytest.raises(MimicBrushError, match="other settings"):
        run(benchmark_dir, tmp_path / "out", mean_colour_editor, metric_models_dir, seed=1)
