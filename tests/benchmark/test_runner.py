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


def without_lpips_weights(tmp_path, monkeypatch):
    """Offline, with empty caches: LPIPS (torch hub cache) and the Hub's DINOv2 and CLIP are all absent."""
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    monkeypatch.setattr("mimicbrush_cli.benchmark.lpips._installed_lpips_heads", lambda: None)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_inner_run_without_lpips_weights_scores_ssim_and_psnr_and_marks_lpips_not_measured(
        benchmark_dir, tmp_path, mean_colour_editor, monkeypatch):
    without_lpips_weights(tmp_path, monkeypatch)
    settings = BenchmarkSettings(task="part", split="inner", long_side=96)
    results = run_benchmark(benchmark_dir, tmp_path / "out", settings, mean_colour_editor,
                            metric_models=MetricModels(device="cpu"))
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["count"] == 3 and mean_colour_editor.calls == 3
    assert set(stored["samples"]["cat"]["scores"]) == {"ssim", "psnr"}
    assert stored["means"]["lpips"] is None and results.means["ssim"] is not None
    assert list(stored["not_measured"]) == ["lpips"]
    assert "download.pytorch.org" in stored["not_measured"]["lpips"]
    this_run = next(line for line in (tmp_path / "out" / "results.md").read_text().splitlines() if "this run" in line)
    assert this_run.split(" | ")[3] == "not measured"  # method, SSIM, PSNR, LPIPS


def test_inter_run_without_any_network_is_refused_before_editing(benchmark_dir, tmp_path, mean_colour_editor,
                                                                 monkeypatch):
    without_lpips_weights(tmp_path, monkeypatch)
    settings = BenchmarkSettings(task="part", split="inter", long_side=96)
    with pytest.raises(MimicBrushError, match="no inter-ID metric can be measured: DINO-I"):
        run_benchmark(benchmark_dir, tmp_path / "out", settings, mean_colour_editor,
                      metric_models=MetricModels(device="cpu"))
    assert mean_colour_editor.calls == 0


def test_scores_from_networks_other_than_the_papers_are_marked_beside_its_rows(benchmark_dir, tmp_path,
                                                                               mean_colour_editor, metric_models_dir):
    results = run(benchmark_dir, tmp_path / "out", mean_colour_editor, metric_models_dir)
    markdown = (tmp_path / "out" / "results.md").read_text()
    this_run = next(line for line in markdown.splitlines() if "this run" in line).split(" | ")
    assert this_run[1:3] == [f"{results.means['ssim']:.3f}", f"{results.means['psnr']:.2f}"]
    assert this_run[3] == f"{results.means['lpips']:.3f}*"
    assert f"* measured with networks from {metric_models_dir}" in markdown


def test_the_reference_hint_run_gives_each_sample_its_reference_mask_and_is_recorded(benchmark_dir, tmp_path,
                                                                                    metric_models_dir):
    from mimicbrush_cli.imaging import load_image, load_mask

    received = {}

    def hinted_editor(source, reference, mask, *, keep_shape, seed, reference_region):
        received[reference.tobytes()] = reference_region
        result = source.copy()
        result[mask] = reference[reference_region].mean(axis=0).round().astype(np.uint8)
        return result

    settings = BenchmarkSettings(task="part", split="inner", long_side=0, reference_hint=True)
    models = MetricModels.from_folder(metric_models_dir, device="cpu")
    results = run_benchmark(benchmark_dir, tmp_path / "out", settings, hinted_editor, metric_models=models)
    assert len(results.samples) == 3 and len(received) == 3
    truth = load_mask(benchmark_dir / "cup_reference_mask.png")
    np.testing.assert_array_equal(received[load_image(benchmark_dir / "cup_reference.png").tobytes()], truth)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["benchmark"]["reference_hint"] is True
    assert json.loads((tmp_path / "out" / "results.json").read_text())["settings"]["reference_hint"] is True
    with pytest.raises(MimicBrushError, match="other settings"):  # a run without the hint does not resume it
        run_benchmark(benchmark_dir, tmp_path / "out", BenchmarkSettings(task="part", split="inner", long_side=0),
                      hinted_editor, metric_models=models)
    # Without the hint the record is as before the hint existed, so that earlier runs still resume.
    assert "reference_hint" not in BenchmarkSettings().record
