#!/usr/bin/env bash
# LAMMPS MD streamed through aptnn-lammps (no dump written) → IR spectrum. QUICK=1 for a run of under a minute
# (a noisy spectrum); without it 20 000 steps (10 ps).
set -euo pipefail
cd "$(dirname "$0")"
steps=$([ -n "${QUICK:-}" ] && echo 600 || echo 20000)
python - <<'PY'
from aptnn.demo import spcfw_setup, water_data
text, box = water_data(64, seed=1)
open("water.data", "w").write(text)
open("ff.lmp", "w").write(spcfw_setup("water.data", box))
PY
# The first run (Langevin equilibration) is not streamed (--skip-runs 1); the NVE production run is, every step.
# SPC/Fw costs far less per step than the APT model: give the model one full-priority thread (--threads 1
# --nice 0) instead of the defaults meant for an expensive ML potential (all cores, niceness 10).
aptnn-lammps in.water --var steps "${steps}" --var equil 2000 --skip-runs 1 -o water.dmdt.h5 --overwrite \
  --no-screen --log log.lammps --threads "${THREADS:-1}" --nice 0
aptnn spectrum water.dmdt.h5 -o spectrum.csv --plot spectrum.png --max-lag "${MAX_LAG:-500}"
