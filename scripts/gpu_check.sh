#!/usr/bin/env bash
# The GPU check of issue 28: the full-size `released` architecture with random weights written in the
# released layout and loaded from it; fp16 CUDA against fp32 CPU (noise drawn on the CPU, then on the GPU),
# seconds per step (released schedule, ours, --fast), peak VRAM with and without --cpu-offload, and
# --compile's first call and steady step. Under 8 minutes on one H200; writes a markdown table.
#   scripts/gpu_check.sh [OUT=gpu_check.md] [more options of python -m mimicbrush_cli.benchmark.gpu_check]
# PYTHON picks the interpreter (default: python); the released-layout folder (about 10 GB) goes to a
# temporary folder under TMPDIR, removed at the end (--workdir DIR keeps it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1
OUT="${1:-gpu_check.md}"
exec "${PYTHON:-python}" -m mimicbrush_cli.benchmark.gpu_check --device cuda --size released -o "$OUT" "${@:2}"
