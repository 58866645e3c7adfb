"""`mimicbrush benchmark texture|part|recon`: the paper's evaluation and the reference-reconstruction check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..benchmark.recon import ReconSettings
from ..benchmark.report import (PAPER_ROWS, RECON_DIFFERENCES, RECON_ROWS, SPLIT_TITLES, TASK_TITLES, measurement_notes,
                                results_table, run_cells)
from ..benchmark.runner import BenchmarkSettings
from ..errors import MimicBrushError
from ..outputs import check_folder_output_path
from ..settings import MAX_SEED
from .app import app, quiet_libraries
from .options import ChosenSettings, Device, DType, Model, Weights, dtype_name, edit_setting_options

benchmark_app = typer.Typer(help="Score a model: the paper's benchmarks (texture, part) and a reconstruction check.",
                            no_args_is_help=True)
app.add_typer(benchmark_app, name="benchmark")
console = Console(stderr=True)


class Split(str, Enum):
    inter = "inter"
    inner = "inner"


Output = Annotated[Path | None, typer.Option("-o", "--output", help="Results folder (default: "
                                             "benchmark_results/<task>-<split>); re-running resumes it.")]
Seed = Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Edit seed, the same for every sample.")]
LongSide = Annotated[int, typer.Option("--long-side", min=0, help="Resize every input's long side to this before "
                                       "editing and scoring (0: keep; 512: the released benchmark runner).")]
DeviceOption = Annotated[Device, typer.Option(help="Where to run the model and the metric networks.")]
DTypeOption = Annotated[DType, typer.Option(help="Model precision (auto: fp16 on GPU, fp32 on CPU).")]
MetricsModels = Annotated[Path | None, typer.Option("--metrics-models", help="Folder with dinov2/, clip/ and lpips/ "
                                                   "(default: facebook/dinov2-base and openai/clip-vit-large-patch14 "
                                                   "from the Hugging Face cache or Hub, LPIPS from the torch hub cache).")]


# The benchmark's own: one result per sample, its seed, and keep-shape by task.
BENCHMARK_EXCLUDES = ("keep_shape", "seed", "num_samples")


def _editor(weights: Path | None, model: str | None, device: Device, dtype: DType, chosen: ChosenSettings):
    """The model at its own edit settings with the options given over them; settings this model cannot take are
    refused before a results folder is written."""
    from ..benchmark.editors import ModelSpec, PipelineEditor

    spec = ModelSpec(weights=None if weights is None else str(weights), model=model, device=device.value,
                     dtype=dtype_name(dtype))
    editor = PipelineEditor(spec, chosen.resolve(spec.edit_defaults()))
    if editor.settings.reference_locality is not None or editor.settings.reference_timestep is not None:
        editor.pipeline.check_model_settings(editor.settings)
    return editor


@contextmanager
def progress_reporter(description: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress callback (done, total, what): a bar on a terminal, a line per call otherwise (a log file or
    a pipe would see nothing from a bar until the end)."""
    if not console.is_terminal:
        yield lambda done, total, what: console.print(f"{description} {done}/{total} {what}",
                                                           highlight=False, soft_wrap=True)
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        bar = progress.add_task(description, total=None)
        yield lambda done, total, what: progress.update(bar, completed=done, total=total,
                                                        description=f"{description} {what}".strip())


def _run_task(task: str, data_dir: Path, split: Split, output: Path, seed: int, long_side: int, editor,
              device: Device, metrics_models: Path | None, reference_hint: bool = False) -> None:
    from ..benchmark.backbones import MetricModels
    from ..benchmark.runner import run_benchmark

    quiet_libraries()
    settings = BenchmarkSettings(task=task, split=split.value, seed=seed, long_side=long_side,
                                 reference_hint=reference_hint)
    sources = (MetricModels.from_folder(metrics_models, device=device.value) if metrics_models
               else MetricModels(device=device.value))
    with progress_reporter(f"{task} {split.value}") as report:
        results = run_benchmark(data_dir, output, settings, editor, metric_models=sources, editor_info=editor.record,
                                progress=report)
    rows = [(f"{name} (paper)", values) for name, values in PAPER_ROWS[task]]
    rows.append((f"this run ({len(results.samples)} samples)",
                 run_cells(results.means, results.not_measured, results.stand_ins)))
    Console().print(results_table(f"{TASK_TITLES[task]}, {SPLIT_TITLES[split.value]}", rows))
    for note in measurement_notes(results.not_measured, results.stand_ins):
        console.print(note, highlight=False, markup=False, soft_wrap=True)
    for sample_id, reason in sorted(results.broken.items()):
        console.print(f"[yellow]skipped[/] {sample_id}: {reason}")
    console.print(f"edited {results.edited}, resumed {results.resumed}, broken {len(results.broken)}; "
                  f"[green]wrote[/] {results.files['results']} and {results.files['markdown']}")
    if not results.samples:
        raise MimicBrushError(f"no sample was scored: all {len(results.broken)} were skipped "
                              f"(see {results.files['markdown']})")


