"""Reports: JSON-safe values and means, the markdown table beside the paper's, grids, a rich table.

PSNR of identical crops is infinite and JSON has no infinity: a sample stores `"psnr": null` with
`"psnr_infinite": true`; means are taken over the finite values only, and the number of infinite
ones is reported next to them (`psnr_infinite` in `means`), so a perfect sample never turns the
mean into infinity nor silently lowers it to a cap.

Beside the paper's rows, a metric whose network's weights were absent reads "not measured", and one
measured with other networks than the paper's (a `--metrics-models` folder) is marked with `*` and a note.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from rich.table import Table

from ..outputs import write_bytes_atomically

COLUMNS = (("ssim", "SSIM ↑", 3), ("psnr", "PSNR ↑", 2), ("lpips", "LPIPS ↓", 3),
           ("dino_i", "DINO-I ↑", 2), ("clip_i", "CLIP-I ↑", 2), ("clip_t", "CLIP-T ↑", 2))

# REFERENCE.md §6: the paper's Table 1 (part composition) and its texture-transfer numbers.
PAPER_ROWS: dict[str, list[tuple[str, dict[str, float]]]] = {
    "part": [
        ("Paint-by-Example w/ box", dict(ssim=0.51, psnr=16.09, lpips=0.48, dino_i=42.70, clip_i=81.10, clip_t=29.30)),
        ("AnyDoor w/ mask", dict(ssim=0.44, psnr=14.09, lpips=0.50, dino_i=61.30, clip_i=86.08, clip_t=29.39)),
        ("MimicBrush", dict(ssim=0.70, psnr=17.54, lpips=0.28, dino_i=56.48, clip_i=84.30, clip_t=30.08)),
    ],
    "texture": [
        ("MimicBrush", dict(ssim=0.75, psnr=17.73, lpips=0.26, dino_i=49.83, clip_i=79.44)),
    ],
}
NOT_MEASURED = "not measured"
STAND_IN_MARK = "*"
PAPER_NETWORKS = "facebook/dinov2-base, openai/clip-vit-large-patch14, LPIPS AlexNet v0.1"
TASK_TITLES = {"part": "part composition", "texture": "texture transfer", "recon": "reference reconstruction"}
SPLIT_TITLES = {"inner": "inner-ID", "inter": "inter-ID"}


def json_scores(scores: Mapping[str, float | None]) -> dict[str, Any]:
    """Scores as JSON values: infinities become null plus a `<name>_infinite: true` flag."""
    stored: dict[str, Any] = {}
    for name, value in scores.items():
        if value is not None and math.isinf(value):
            stored[name], stored[f"{name}_infinite"] = None, True
        else:
            stored[name] = value
    return stored


def mean_scores(records: Iterable[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Mean of each score over the samples that have a finite value; counts of infinite values."""
    records = list(records)
    means: dict[str, Any] = {}
    for name in names:
        values = [record[name] for record in records if record.get(name) is not None]
        means[name] = float(np.mean(values)) if values else None
        infinite = sum(1 for record in records if record.get(f"{name}_infinite"))
        if infinite:
            means[f"{name}_infinite"] = infinite
    return means


