from dataclasses import replace

from mimicbrush_cli.benchmark.throughput import WORKLOADS, Spread, measure_throughput


def test_spread_is_the_median_and_range_of_the_repeats():
    assert Spread.of([9, 5, 8, 6]) == Spread(7.0, 5.0, 9.0)
    assert Spread(1234.4, 1000.0, 1500.6).format() == "1,234 (1,000–1,501)"


def test_throughput_measures_prepare_against_plain_decode_repeatedly_for_each_workload_and_training(tmp_path):
    small = [replace(workload, size=(160, 120), frames_per_video=16) for workload in WORKLOADS]
    figures = measure_throughput(tmp_path, tuple(small), training_steps=2, training_batch_size=2, repeats=3)
    assert [workload.workload for workload in figures.prepare] == [workload.name for workload in WORKLOADS]
    for workload in figures.prepare:
        assert workload.videos == 6 and workload.frames == 6 * 16
        for spread in (workload.prepare_frames_per_s, workload.raw_decode_frames_per_s, workload.wall_ratio,
                       workload.cpu_ratio):
            assert 0 < spread.low <= spread.median <= spread.high
        assert list(workload.stage_seconds) == ["decode", "ssim", "write"]
    assert figures.repeats == 3 and figures.training_steps_per_s > 0
    table = figures.to_markdown()
    assert "run in turn 3 times" in table and "plain PyAV decode" in table and "steps/s" in table
    assert all(workload.name in table for workload in WORKLOADS)
