"""The paper's evaluation (texture transfer and part composition, inner-ID and inter-ID splits) and a
self-supervised reference-reconstruction check on held-out video pairs.

- `samples`: a benchmark folder in the authors' naming; `crops`: the regions the metrics compare;
- `metrics`: SSIM / PSNR / cosine scores; `lpips`: LPIPS-Alex; `backbones`: DINOv2, CLIP and LPIPS loading;
- `scores`: the paper's per-sample scores; `editors`: what gets benchmarked (any `Editor`, or the pipeline);
- `runner`: the resumable loop; `recon`: the reconstruction check; `report`: JSON, markdown, grids, tables.
"""

from importlib import import_module

# Imported on first use, so that the CLI (and `benchmark.runner`) start without torch.
_EXPORTS = {"MetricModels": "backbones", "Editor": "editors", "make_pipeline_editor": "editors",
            "ReconResults": "recon", "ReconSettings": "recon", "run_recon": "recon",
            "BenchmarkResults": "runner", "BenchmarkSettings": "runner", "run_benchmark": "runner"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
