"""Peak memory of one full-size training step: both U-Nets trained, batch 1, gradient checkpointing.

    python benchmarks/train_memory.py                      # fp32 and bf16, each in its own process
    python benchmarks/train_memory.py --precision bf16 --resolution 256 --optimizer adam

On CUDA the figure is `torch.cuda.max_memory_allocated`; on a CPU it is the process's peak resident
set (`ru_maxrss`), which also counts the Python runtime and libraries (~0.5 GB). `--optimizer none`
(the CPU default) measures forward + backward only and adds Adam's two fp32 moments per trained
parameter by arithmetic, so the full step can be reported on a machine that cannot hold it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

GIB = 1024 ** 3


def peak_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(size: str, resolution: int, precision: str, optimizer_name: str, checkpointing: bool,
            threads: int) -> dict:
    import torch
    from accelerate import Accelerator

    from mimicbrush_cli.loading import build_random_pipeline
    from mimicbrush_cli.training.loop import MIXED_PRECISION_DTYPES, make_optimizer, place_for_training
    from mimicbrush_cli.training.config import OptimizerConfig
    from mimicbrush_cli.training.objective import TrainingModel, draw_randomness, encode_batch, micro_batch_generator

    torch.set_num_threads(threads)
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
    pipeline = build_random_pipeline(size, seed=0)
    model = TrainingModel(pipeline, ("imitative_unet", "reference_unet", "image_projection", "depth_guider"))
    if checkpointing:
        pipeline.imitative_unet.enable_gradient_checkpointing()
        pipeline.reference_unet.enable_gradient_checkpointing()
    place_for_training(pipeline, model, accelerator.device, MIXED_PRECISION_DTYPES[precision])
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trained, OptimizerConfig()) if optimizer_name == "adam" else None
    model = accelerator.prepare(model)
    weights_bytes = peak_bytes(accelerator.device)

    generator = torch.Generator().manual_seed(0)
    batch = {name: torch.rand(1, 3, resolution, resolution, generator=generator) * 2 - 1
             for name in ("source", "reference", "depth_source")}
    batch["mask"] = (torch.rand(1, 1, resolution, resolution, generator=generator) > 0.5).float()
    randomness = draw_randomness(micro_batch_generator(0, 0, 0, 0), 1, resolution // 8, 1000, 0.0, 0.0)
    started = time.perf_counter()
    encoded = encode_batch(pipeline, batch, randomness)
    loss = model(encoded)
    accelerator.backward(loss)
    if optimizer is not None:
        optimizer.step()
    seconds = time.perf_counter() - started
    trained_count = sum(p.numel() for p in trained)
    adam_bytes = 0 if optimizer is not None else 2 * 4 * trained_count
    peak = peak_bytes(accelerator.device)
    return {"precision": precision, "device": accelerator.device.type, "size": size, "resolution": resolution,
            "gradient_checkpointing": checkpointing, "trained_parameters": trained_count,
            "after_build_gib": weights_bytes / GIB, "peak_gib": peak / GIB,
            "adam_state_added_gib": adam_bytes / GIB, "full_step_gib": (peak + adam_bytes) / GIB,
            "step_seconds": seconds, "loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["no", "fp32", "bf16", "fp16"], default=None)
    parser.add_argument("--size", default="released")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--optimizer", choices=["none", "adam"], default=None,
                        help="default: adam on CUDA, none (arithmetic) on CPU")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.precision is None:  # one process per precision: peak RSS never goes down
        for precision in ("fp32", "bf16"):
            command = [sys.executable, __file__, "--precision", precision, "--size", args.size,
                       "--resolution", str(args.resolution), "--threads", str(args.threads)]
            command += ["--optimizer", args.optimizer] if args.optimizer else []
            command += ["--no-checkpointing"] if args.no_checkpointing else []
            subprocess.run(command, check=True)
        return
    import torch

    optimizer = args.optimizer or ("adam" if torch.cuda.is_available() else "none")
    precision = "no" if args.precision == "fp32" else args.precision
    result = measure(args.size, args.resolution, precision, optimizer, not args.no_checkpointing, args.threads)
    result["precision"] = args.precision
    print(json.dumps(result))


if __name__ == "__main__":
    main()