def write_json(path: Path, data: Any) -> None:
    write_bytes_atomically(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8"))


def _cell(value: float | str | None, digits: int) -> str:
    if isinstance(value, str):
        return value
    return "–" if value is None else f"{value:.{digits}f}"


def run_cells(means: Mapping[str, Any], not_measured: Iterable[str] = (),
              stand_ins: Iterable[str] = ()) -> dict[str, Any]:
    """This run's means as they stand beside the paper's rows: "not measured" where the network was absent,
    the value with `STAND_IN_MARK` where it was measured with another network than the paper's."""
    cells = dict(means)
    not_measured, stand_ins = set(not_measured), set(stand_ins)
    for key, _, digits in COLUMNS:
        if key in not_measured:
            cells[key] = NOT_MEASURED
        elif key in stand_ins and cells.get(key) is not None:
            cells[key] = f"{cells[key]:.{digits}f}{STAND_IN_MARK}"
    return cells


def measurement_notes(not_measured: Mapping[str, str], stand_ins: Mapping[str, str]) -> list[str]:
    """One line per unmeasured metric (why), and one naming the networks behind marked values."""
    titles = {key: title.split()[0] for key, title, _ in COLUMNS}
    notes = [f"{NOT_MEASURED}: {titles[key]}: {reason}" for key, reason in not_measured.items()]
    if stand_ins:
        notes.append(f"{STAND_IN_MARK} measured with networks from {', '.join(sorted(set(stand_ins.values())))}, "
                     f"not necessarily the paper's ({PAPER_NETWORKS})")
    return notes


def markdown_report(task: str, split: str, means: Mapping[str, Any], count: int, broken: Mapping[str, str],
                    settings: Mapping[str, Any], not_measured: Mapping[str, str] | None = None,
                    stand_ins: Mapping[str, str] | None = None) -> str:
    """The paper's rows, then this run's means, as a markdown table with a few notes."""
    not_measured, stand_ins = dict(not_measured or {}), dict(stand_ins or {})
    cells = run_cells(means, not_measured, stand_ins)
    header = "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [f"# MimicBrush benchmark: {TASK_TITLES[task]}, {SPLIT_TITLES[split]}", "", header,
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name, values in PAPER_ROWS[task]:
        lines.append(f"| {name} (paper) | " + " | ".join(_cell(values.get(key), 2) for key, _, _ in COLUMNS) + " |")
    lines.append(f"| **this run** ({SPLIT_TITLES[split]}, {count} samples) | "
                 + " | ".join(_cell(cells.get(key), digits) for key, _, digits in COLUMNS) + " |")
    lines += ["", "The paper's SSIM/PSNR/LPIPS are inner-ID scores and DINO-I/CLIP-I/CLIP-T inter-ID scores; "
              "a run fills the columns of its split."]
    notes = measurement_notes(not_measured, stand_ins)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    if means.get("psnr_infinite"):
        lines.append(f"PSNR left {means['psnr_infinite']} identical crop(s) (infinite PSNR) out of its mean.")
    if broken:
        lines += ["", f"Skipped {len(broken)} broken sample(s):", ""]
        lines += [f"- `{sample_id}`: {reason}" for sample_id, reason in sorted(broken.items())]
    lines += ["", "Settings: " + ", ".join(f"{key}={value}" for key, value in settings.items()), ""]
    return "\n".join(lines)


def summarise(values: Iterable[float | None]) -> dict[str, Any]:
    """mean, median, count and (how many are) positive of the finite values; infinities counted apart."""
    values = list(values)
    finite = [value for value in values if value is not None and math.isfinite(value)]
    stats: dict[str, Any] = {"mean": float(np.mean(finite)) if finite else None,
                             "median": float(np.median(finite)) if finite else None,
                             "count": len(finite), "positive": sum(value > 0 for value in finite)}
    missing = len(values) - len(finite)
    if missing:
        stats["not_finite"] = missing
    return stats


RECON_ROWS = (("model", "model"), ("model_hint", "model, reference hint on the true half"),
              ("model_hint_clip", "model, the hint as CLIP's crop only (hint strength 0)"),
              ("attention_off", "same weights, reference attention off"),
              ("mean_fill", "fill with the reference's mean colour"),
              ("homography", "homography warp of the reference (classical)"),
              ("model_mismatched", "model, mismatched reference"),
              ("autoencoder", "no edit: the source through the model's VAE (ceiling)"))
RECON_DIFFERENCES = (("attention_gain", "attention gain (model − attention off)"),
                     ("fill_margin", "margin over mean fill (model − mean fill)"),
                     ("reference_gain", "reference gain (model − mismatched reference)"),
                     ("homography_margin", "model − homography"),
                     ("hint_gain", "hint gain (model with the hint − model without)"),
                     ("hint_clip_gain", "of which CLIP's crop (CLIP crop only − no hint)"),
                     ("hint_attention_gain", "of which attention (the whole hint − CLIP crop only)"),
                     ("hint_fill_margin", "model with the hint − mean fill"),
                     ("against", "model − the `--against` run's model (same pairs and masks)"))
RECON_DIGITS = {"psnr": 2, "ssim": 3, "edge": 3}


def recon_markdown(summary: Mapping[str, Any], count: int, settings: Mapping[str, Any]) -> str:
    """Editors' mean scores, then the differences (mean, median, positive/count), overall and per video."""
    overall = summary["overall"]

    def mean_cell(name: str, metric: str) -> str:
        return _cell(overall[name][metric]["mean"], RECON_DIGITS[metric]) if name in overall else "–"

    def difference_cell(stats: Mapping[str, Any], metric: str) -> str:
        digits = RECON_DIGITS[metric]
        if stats["mean"] is None:
            return "–"
        return f"{stats['mean']:+.{digits}f} (median {stats['median']:+.{digits}f}, {stats['positive']}/{stats['count']} > 0)"

    lines = ["# MimicBrush benchmark: reference reconstruction", "",
             f"{count} held-out pairs; every editor repaints the same masks. Scores inside the mask against the "
             "real frame; `edge` is the correlation of gradient magnitudes (0 for a flat fill).", "",
             "| editor | masked PSNR ↑ | masked SSIM ↑ | edge ↑ |", "|---|---|---|---|"]
    for name, title in RECON_ROWS:
        if name in overall:
            lines.append(f"| {title} | " + " | ".join(mean_cell(name, metric) for metric in ("psnr", "ssim", "edge")) + " |")
    lines += ["", "| difference | masked PSNR | masked SSIM | edge |", "|---|---|---|---|"]
    for name, title in RECON_DIFFERENCES:
        if name in overall:
            lines.append(f"| {title} | " + " | ".join(difference_cell(overall[name][metric], metric)
                                                     for metric in ("psnr", "ssim", "edge")) + " |")
    lines += ["", "## Per video (mean masked PSNR; differences in dB)", "",
              "| video | pairs | model | attention off | mean fill | homography | attention gain | margin over fill |",
              "|---|---|---|---|---|---|---|---|"]
    for video, table in summary["videos"].items():
        def cell(name: str, signed: bool = False) -> str:
            value = table.get(name, {}).get("psnr", {}).get("mean")
            return "–" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")
        lines.append(f"| {video} | {table['model']['psnr']['count']} | {cell('model')} | {cell('attention_off')} | "
                     f"{cell('mean_fill')} | {cell('homography')} | {cell('attention_gain', True)} | "
                     f"{cell('fill_margin', True)} |")
    lines += ["", "Settings: " + ", ".join(f"{key}={value}" for key, value in settings.items()), ""]
    return "\n".join(lines)


def _panel(image: np.ndarray, height: int) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat((image.astype(np.uint8) * 255 if image.dtype == bool else image)[..., None], 3, axis=2)
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def grid_image(panels: Sequence[tuple[str, np.ndarray]], height: int = 256, gap: int = 4, label_height: int = 16) -> np.ndarray:
    """Images (RGB or bool masks) side by side at one height, each with its label above it."""
    resized = [(label, _panel(image, height)) for label, image in panels]
    width = sum(image.shape[1] for _, image in resized) + gap * (len(resized) - 1)
    canvas = Image.new("RGB", (width, height + label_height), (255, 255, 255))
    draw, left = ImageDraw.Draw(canvas), 0
    for label, image in resized:
        canvas.paste(Image.fromarray(image), (left, label_height))
        draw.text((left + 2, 2), label, fill=(0, 0, 0))
        left += image.shape[1] + gap
    return np.asarray(canvas)


def results_table(title: str, rows: Sequence[tuple[str, Mapping[str, Any]]],
                  columns: Sequence[tuple[str, str, int]] = COLUMNS) -> Table:
    """A rich table: one row per (name, scores), one column per score that any row has."""
    shown = [column for column in columns if any(scores.get(column[0]) is not None for _, scores in rows)]
    table = Table(title=title)
    table.add_column("method")
    for _, heading, _ in shown:
        table.add_column(heading, justify="right", no_wrap=True)
    for name, scores in rows:
        table.add_row(name, *(_cell(scores.get(key), digits) for key, _, digits in shown))
    return table
