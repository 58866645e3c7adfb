"""The GPU check's whole logic, run on the CPU with the tiny size and tiny random weights in the released layout."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mimicbrush_cli.benchmark import gpu_check
from mimicbrush_cli.benchmark.gpu_check import NEEDS_CUDA, compare_weights, run_gpu_check
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.models.checkpoints import released_layout

ROOT = Path(__file__).resolve().parents[2]
STEPS = 2

CHECKS = [
    "released layout written and loaded",
    'fp32 cpu vs fp32 cpu, noise drawn on the CPU (generator_device="cpu", the default)',
    'fp32 cpu vs fp32 cpu, noise drawn on cpu (generator_device="device")',
    'generator_device="device" vs "cpu", fp32 cpu edit',
    "s/step, released reference schedule (reference U-Net every step, batch 2)",
    "s/step, ours (the default)",
    "s/step, --fast (dpmpp-2m, 6 steps, reference cache)",
    "peak VRAM (GiB), the default",
    "peak VRAM (GiB), --cpu-offload",
    "--compile, first call (s)",
    "--compile, s/step once compiled",
]
NEEDS_CUDA_ON_CPU = CHECKS[7:]
TIMED = CHECKS[4:7]


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    progress: list[str] = []
    workdir = tmp_path_factory.mktemp("gpu_check")
    report = run_gpu_check("cpu", "tiny", steps=STEPS, workdir=workdir, progress=progress.append)
    return report, progress


def table_rows(markdown: str) -> list[list[str]]:
    """The table's body rows, as cells (an escaped `\\|` stays inside its cell)."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_the_table_has_every_row_in_order_with_three_cells(checked):
    report, _ = checked
    assert [row.check for row in report.rows] == CHECKS
    rows = table_rows(report.to_markdown())
    assert [cells for cells in rows] == [[row.check, row.result, row.detail] for row in report.rows]
    assert all(len(cells) == 3 and cells[1] for cells in rows)


def test_exactly_the_vram_and_compile_rows_need_cuda_on_cpu(checked):
    report, _ = checked
    assert [row.check for row in report.rows if row.result == NEEDS_CUDA] == NEEDS_CUDA_ON_CPU
    assert "needs a GPU" in report.row("peak VRAM (GiB), --cpu-offload").detail  # measure() was asked, and refused


def test_fp32_against_fp32_on_the_same_device_is_identical(checked):
    report, _ = checked
    for check in CHECKS[1:3]:
        assert report.row(check).result == "max |Δ| 0 px, PSNR inf (identical)"
    generator = report.row('generator_device="device"')
    assert generator.result.startswith("identical: max |Δ| 0 px")
    assert "UNEXPECTED" not in generator.detail and "finite" not in generator.detail


def test_timed_rows_are_finite_and_positive_and_ran_on_the_loaded_weights(checked):
    report, _ = checked
    for check in TIMED:
        seconds = float(report.row(check).result)
        assert math.isfinite(seconds) and seconds > 0
    # released, ours and --fast timed copies of the weights loaded from the released layout (offload is refused
    # on a CPU before it builds anything)
    assert report.measured_on_loaded_weights == 3


def test_the_released_layout_folder_was_written_and_loaded(checked):
    report, _ = checked
    layout = released_layout(report.weights_folder)  # every file the released layout needs is there
    assert all(path.stat().st_size > 0 for path in layout.required_files())
    assert not (report.weights_folder / "model_index.json").exists()
    assert report.tensors_compared > 700 and report.weights_bytes > 0
    assert report.row("released layout written and loaded").result == "yes"
    assert f"{report.tensors_compared} loaded tensors equal" in report.row("released layout").detail


def test_progress_lines_come_as_it_goes(checked):
    _, progress = checked
    assert progress[0].startswith("building random `tiny` weights")
    assert any(line.startswith("parity: fp32 cpu edit fed the noise") for line in progress)
    assert sum(line.startswith("speed: ") for line in progress) == 4
    assert progress[-1].startswith("done in")


def test_a_loaded_tensor_that_differs_from_the_written_one_is_an_error(tiny_pipeline, tiny_released_dir):
    loaded = gpu_check.load_released_weights(tiny_released_dir)
    assert compare_weights(tiny_pipeline, loaded) > 700
    with torch.no_grad():
        loaded.vae.decoder.conv_out.bias[0] += 1e-3
    with pytest.raises(MimicBrushError, match="vae.decoder.conv_out.bias"):
        compare_weights(tiny_pipeline, loaded)


def test_our_own_model_folder_is_not_taken_for_the_released_layout(tiny_model_dir):
    with pytest.raises(MimicBrushError, match="not in the released layout"):
        gpu_check.load_released_weights(tiny_model_dir)


def test_compile_rows_run_their_measurement(tiny_released_dir, checked):
    """The rows a CPU run reports as needing CUDA still run here: with TorchDynamo off, `--compile` is eager."""
    report, _ = checked
    template = gpu_check.load_released_weights(tiny_released_dir)
    eager = gpu_check._timed(template, torch.device("cpu"), "tiny", "ours", STEPS, lambda _: None, [])
    calls: list[int] = []
    with torch._dynamo.config.patch(disable=True):
        rows = gpu_check.compile_rows(template, "cpu", "tiny", eager, calls=calls)
    assert [row.check for row in rows] == NEEDS_CUDA_ON_CPU[2:]
    assert all(float(row.result) > 0 for row in rows)
    assert "8 steps" in rows[0].detail and calls == [1]


def test_the_script_fails_with_one_line_without_cuda(tmp_path):
    out = tmp_path / "gpu_check.md"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["gpu_check: error: --device cuda requested but no CUDA device is available"]
    assert not out.exists()