def _task_command(task: str, keep_shape_note: str):
    def command(
        data_dir: Annotated[Path, typer.Argument(help="Folder of <id>_source.png, <id>_source_mask.png, "
                                                 "<id>_reference.png, <id>_reference_mask.png [, <id>_gt.png, "
                                                 "<id>_prompt.txt].")],
        split: Annotated[Split, typer.Option(help="inner: SSIM/PSNR/LPIPS against the ground truth; "
                                             "inter: DINO-I/CLIP-I/CLIP-T.")] = Split.inter,
        output: Output = None, seed: Seed = BenchmarkSettings.seed, long_side: LongSide = BenchmarkSettings.long_side,
        weights: Weights = None, model: Model = None, chosen: ChosenSettings = None,
        device: DeviceOption = Device.auto, dtype: DTypeOption = DType.auto,
        metrics_models: MetricsModels = None,
        reference_hint: Annotated[bool, typer.Option(
            "--reference-hint", help="Edit with each sample's <id>_reference_mask.png as the reference hint (as "
            "`edit --reference-mask`); a sample without one is skipped.")] = False,
    ) -> None:
        output = output or Path("benchmark_results") / f"{task}-{split.value}"
        check_folder_output_path(output)  # before the model loads
        editor = _editor(weights, model, device, dtype, chosen)
        _run_task(task, data_dir, split, output, seed, long_side, editor, device, metrics_models, reference_hint)

    command.__doc__ = (f"The paper's {TASK_TITLES[task]} benchmark ({keep_shape_note}), at the model's own edit "
                       "settings with the options given over them. Re-running resumes.")
    return edit_setting_options(exclude=BENCHMARK_EXCLUDES)(command)


benchmark_app.command("texture")(_task_command("texture", "edits with --keep-shape"))
benchmark_app.command("part")(_task_command("part", "edits without --keep-shape"))


@benchmark_app.command("recon")
@edit_setting_options(exclude=BENCHMARK_EXCLUDES)
def recon_command(
    shards: Annotated[list[Path], typer.Argument(help="Held-out data folders written by `mimicbrush prepare` "
                                                 "(their video pairs are used).")],
    output: Output = None, seed: Seed = ReconSettings.seed, long_side: LongSide = ReconSettings.long_side,
    box_fraction: Annotated[float, typer.Option(min=0.05, max=1.0, help="Masked box side / image side.")] = ReconSettings.box_fraction,
    weights: Weights = None, model: Model = None, chosen: ChosenSettings = None,
    device: DeviceOption = Device.auto, dtype: DTypeOption = DType.auto,
    against: Annotated[Path | None, typer.Option(
        help="Folder of an earlier recon run on the same pairs and masks (e.g. the exact 50-step edit): also "
             "score this run's model against that run's, pair by pair.")] = None,
    distractor: Annotated[bool, typer.Option(
        "--distractor", help="Set each reference beside a mismatched one (the same height) and edit with it, "
             "without and with a reference hint on the true half, and with that hint as CLIP's crop only.")] = False,
) -> None:
    """Mask each held-out source and repaint it with the model, the model without reference attention, a
    mean-colour fill, a homography warp and the model with a mismatched reference; compare them."""
    from ..benchmark.recon import load_against, load_video_pairs, run_recon

    pairs = list(load_video_pairs(shards))  # read (and checked) before the model loads
    quiet_libraries()
    settings = ReconSettings(seed=seed, box_fraction=box_fraction, long_side=long_side)
    earlier = load_against(against, settings) if against is not None else None
    output = output or Path("benchmark_results") / "recon"
    check_folder_output_path(output)  # before the model loads
    editor = _editor(weights, model, device, dtype, chosen)
    with progress_reporter("recon") as report:
        results = run_recon(pairs, output, editor, settings, editor_info=editor.record,
                            progress=report, attention_off=editor.with_reference_attention_off(),
                            autoencoder=editor.autoencode, against=earlier, distractor=distractor,
                            clip_only_hint=editor.varied(reference_hint_strength=0.0) if distractor else None)
    overall = results.summary["overall"]
    columns = [("psnr", "masked PSNR ↑", 2), ("ssim", "masked SSIM ↑", 3), ("edge", "edge ↑", 3)]
    rows = [(title, {metric: overall[name][metric]["mean"] for metric in ("psnr", "ssim", "edge")})
            for name, title in RECON_ROWS + RECON_DIFFERENCES if name in overall]
    Console().print(results_table(f"reference reconstruction ({len(results.samples)} pairs)", rows, columns))
    console.print(f"[green]wrote[/] {results.files['results']}, {results.files['markdown']} and {results.files['overview']}")
