#!/usr/bin/env bash
# One node, several processes: post-process independent LAMMPS trajectories with torchrun, then the spectrum.
#   bash run_local.sh [NPROC=2] [FRAMES=400]
# Makes 2 short SPC/Fw water runs (64 waters, 0.5 fs) with LAMMPS, then
#   torchrun --standalone --nproc-per-node NPROC -m aptnn.cli_post … --distributed
# writes run<k>/water.lammpstrj.dmdt.h5 (one stream per trajectory, as a single process would) and
# spectrum.png (the two trajectories' correlation functions averaged per lag).
set -euo pipefail
cd "$(dirname "$0")"
NPROC=${1:-2}
FRAMES=${2:-400}
python - "$FRAMES" <<'PY'
import sys
from aptnn.demo import run_water
for k in range(2):
    run_water(f"run{k}", n_molecules=64, steps=int(sys.argv[1]) - 1, dt_fs=0.5, equilibrate=400, seed=k + 1)
PY
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node "$NPROC" -m aptnn.cli_post \
    run0/water.lammpstrj run1/water.lammpstrj --timestep 0.5 --distributed --quiet \
    --spectrum spectrum.csv --plot spectrum.png --max-lag 100
