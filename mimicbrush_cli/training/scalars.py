"""Scalar logs of a run: a CSV file (always readable, no dependency) or TensorBoard event files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import MimicBrushError
from ..outputs import write_text_atomically

COLUMNS = ("step", "loss", "lr", "grad_norm", "steps_per_second")


class ScalarLog:
    """Appends one row per logged step. Reopening a run's log after a resume first drops the rows
    past the resumed step, so the file always describes one uninterrupted history."""

    def __init__(self, folder: Path, kind: str = "csv", resumed_step: int = 0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self._writer = None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MimicBrushError("logger: tensorboard needs the tensorboard package "
                                      "(pip install tensorboard), or use logger: csv") from None
            self._writer = SummaryWriter(str(folder / "tensorboard"), purge_step=resumed_step + 1)
            return
        self.path = folder / "scalars.csv"
        rows = []
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if _complete_row(row, resumed_step)]
        # The history up to the resumed step is written whole and renamed over the old log (a kill while it is
        # written leaves the old log), then appended to.
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomically(self.path, text.getvalue())
        self._file = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)

    def log(self, step: int, **scalars: float) -> None:
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(f"train/{name}", value, step)
            return
        self._csv.writerow({"step": step, **{name: scalars.get(name, "") for name in COLUMNS[1:]}})
        self._file.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            self._file.close()


def _complete_row(row: dict, resumed_step: int) -> bool:
    """A row of a step up to `resumed_step` with every column: not one cut short by a kill while it was
    written (the last row of a killed run may be "1" of "12,0.5,...")."""
    if None in row or any(row.get(column) is None for column in COLUMNS):
        return False
    try:
        return int(row["step"]) <= resumed_step
    except ValueError:
        return False


def read_scalars(path: Path) -> list[dict[str, float]]:
    with Path(path).open(newline="") as handle:
        return [{key: float(value) for key, value in row.items() if value != ""} for row in csv.DictReader(handle)]
