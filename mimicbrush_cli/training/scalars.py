"""Scalar logs of a run: a CSV file (always readable, no dependency) or TensorBoard event files."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import MimicBrushError

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
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resumed_step]
        self._file = self.path.open("w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._csv.writeheader()
        self._csv.writerows(rows)
        self._file.flush()

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


def read_scalars(path: Path) -> list[dict[str, float]]:
    with Path(path).open(newline="") as handle:
        return [{key: float(value) for key, value in row.items() if value != ""} for row in csv.DictReader(handle)]
