"""Training speed of the tiny model on a CPU: optimiser steps per second through `train()`.

    python benchmarks/train_speed.py --steps 20 --batch-size 4 --threads 2

The data are crops of scikit-image photos held in memory (no prepared shards needed); the first
step (model build, warm-up) is excluded. Reports wall and process-CPU rates: on a shared machine
the CPU rate is the steadier one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "training"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    import torch

    from training_helpers import PhotoPairs, tiny_config
    from mimicbrush_cli.training import train

    torch.set_num_threads(args.threads)
    marks = {}

    def on_step(report) -> None:
        marks[report.step] = (time.perf_counter(), time.process_time())

    with tempfile.TemporaryDirectory() as folder:
        config = tiny_config(folder, steps=args.steps + 1, batch_size=args.batch_size, checkpoint_every=0,
                             gradient_checkpointing=args.gradient_checkpointing)
        train(config, PhotoPairs(length=64), show_progress=False, on_step=on_step)
    (wall0, cpu0), (wall1, cpu1) = marks[1], marks[args.steps + 1]
    print(json.dumps({"steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
                      "resolution": 64, "steps_per_second_wall": args.steps / (wall1 - wall0),
                      "cpu_seconds_per_step": (cpu1 - cpu0) / args.steps}))


if __name__ == "__main__":
    main()
