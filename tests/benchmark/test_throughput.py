from mimicbrush_cli.benchmark.throughput import measure_throughput


def test_throughput_measures_prepare_decode_and_training(tmp_path):
    figures = measure_throughput(tmp_path, frames_per_video=16, training_steps=2, training_batch_size=2)
    assert figures.videos == 6
    assert figures.prepare_frames_per_s > 0 and figures.raw_decode_frames_per_s > 0
    assert set(figures.stage_seconds) >= {"decode", "ssim", "write"}
    assert figures.training_steps_per_s > 0
    table = figures.to_markdown()
    assert "plain PyAV decode" in table and "steps/s" in table
