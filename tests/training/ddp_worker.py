"""Run by `torchrun --nproc_per_node 2` from test_training_loop.py: a few tiny-model steps under DDP
(gloo, CPU); each process writes a digest of its trained weights."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from training_helpers import PhotoPairs, tiny_config  # noqa: E402

from mimicbrush_cli.loading import build_random_pipeline  # noqa: E402
from mimicbrush_cli.training import train  # noqa: E402


def trained_weights_digest(pipeline) -> str:
    digest = hashlib.sha256()
    for name in ("imitative_unet", "image_projection", "depth_guider"):
        for key, tensor in sorted(getattr(pipeline, name).state_dict().items()):
            digest.update(f"{name}.{key}".encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def main(output_dir: str) -> None:
    torch.set_num_threads(1)
    config = tiny_config(output_dir, steps=3, batch_size=1, gradient_accumulation=2)
    result = train(config, PhotoPairs(), show_progress=False)
    rank = torch.distributed.get_rank()
    (Path(output_dir) / f"rank{rank}.json").write_text(json.dumps({
        "digest": trained_weights_digest(result.pipeline),
        "initial_digest": trained_weights_digest(build_random_pipeline("tiny", seed=0)),
        "world_size": torch.distributed.get_world_size(), "losses": result.losses}))


if __name__ == "__main__":
    main(sys.argv[1])
