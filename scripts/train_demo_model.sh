#!/usr/bin/env bash
# Build the bundled demo model from scratch on this machine's offline data (CPU, about 1.5 hours on
# 2 cores), evaluate it on held-out videos, and copy it into the package. Every stage resumes.
#   scripts/train_demo_model.sh [RUN_DIR=runs/demo]
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
RUN="${1:-runs/demo}"
if [ "$RUN" != "runs/demo" ]; then mkdir -p runs && ln -sfn "$(realpath -m "$RUN")" runs/demo; fi
if [ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ]; then
  apt-get update -qq && apt-get install -y -qq opencv-doc
fi
python -m mimicbrush_cli.data.demo_sources runs/demo/sources
mimicbrush prepare runs/demo/sources/train_videos --sam runs/demo/sources/train_sam -o runs/demo/data/train \
  --recipe data_recipes/demo_train.yaml
mimicbrush prepare runs/demo/sources/heldout_videos -o runs/demo/data/heldout --recipe data_recipes/demo_heldout.yaml
mimicbrush train --config configs/demo_vae.yaml --resume latest
mimicbrush train --config configs/demo_image_encoder.yaml --resume latest
mimicbrush train --config configs/train_demo.yaml --resume latest
mimicbrush benchmark recon runs/demo/data/heldout --weights runs/demo/model -o runs/demo/recon --steps 50
cp runs/demo/recon/overview.jpg docs/demo_model_recon.jpg
rm -rf mimicbrush_cli/assets/demo_model && mkdir -p mimicbrush_cli/assets && cp -r runs/demo/model mimicbrush_cli/assets/demo_model
