"""README's main job: `aptnn demo` (LAMMPS water → shipped model → dM/dt stream → IR spectrum), made small."""
import numpy as np
from click.testing import CliRunner

from aptnn.cli import main
from aptnn.io.stream import n_frames, read_info


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "-o", str(out), "--molecules", "16", "--steps", "200"])
    assert res.exit_code == 0, res.output
    assert "peaks at" in res.output and (out / "spectrum.png").stat().st_size > 10_000
    stream = out / "water.dmdt.h5"
    assert n_frames(stream) >= 199 and read_info(stream).temperature_K > 100
    csv = np.genfromtxt(out / "spectrum.csv", delimiter=",", names=True)
    assert np.isfinite(csv[csv.dtype.names[1]]).all() and csv[csv.dtype.names[1]].max() > 0
