#!/usr/bin/env bash
# Build the bundled demo model from scratch on this machine's offline data, evaluate it on held-out
# videos, and copy it into the package. Every stage resumes. Meant for a GPU: on a 2-core CPU the f = 4
# VAE of stage 0a alone runs at 0.2–0.5 steps/s (3000 steps: hours).
#   scripts/train_demo_model.sh [RUN_DIR=runs/demo]
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
RUN="${1:-runs/demo}"
if [ "$RUN" != "runs/demo" ]; then mkdir -p runs && ln -sfn "$(realpath -m "$RUN")" runs/demo; fi
# Prepared data travels (about 55 MB): a machine that already has both folders skips building them.
if [ ! -f runs/demo/data/train/summary.json ] || [ ! -f runs/demo/data/heldout/summary.json ]; then
  if [ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ]; then
    apt-get update -qq && apt-get install -y -qq opencv-doc
  fi
  python -m mimicbrush_cli.data.demo_sources runs/demo/sources
  mimicbrush prepare runs/demo/sources/train_videos --sam runs/demo/sources/train_sam -o runs/demo/data/train \
    --recipe data_recipes/demo_train.yaml
  mimicbrush prepare runs/demo/sources/heldout_videos -o runs/demo/data/heldout --recipe data_recipes/demo_heldout.yaml
fi
# Extra `--set` overrides for every training stage, e.g. TRAIN_SET="--set num_workers=8" on a GPU machine.
mimicbrush train --config configs/demo_vae.yaml --resume latest ${TRAIN_SET:-}
mimicbrush train --config configs/demo_image_encoder.yaml --resume latest ${TRAIN_SET:-}
mimicbrush train --config configs/train_demo.yaml --resume latest ${TRAIN_SET:-}
mimicbrush benchmark recon runs/demo/data/heldout --weights runs/demo/model -o runs/demo/recon --steps 50
cp runs/demo/recon/overview.jpg docs/demo_model_recon.jpg
rm -rf mimicbrush_cli/assets/demo_model && mkdir -p mimicbrush_cli/assets && cp -r runs/demo/model mimicbrush_cli/assets/demo_model
