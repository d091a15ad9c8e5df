#!/usr/bin/env bash
# LAMMPS MD → aptnn-post → IR spectrum. QUICK=1 for a run of under a minute (a noisy spectrum).
set -euo pipefail
cd "$(dirname "$0")"
steps=$([ -n "${QUICK:-}" ] && echo 600 || echo 20000)
python - <<'PY'
from aptnn.demo import spcfw_setup, water_data
text, box = water_data(64, seed=1)
open("water.data", "w").write(text)
open("ff.lmp", "w").write(spcfw_setup("water.data", box))
PY
python -c "
import aptnn.demo as d
lmp = d.load_lammps()(cmdargs=['-log', 'log.lammps', '-screen', 'none', '-var', 'steps', '${steps}', '-var', 'equil', '2000'])
lmp.file('in.water')
lmp.close()"
aptnn-post water.lammpstrj --timestep 0.5 --units real -o water.dmdt.h5 --overwrite \
  --spectrum spectrum.csv --plot spectrum.png --max-lag "${MAX_LAG:-500}"
