#!/usr/bin/env bash
# Acceptance run: the default `aptnn train` on the 10 shared DFT frames, evaluated on the 19 pool frames.
# Prints wall and CPU time of the training and the test RMSE (e).   Usage: bash benchmarks/train_water.sh [OUTDIR]
set -euo pipefail
data="$(cd "$(dirname "$0")/../.." && pwd)/shared/data/water-rpbe-d3"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
/usr/bin/time -f "training: wall %e s, CPU %U+%S s, peak RSS %M KiB" \
  aptnn train "$data/train10.extxyz" -o "$out/model.pt" --quiet
aptnn evaluate "$out/model.pt" "$data/pool19.extxyz" --quiet --json "$out/pool19.json" --plot "$out/parity.png"
