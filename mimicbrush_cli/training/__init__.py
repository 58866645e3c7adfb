"""Self-supervised training of MimicBrush on accelerate (REFERENCE.md §5).

- `config`: the run as typed, frozen dataclasses (`TrainConfig`, `load_train_config`).
- `initialise`: where the weights start (random size, model folder, SD-1.5 + SD-inpainting).
- `objective`: one batch → the noise-prediction loss (`encode_batch`, `TrainingModel`).
- `batches`: the seeded, resumable data order.
- `loop`: `train(config)`, the accelerate loop with EMA, logging, validation and export.
- `checkpointing`: atomic save and `--resume latest`.
- `validation`: image grids of fixed edits; `scalars`: CSV/TensorBoard logs; `export`: `edit`-ready folders.
"""

from .config import TrainConfig, load_train_config
from .loop import StepReport, TrainResult, train

__all__ = ["StepReport", "TrainConfig", "TrainResult", "load_train_config", "train"]
