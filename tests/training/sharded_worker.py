"""Run by `accelerate launch --config_file configs/accelerate/fsdp2_cpu.yaml` (or deepspeed_zero2.yaml) from
test_training_loop.py: tiny-model steps under FSDP2 (`fully_shard`) or DeepSpeed ZeRO-2 on CPU processes
(gloo), checkpointing every step.

    sharded_worker.py OUTPUT_DIR STEPS [--gradient-accumulation N] [--stop-after N] [--resume]

`--stop-after N` raises out of `train` in every process once step N's checkpoint is written; `--resume`
continues from the newest checkpoint. Each process writes what it ran under and its losses to rank<r>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

sys.path.insert(0, str(Path(__file__).parent))

from training_helpers import PhotoPairs, tiny_config  # noqa: E402

from mimicbrush_cli.training import train  # noqa: E402


class Stopped(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("steps", type=int)
    parser.add_argument("--gradient-accumulation", type=int, default=2)
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Adam moments, a warm-up schedule, accumulation (FSDP2's no_sync) and epoch boundaries (4 items,
    # 2 processes × 1 per micro-batch: an epoch every 2 micro-batches) carry across the restart.
    config = tiny_config(args.output_dir, steps=args.steps, batch_size=1,
                         gradient_accumulation=args.gradient_accumulation,
                         checkpoint_every=1, keep_checkpoints=2, optimizer__schedule="constant_with_warmup",
                         optimizer__warmup_steps=2, resume="latest" if args.resume else None)

    def on_step(report) -> None:
        if report.step == args.stop_after:
            raise Stopped

    losses, parameter_type = {}, None
    try:
        result = train(config, PhotoPairs(length=4), show_progress=False, on_step=on_step)
        losses, parameter_type = result.losses, type(next(result.pipeline.imitative_unet.parameters())).__name__
    except Stopped:
        pass
    rank = torch.distributed.get_rank()
    (Path(args.output_dir) / f"rank{rank}.json").write_text(json.dumps({
        "distributed_type": AcceleratorState().distributed_type.value, "parameter_type": parameter_type,
        "world_size": torch.distributed.get_world_size(), "losses": losses}))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
