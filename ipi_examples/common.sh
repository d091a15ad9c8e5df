# Shared by the examples' run.sh: builds the water box, runs i-PI + LAMMPS + aptnn-ipi, plots the spectrum.
# Usage (from an example folder): source ../common.sh; run_example STEPS [aptnn-ipi options]
set -euo pipefail
run_example() {
  local steps=$1; shift
  rm -f /tmp/ipi_aptnn-example-lammps /tmp/ipi_aptnn-example-apt RESTART sim.* run.dmdt.h5
  python - <<'PY'
from aptnn.demo import water_data
from aptnn.demo.ipi import ipi_init_xyz, lammps_ipi_client_script
text, box = water_data(64, seed=1)
open("water.data", "w").write(text)
open("init.xyz", "w").write(ipi_init_xyz(text, box))
open("in.lmp", "w").write(lammps_ipi_client_script("water.data", "aptnn-example-lammps", box))
PY
  sed "s/STEPS/${steps}/" input.xml > run.xml
  i-pi run.xml > ipi.log 2>&1 &
  local ipi=$!
  while [ ! -S /tmp/ipi_aptnn-example-lammps ]; do sleep 0.2; done
  python -c "import aptnn.demo as d; l = d.load_lammps()(cmdargs=['-log', 'none', '-screen', 'none']);
try: l.file('in.lmp')
except Exception: pass" &
  aptnn-ipi --address aptnn-example-apt --ipi-input run.xml -o run.dmdt.h5 --overwrite "$@"
  wait "$ipi"
  aptnn spectrum run.dmdt.h5 -o spectrum.csv --plot spectrum.png --max-lag "${MAX_LAG:-250}"
}
