from mimicbrush_cli.benchmark.throughput import Spread, measure_throughput


def test_spread_is_the_median_and_range_of_the_repeats():
    assert Spread.of([9, 5, 8, 6]) == Spread(7.0, 5.0, 9.0)
    assert Spread(1234.4, 1000.0, 1500.6).format() == "1,234 (1,000–1,501)"


def test_throughput_measures_prepare_against_plain_decode_repeatedly_and_training(tmp_path):
    figures = measure_throughput(tmp_path, frames_per_video=16, training_steps=2, training_batch_size=2, repeats=3)
    assert figures.videos == 6 and figures.frames == 6 * 16 and figures.repeats == 3
    for spread in (figures.prepare_frames_per_s, figures.raw_decode_frames_per_s, figures.wall_ratio,
                   figures.cpu_ratio):
        assert 0 < spread.low <= spread.median <= spread.high
    assert list(figures.stage_seconds) == ["decode", "ssim", "write"]
    assert figures.training_steps_per_s > 0
    table = figures.to_markdown()
    assert "run in turn 3 times" in table and "plain PyAV decode" in table and "steps/s" in table
