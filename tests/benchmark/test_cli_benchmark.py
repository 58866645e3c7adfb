import json
import shutil

import pytest
from typer.testing import CliRunner

from mimicbrush_cli.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.mark.slow
def test_benchmark_part_end_to_end_on_the_tiny_model(benchmark_dir, metric_models_dir, tiny_model_dir, tmp_path):
    arguments = ["benchmark", "part", benchmark_dir, "--split", "inner", "-o", tmp_path / "out", "--weights",
                 tiny_model_dir, "--steps", 1, "--long-side", 96, "--device", "cpu", "--metrics-models",
                 metric_models_dir]
    result = run(*arguments)
    assert result.exit_code == 0, result.output
    assert "MimicBrush" in result.output and "edited 3, resumed 0" in result.output
    assert "part inner 3/3" in result.output  # not a terminal: a progress line per sample
    assert json.loads((tmp_path / "out" / "results.json").read_text())["count"] == 3
    again = run(*arguments)
    assert again.exit_code == 0 and "edited 0, resumed 3" in again.output


def test_benchmark_without_metric_weights_offline_is_one_line_error(benchmark_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    result = run("benchmark", "part", benchmark_dir, "--split", "inter", "-o", tmp_path / "out",
                 "--model", "random-tiny")
    assert result.exit_code == 2
    assert "--metrics-models" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_benchmark_recon_end_to_end_scores_every_editor(tiny_model_dir, tmp_path):
    import numpy as np
    from skimage import data

    from mimicbrush_cli.data.shards import SHARDS_FOLDER, ShardWriter, encode_jpeg

    (tmp_path / "prepared" / SHARDS_FOLDER).mkdir(parents=True)
    writer = ShardWriter(tmp_path / "prepared" / SHARDS_FOLDER, "video-test")
    for name, photo in (("cat", data.chelsea()), ("cup", data.coffee()), ("rocket", data.rocket())):
        writer.add(f"v{name}_000", {"source.jpg": encode_jpeg(photo, 95),
                                    "reference.jpg": encode_jpeg(np.roll(photo, 4, axis=1), 95)},
                   {"kind": "video", "input": f"{name}.mp4"})
    writer.commit({})
    result = run("benchmark", "recon", tmp_path / "prepared", "-o", tmp_path / "out", "--weights", tiny_model_dir,
                 "--steps", 1, "--long-side", 96, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "recon 3/3" in result.output and "attention gain" in result.output
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(stored["summary"]["videos"]) == {"cat.mp4", "cup.mp4", "rocket.mp4"}
    scores = stored["samples"]["vcat_000"]["scores"]
    assert {"model", "attention_off", "mean_fill", "homography", "model_mismatched", "autoencoder"} <= set(scores)
    assert scores["model"] != scores["attention_off"]  # the ablation really switched something off
    # another solver scored pair by pair against this run
    common = ["benchmark", "recon", tmp_path / "prepared", "--weights", tiny_model_dir, "--long-side", 96, "--device", "cpu"]
    compared = run(*common, "-o", tmp_path / "dpm", "--steps", 2, "--scheduler", "dpmpp-2m", "--against", tmp_path / "out")
    assert compared.exit_code == 0, compared.output
    against = json.loads((tmp_path / "dpm" / "results.json").read_text())["summary"]["overall"]["against"]
    assert against["psnr"]["count"] == 3 and against["psnr"]["mean"] != 0
    other_masks = run(*common, "-o", tmp_path / "seed1", "--steps", 1, "--seed", 1, "--against", tmp_path / "out")
    assert other_masks.exit_code == 2 and "other masks" in other_masks.output
    assert "Traceback" not in other_masks.output and not (tmp_path / "seed1").exists()
    assert (tmp_path / "out" / "overview.jpg").is_file()
    assert stored["editor"]["scheduler"] == "ddim"
    # The distractor variant: no hint, the hint, and the hint as CLIP's crop only (strength 0), three edits.
    distractor = run(*common, "-o", tmp_path / "distractor", "--steps", 1, "--distractor")
    assert distractor.exit_code == 0, distractor.output
    assert "of which CLIP's crop" in distractor.output and "of which attention" in distractor.output
    scores = json.loads((tmp_path / "distractor" / "results.json").read_text())["samples"]["vcat_000"]["scores"]
    assert "model_mismatched" not in scores
    assert len({json.dumps(scores[name]) for name in ("model", "model_hint", "model_hint_clip")}) == 3


def test_benchmark_recon_on_a_folder_that_is_not_prepared_data_says_so(benchmark_dir, tmp_path):
    result = run("benchmark", "recon", benchmark_dir, "-o", tmp_path / "out", "--model", "random-tiny")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"error: {benchmark_dir} is not a prepared data folder (it has no shards/ "
                                     "folder); give folders written by `mimicbrush prepare`")


@pytest.mark.slow
def test_benchmark_offline_without_lpips_prints_ssim_psnr_and_lpips_not_measured(benchmark_dir, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    monkeypatch.setattr("mimicbrush_cli.benchmark.lpips._installed_lpips_heads", lambda: None)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    result = run("benchmark", "part", benchmark_dir, "--split", "inner", "-o", tmp_path / "out", "--model",
                 "random-tiny", "--steps", 1, "--long-side", 96, "--device", "cpu")
    assert result.exit_code == 0, result.output
    this_run = next(line for line in result.output.splitlines() if "this run" in line)
    assert this_run.split("│")[4].strip() == "not measured"  # (border), method, SSIM, PSNR, LPIPS
    assert "not measured: LPIPS" in result.output


@pytest.mark.slow
def test_benchmark_where_every_sample_is_skipped_exits_2_after_writing_its_report(benchmark_dir, metric_models_dir,
                                                                                  tmp_path):
    for reference in benchmark_dir.glob("*_reference.png"):
        reference.unlink()
    result = run("benchmark", "part", benchmark_dir, "--split", "inner", "-o", tmp_path / "out", "--model",
                 "random-tiny", "--long-side", 96, "--device", "cpu", "--metrics-models", metric_models_dir)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (f"error: no sample was scored: all 3 were skipped (see "
                                              f"{tmp_path / 'out' / 'results.md'})")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["broken_count"] == 3


@pytest.mark.slow  # benchmark recon end to end
def test_benchmark_recon_fast_runs_the_preset(tiny_model_dir, tmp_path):
    import numpy as np
    from skimage import data

    from mimicbrush_cli.data.shards import SHARDS_FOLDER, ShardWriter, encode_jpeg
    from mimicbrush_cli.settings import FAST_PRESET

    (tmp_path / "prepared" / SHARDS_FOLDER).mkdir(parents=True)
    writer = ShardWriter(tmp_path / "prepared" / SHARDS_FOLDER, "video-test")
    for name, photo in (("cat", data.chelsea()), ("cup", data.coffee())):
        writer.add(f"v{name}_000", {"source.jpg": encode_jpeg(photo, 95),
                                    "reference.jpg": encode_jpeg(np.roll(photo, 4, axis=1), 95)},
                   {"kind": "video", "input": f"{name}.mp4"})
    writer.commit({})
    result = run("benchmark", "recon", tmp_path / "prepared", "-o", tmp_path / "out", "--weights", tiny_model_dir,
                 "--fast", "--long-side", 96, "--device", "cpu")
    assert result.exit_code == 0, result.output
    editor = json.loads((tmp_path / "out" / "results.json").read_text())["editor"]
    assert {key: editor[key] for key in FAST_PRESET} == FAST_PRESET
    assert "reference_locality" not in editor  # as trained: the records of earlier runs still match
    assert "mean_of" not in editor  # a plain sample: likewise
    assert "reference_timestep" not in editor  # the first step's: likewise

    # --reference-timestep: beyond the model's noise schedule refused before any folder is written; recorded
    beyond = run("benchmark", "recon", tmp_path / "prepared", "-o", tmp_path / "beyond", "--weights", tiny_model_dir,
                 "--fast", "--reference-timestep", 1000, "--long-side", 96, "--device", "cpu")
    assert beyond.exit_code == 2 and "at most 999" in beyond.output.splitlines()[-1]
    assert not (tmp_path / "beyond").exists()
    noisiest = run("benchmark", "recon", tmp_path / "prepared", "-o", tmp_path / "noisiest", "--weights",
                   tiny_model_dir, "--fast", "--reference-timestep", 999, "--long-side", 96, "--device", "cpu")
    assert noisiest.exit_code == 0, noisiest.output
    noisiest, first = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("noisiest", "out"))
    assert noisiest["editor"]["reference_timestep"] == 999
    assert all(noisiest["samples"][pair]["scores"]["model"] != first["samples"][pair]["scores"]["model"]
               for pair in first["samples"])

    # --reference-locality: refused for a model without a positional prior, before any folder is written
    refused = run("benchmark", "recon", tmp_path / "prepared", "-o", tmp_path / "refused", "--weights",
                  tiny_model_dir, "--fast", "--reference-locality", 0.05, "--long-side", 96, "--device", "cpu")
    assert refused.exit_code == 2 and "reference attention has none" in refused.output.splitlines()[-1]
    assert not (tmp_path / "refused").exists()
    local = tmp_path / "local_model"
    shutil.copytree(tiny_model_dir, local)
    index = json.loads((local / "model_index.json").read_text())
    (local / "model_index.json").write_text(json.dumps({**index, "reference_positions": "local"}))
    for name, options in (("narrow", []), ("narrow_mean", ["--mean-of", 2])):
        narrowed = run("benchmark", "recon", tmp_path / "prepared", "-o", tmp_path / name, "--weights", local,
                       "--fast", "--reference-locality", 0.05, *options, "--long-side", 96, "--device", "cpu")
        assert narrowed.exit_code == 0, narrowed.output
    plain, mean = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("narrow", "narrow_mean"))
    assert plain["editor"]["reference_locality"] == 0.05 and "mean_of" not in plain["editor"]
    assert mean["editor"]["mean_of"] == 2
    # --mean-of: every model editor of the run averages, the ablations too; the fill and the warp do not change
    for pair in plain["samples"]:
        plain_scores, mean_scores = plain["samples"][pair]["scores"], mean["samples"][pair]["scores"]
        for editor in ("model", "attention_off", "model_mismatched"):
            assert mean_scores[editor] != plain_scores[editor], editor
        for editor in ("mean_fill", "homography", "autoencoder"):
            assert mean_scores[editor] == plain_scores[editor], editor


@pytest.mark.slow
def test_benchmark_speed_reports_progress_in_a_log(tmp_path):
    result = run("benchmark", "speed", "--model-size", "tiny", "--sizes", 64, "--steps", 1, "--repeats", 1,
                 "--threads", 1, "--only", "fast", "--no-throughput", "-o", tmp_path / "speed.md")
    assert result.exit_code == 0, result.output
    # not a terminal: a line as each configuration starts, then the table
    for done, name in enumerate(["released schedule (a)", "ours, default (b)", "--fast"]):
        assert f"speed {done}/3 {name}" in result.output
    assert "speed 3/3 done" in result.output
    assert "| --fast (dpmpp-2m" in (tmp_path / "speed.md").read_text()
