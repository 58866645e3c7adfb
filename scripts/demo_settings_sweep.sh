#!/usr/bin/env bash
# Choose the bundled model's edit settings on the validation split, never on the held-out one: `--fast`
# with guidance G, reference locality W (the trained width when "-"), each result the mean of M samples
# (a plain sample when M is 1 or left out) and the reference cache's timestep T (the first step's when left
# out), two mask seeds each, every run a `benchmark recon` that resumes; then one table, means over both
# seeds, on stdout and in OUT/sweep.md.
#   scripts/demo_settings_sweep.sh [DATA=runs/demo/data/val] [OUT=runs/demo/val_sweep]
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
DATA="${1:-runs/demo/data/val}"
OUT="${2:-runs/demo/val_sweep}"
SETTINGS=("5 -" "2 -" "2 0.07" "2 0.05" "1.5 0.07" "3 0.07" "2 0.07 2" "2 0.07 4" "2 0.07 8" "1.5 0.07 4" "3 0.07 4"
          "2 0.07 1 999" "2 0.07 4 999")
# A setting's runs: g<G>_w<W>[_m<M>][_t<T>]_s<seed>
folder() { local name="g$1_w$2"; [ -n "${3:-}" ] && [ "$3" != 1 ] && name="${name}_m$3"; echo "$name${4:+_t$4}"; }
for seed in 0 1; do
  for setting in "${SETTINGS[@]}"; do
    read -r guidance width mean_of timestep <<< "$setting"
    options=(--guidance "$guidance")
    [ "$width" != "-" ] && options+=(--reference-locality "$width")
    [ -n "$mean_of" ] && options+=(--mean-of "$mean_of")
    [ -n "$timestep" ] && options+=(--reference-timestep "$timestep")
    # --released-defaults: each setting from the released ones, not from the bundled model's chosen settings
    mimicbrush benchmark recon "$DATA" --released-defaults --fast "${options[@]}" --seed "$seed" \
      -o "$OUT/$(folder "$guidance" "$width" "$mean_of" "$timestep")_s${seed}" > /dev/null
  done
done
python - "$OUT" "${SETTINGS[@]}" <<'PY'
import json, sys
from pathlib import Path

out, settings = Path(sys.argv[1]), sys.argv[2:]
rows = ["| guidance | reference locality | mean of | reference timestep | model PSNR | margin over mean fill | "
        "attention gain | edge (fill: 0) |", "|---|---|---|---|---|---|---|---|"]
for setting in settings:
    guidance, width, mean_of, timestep = (setting.split() + [None, None])[:4]
    mean_of = mean_of or "1"
    folder = f"g{guidance}_w{width}" + (f"_m{mean_of}" if mean_of != "1" else "") + (f"_t{timestep}" if timestep else "")
    runs = [json.loads(path.read_text())["summary"]["overall"] for path in sorted(out.glob(f"{folder}_s*/results.json"))]
    mean = lambda name, metric: sum(run[name][metric]["mean"] for run in runs) / len(runs)  # noqa: E731
    rows.append(f"| {guidance} | {'0.1 (trained)' if width == '-' else width} | {mean_of} | "
                f"{timestep or 'first step'} | {mean('model', 'psnr'):.2f} | "
                f"{mean('fill_margin', 'psnr'):+.2f} | {mean('attention_gain', 'psnr'):+.2f} | {mean('model', 'edge'):.3f} |")
count = json.loads(next(out.glob("*/results.json")).read_text())["count"]
table = "\n".join(rows) + f"\n\nMeans over {len(runs)} mask seeds of `benchmark recon --fast` on {count} pairs ({out}).\n"
(out / "sweep.md").write_text(table)
print(table)
PY
