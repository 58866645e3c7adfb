"""The paper's evaluation (texture transfer and part composition, inner-ID and inter-ID splits) and a
self-supervised reference-reconstruction check on held-out video pairs.

- `samples`: a benchmark folder in the authors' naming; `crops`: the regions the metrics compare;
- `metrics`: SSIM / PSNR / cosine scores; `lpips`: LPIPS-Alex; `backbones`: DINOv2, CLIP and LPIPS loading;
- `scores`: the paper's per-sample scores; `editors`: what gets benchmarked (any `Editor`, or the pipeline);
- `runner`: the resumable loop; `recon`: the reconstruction check; `report`: JSON, markdown, grids, tables.
"""

from .backbones import MetricModels
from .editors import Editor, make_pipeline_editor
from .recon import ReconResults, ReconSettings, run_recon
from .runner import BenchmarkResults, BenchmarkSettings, run_benchmark

__all__ = ["BenchmarkResults", "BenchmarkSettings", "Editor", "MetricModels", "ReconResults", "ReconSettings",
           "make_pipeline_editor", "run_benchmark", "run_recon"]
