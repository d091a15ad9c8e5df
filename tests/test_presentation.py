"""What a user sees of a spectrum: plot range and legend, the one-line summary, CSV headers, short-run warning."""
import re
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from aptnn import units
from aptnn.cli import main, post
from aptnn.io.stream_writer import StreamWriter
from aptnn.spectrum import Spectrum

HEADER = re.compile(r"^[^ \[\]]+_(cm-1|cm2)(_err)?$")  # name_unit, nothing else


def stream(path, series, n=4000, dt=0.5, volume_A3=3000.0, seed=0):
    """A stream file of damped oscillations at 1640 and 3400 cm⁻¹ in every series (e·Å/fs, fs)."""
    rng = np.random.default_rng(seed)
    t = dt * np.arange(n)
    data = np.zeros((n, len(series), 3))
    for nu, amp in ((1640, 0.4), (3400, 1.0)):
        omega = 2 * np.pi * units.C_CM_PER_FS * nu
        phase = rng.uniform(0, 2 * np.pi, size=(len(series), 3))
        data += amp * np.cos(omega * t[:, None, None] + phase) * (1 + 0.1 * rng.normal(size=(n, len(series), 3)))
    with StreamWriter(path, series, dt_fs=dt, temperature_K=300.0, volume_A3=volume_A3) as w:
        w.append(t, data)
    return str(path)


@pytest.fixture
def plots(monkeypatch):
    """Records what every Spectrum.plot call drew (x range, legend), whoever calls it."""
    drawn = []
    original = Spectrum.plot

    def spy(self, *args, **kwargs):
        info = original(self, *args, **kwargs)
        drawn.append(info)
        return info

    monkeypatch.setattr(Spectrum, "plot", spy)
    return drawn


def test_post_plot_stops_at_max_wavenumber(tmp_path, plots):
    path = stream(tmp_path / "w.dmdt.h5", ["total", "group:O", "group:H"])
    res = CliRunner().invoke(post, [path, "--plot", str(tmp_path / "p.png"), "--max-lag", "500"])
    assert res.exit_code == 0, res.output
    assert plots[-1]["xlim"] == (0.0, 4500.0)  # default, not the 33 000 cm⁻¹ Nyquist end of a 0.5 fs grid
    res = CliRunner().invoke(post, [path, "--plot", str(tmp_path / "p.png"), "--max-lag", "500",
                                    "--max-wavenumber", "2000"])
    assert res.exit_code == 0, res.output
    assert plots[-1]["xlim"] == (0.0, 2000.0) and (tmp_path / "p.png").stat().st_size > 10_000


def test_plot_range_python_api(tmp_path):
    spec = Spectrum(np.linspace(0, 33000, 3301), np.ones(3301), np.full(3301, np.nan), "alpha_n_cm-1")
    assert spec.plot(tmp_path / "a.png")["xlim"] == (0.0, 4500.0)
    assert spec.plot(tmp_path / "b.png", max_wavenumber=None)["xlim"] == (0.0, 33000.0)
    short = Spectrum(np.linspace(0, 3000, 301), np.ones(301), np.full(301, np.nan), "alpha_n_cm-1")
    assert short.plot(tmp_path / "c.png")["xlim"] == (0.0, 3000.0)  # never past the grid


def test_legend_names_the_series_shown(tmp_path, plots):
    pimd = stream(tmp_path / "pimd.dmdt.h5", ["centroid", "bead0", "bead1", "bead2", "bead3"])
    res = CliRunner().invoke(post, [pimd, "--plot", str(tmp_path / "c.png"), "--max-lag", "300"])
    assert res.exit_code == 0, res.output
    assert plots[-1]["legend"][0] == "centroid" and "total" not in plots[-1]["legend"]
    assert "(centroid)" in res.output
    res = CliRunner().invoke(main, ["spectrum", pimd, "-o", str(tmp_path / "b.csv"), "--plot", str(tmp_path / "b.png"),
                                    "--series", "bead*", "--max-lag", "300"])
    assert res.exit_code == 0, res.output
    assert plots[-1]["legend"][0] == "mean of bead0…bead3" and "(mean of bead0…bead3)" in res.output
    classical = stream(tmp_path / "md.dmdt.h5", ["total", "group:O", "group:H"])
    res = CliRunner().invoke(post, [classical, "--plot", str(tmp_path / "t.png"), "--max-lag", "300"])
    assert plots[-1]["legend"][0] == "total" and {"group:O", "group:H", "group:O|group:H"} <= set(plots[-1]["legend"])


def test_post_summary_gives_peaks_and_integrated_intensity(tmp_path):
    path = stream(tmp_path / "w.dmdt.h5", ["total"])
    res = CliRunner().invoke(post, [path, "--spectrum", str(tmp_path / "s.csv"), "--max-lag", "500"])
    assert res.exit_code == 0, res.output
    line = res.output.strip().splitlines()[-1]
    match = re.search(r"peaks at ([\d, ]+) cm⁻¹; integrated intensity ([\d.e+]+) cm⁻²", line)
    assert match, line
    peaks = [float(p) for p in match.group(1).split(",")]
    assert any(abs(p - 1640) < 40 for p in peaks) and any(abs(p - 3400) < 40 for p in peaks)
    table = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert float(match.group(2)) == pytest.approx(np.trapezoid(table[:, 1], table[:, 0]), rel=1e-5)


