"""README's main job: `aptnn demo` (LAMMPS water → shipped model → dM/dt stream → IR spectrum), made small."""
import re

import numpy as np
import pytest
from click.testing import CliRunner

from aptnn import units
from aptnn.cli import main
from aptnn.demo import run_water
from aptnn.io.stream import n_frames, read_info
from aptnn.io.trajectory import open_trajectory
from aptnn.spectrum import Spectrum


def test_demo_runs_end_to_end(tmp_path, monkeypatch):
    drawn = []
    original = Spectrum.plot
    monkeypatch.setattr(Spectrum, "plot", lambda self, *a, **k: drawn.append(original(self, *a, **k)))
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "-o", str(out), "--molecules", "32", "--steps", "800",
                                    "--equilibrate", "400"])
    assert res.exit_code == 0, res.output
    assert "q-TIP4P/F" in res.output and (out / "spectrum.png").stat().st_size > 10_000
    summary = re.search(r"peaks at ([\d, ]+) cm⁻¹; integrated intensity [\d.e+]+ cm⁻²", res.output)
    assert summary, res.output
    assert re.search(r"wall time \d+ s \(MD \d+ s, APT model \d+ s, spectrum \d+ s\)", res.output)
    stream = out / "water.dmdt.h5"
    assert n_frames(stream) == 201 and read_info(stream).dt_fs == pytest.approx(2.0)  # every 4th step of 0.5 fs
    assert read_info(stream).temperature_K > 100
    assert drawn[-1]["xlim"] == (0.0, 4500.0) and drawn[-1]["legend"][0] == "total"
    table = np.loadtxt(out / "spectrum.csv", delimiter=",", skiprows=1)
    nu, alpha = table[:, 0], table[:, 1]
    assert np.isfinite(alpha).all() and alpha.max() > 0
    bend = (nu > 1300) & (nu < 1900)
    assert 1500 < nu[bend][np.argmax(alpha[bend])] < 1750  # q-TIP4P/F bends near liquid water's 1640 cm⁻¹
    stretch = (nu > 2800) & (nu < 4200)
    assert 3300 < nu[stretch][np.argmax(alpha[stretch])] < 3800


def hydrogen_bands(dump, dt_fs):
    """(bend, stretch) maxima (cm⁻¹) of the hydrogen velocity power spectrum of a LAMMPS dump."""
    frames = list(open_trajectory(str(dump)))
    h = np.array(frames[0].atoms.get_chemical_symbols()) == "H"
    v = np.array([f.velocities[h] for f in frames])  # Å/fs
    power = (np.abs(np.fft.rfft(v - v.mean(0), axis=0)) ** 2).sum((1, 2))
    nu = np.fft.rfftfreq(len(v), dt_fs) / units.C_CM_PER_FS
    power = np.convolve(power, np.ones(5) / 5, mode="same")

    def top(lo, hi):
        sel = (nu > lo) & (nu < hi)
        return nu[sel][np.argmax(power[sel])]

    return top(1300, 1900), top(2800, 4200)


@pytest.mark.parametrize("model, bend_range", [("qtip4pf", (1550, 1720)), ("spcfw", (1380, 1530))])
def test_water_models_bend_where_expected(tmp_path, model, bend_range):
    """q-TIP4P/F (the demo's default) bends near 1640 cm⁻¹ like liquid water; SPC/Fw (run_water's default,
    kept for the tests that use it) near 1470 cm⁻¹."""
    dump = run_water(tmp_path, n_molecules=32, steps=1600, equilibrate=400, water_model=model)
    bend, stretch = hydrogen_bands(dump, 0.5)
    assert bend_range[0] < bend < bend_range[1]
    assert 3300 < stretch < 3800


def test_unknown_water_model(tmp_path):
    with pytest.raises(ValueError, match="unknown water model 'tip3p'"):
        run_water(tmp_path, water_model="tip3p")


def test_demo_threads_leave_busy_cores_alone():
    """Two torch threads on a machine whose cores are taken run ~10× slower than one: the demo counts free cores."""
    from aptnn.demo import free_cores

    assert [free_cores(2, load) for load in (0.0, 0.4, 1.0, 3.5)] == [2, 2, 1, 1]
    assert free_cores(16, 3.2) == 13 and free_cores(4, 0.0) == 4 and free_cores() >= 1
