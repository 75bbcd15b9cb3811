#!/usr/bin/env bash
# Rebuild assets/demo-run: the ready model that the dashboard copies into an empty runs
# directory on first launch (dashboard/demo.py), with its PCA and UMAP maps cached so that
# switching method on the Embeddings page is instant, and its latent view (core.latent.run_view)
# so that the first map needs neither the data nor torch. Seeded: the same command gives the same
# run. Takes about 80 s on 2 cores. Run from anywhere: bash assets/build-demo-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
tmp="assets/.demo-run.tmp"
rm -rf "$tmp"
# the training arguments live in dashboard/demo.py (DEMO_ARGS), which also uses them to train
# the demo in the background when this asset is missing
read -r -a args < <("$PY" -c 'from dashboard.demo import DEMO_ARGS; print(" ".join(DEMO_ARGS))')
"$PY" -m core train --out "$tmp" "${args[@]}"
for dims in 3 2; do
  for method in pca umap; do
    "$PY" -m core embed "$tmp" --method "$method" --dims "$dims" --seed 0
  done
done
rm -f "$tmp/train.log" "$tmp/cancel"
rm -rf assets/demo-run
mv "$tmp" assets/demo-run
du -sh assets/demo-run