def test_summary_lists_a_weak_band_next_to_a_split_strong_one():
    """Water-like: libration, a weak bend (8 % of the stretch) and a stretch with two maxima: all four listed."""
    nu = np.linspace(0, 8000, 4001)

    def band(centre, height, width):
        return height * np.exp(-0.5 * ((nu - centre) / width) ** 2)

    total = band(650, 0.3, 120) + band(1640, 0.08, 40) + band(3380, 1.0, 60) + band(3560, 0.9, 60)
    spec = Spectrum(nu, total, np.full_like(nu, np.nan), "alpha_n_cm-1")
    assert spec.peaks() == pytest.approx([650, 1640, 3380, 3560], abs=4)
    assert spec.peaks(2) == pytest.approx([650, 3380], abs=4)  # the most prominent ones when fewer are asked for
    noisy = Spectrum(nu, total + 0.002 * np.sin(nu / 7), np.full_like(nu, np.nan), "alpha_n_cm-1")
    assert noisy.peaks() == pytest.approx([650, 1640, 3380, 3560], abs=15)  # wiggles below 3 % are not peaks
    summary = spec.summary()
    assert re.fullmatch(r"alpha_n_cm-1 \(total\): peaks at 650, 1640, 338\d, 35\d\d cm⁻¹; integrated intensity "
                        r"([\d.]+) cm⁻²", summary), summary
    assert float(summary.split()[-2]) == pytest.approx(np.trapezoid(total, nu), rel=1e-5)


def test_csv_headers_are_name_unit(tmp_path):
    path = stream(tmp_path / "w.dmdt.h5", ["total", "group:O", "group:H"])
    res = CliRunner().invoke(main, ["spectrum", path, "-o", str(tmp_path / "a.csv"), "--max-lag", "200"])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "a.csv").read_text().splitlines()[0].split(",")
    assert header == ["wavenumber_cm-1", "alpha_n_cm-1", "alpha_n_cm-1_err", "group:O_cm-1", "group:H_cm-1",
                      "group:O|group:H_cm-1"]
    gas = stream(tmp_path / "g.dmdt.h5", ["total", "group:O"], volume_A3=None)
    res = CliRunner().invoke(main, ["spectrum", gas, "-o", str(tmp_path / "g.csv"), "--max-lag", "200"])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "g.csv").read_text().splitlines()[0].split(",")
    assert header[1:] == ["cross_section_cm2", "cross_section_cm2_err", "group:O_cm2"]
    assert all(HEADER.match(h) for h in header), header


def test_post_warns_when_the_run_is_shorter_than_max_lag(tmp_path):
    path = stream(tmp_path / "short.dmdt.h5", ["total"], n=201)  # 100 fs
    with pytest.warns(UserWarning, match=r"short.dmdt.h5: the run is 100 fs long, shorter than --max-lag 2000 fs"):
        res = CliRunner().invoke(post, [path, "--spectrum", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a lag within the run: no warning
        res = CliRunner().invoke(post, [path, "--spectrum", str(tmp_path / "s.csv"), "--max-lag", "50"])
    assert res.exit_code == 0, res.output


def test_logs_get_plain_progress_lines_resume_notice_and_one_line_warnings(tmp_path):
    """stderr not a terminal: periodic plain lines with total and ETA, no carriage returns; a resumed run says
    where it resumes; warnings are one `aptnn: warning:` line without Python source lines."""
    import os
    import subprocess
    import sys

    from aptnn.demo import run_water
    from aptnn.io.stream import n_frames

    dump = run_water(tmp_path / "md", n_molecules=8, steps=30, equilibrate=20)
    out = tmp_path / "w.h5"
    env = dict(os.environ, APTNN_PROGRESS_SECONDS="0")
    cmd = [sys.executable, "-m", "aptnn.cli_post", str(dump), "-o", str(out), "--timestep", "0.5",
           "--threads", "1", "--max-lag", "100", "--plot", str(tmp_path / "s.png")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("aptnn-post water.lammpstrj:")]
    assert lines and re.search(r": \d+/31 frames \(\d+ %\), [\d.e+]+ frame/s", lines[-1]), res.stderr
    warned = [ln for ln in res.stderr.splitlines() if "warning" in ln.lower()]
    assert warned and all(ln.startswith("aptnn: warning: ") for ln in warned), res.stderr
    assert "warnings.warn" not in res.stderr and "Guessed all Masses" not in res.stderr
    cut(out, 12)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{out} holds 12 frames: resuming at frame 12" in res.stderr
    assert n_frames(out) == 31


def cut(path, n):
    """Cut a finished stream back to ``n`` frames, as an interrupted run leaves it."""
    import h5py

    with h5py.File(path, "a") as f:
        for name in ("dMdt", "time", "check", "kinetic_temperature"):
            f[name].resize(n, axis=0)
        f["flushed"][0] = n
