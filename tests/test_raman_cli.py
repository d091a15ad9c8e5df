"""Raman from stream files: the optional /dAdt dataset (writer, reader, resume, merge) and `aptnn spectrum --raman`."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from aptnn import units
from aptnn.cli import main
from aptnn.errors import InputError, OutputError
from aptnn.io.stream import n_frames, read_chunks, read_info
from aptnn.io.stream_repair import merge_streams
from aptnn.io.stream_writer import StreamWriter
from aptnn.raman import VOIGT, compute_raman, raman_spectrum

DT = 0.5                 # fs
N = 8000                 # frames
NU_ISO, NU_ANISO = 1000.0, 1600.0   # cm⁻¹
TRACELESS = [[1.0, 0.3, 0.0], [0.3, -0.4, 0.2], [0.0, 0.2, -0.6]]
SERIES = ["total", "group:O", "group:H"]
MAX_LAG = "1000"         # fs


def oscillation(n, wavenumber_cm, tensor, phase=0.0):
    """dα/dt (n, 3, 3) of α(t) = cos(ωt + φ)·tensor, sampled every DT fs (e·Å²/(V·fs))."""
    w = 2 * np.pi * units.C_CM_PER_FS * wavenumber_cm
    t = np.arange(n) * DT
    return (-w * np.sin(w * t + phase))[:, None, None] * np.asarray(tensor, dtype=float)


def to_voigt(x):
    return np.stack([x[:, i, j] for i, j in VOIGT], axis=1)


def synthetic(n=N):
    """(time, dMdt (n, 3, 3), dAdt (n, 3, 6)): the total's dα/dt is an isotropic oscillation at NU_ISO plus a
    traceless one at NU_ANISO (the groups: one each); dM/dt is noise whose total is the sum of the groups."""
    iso = to_voigt(oscillation(n, NU_ISO, np.eye(3)))
    aniso = to_voigt(oscillation(n, NU_ANISO, TRACELESS, phase=0.4))
    dadt = np.stack([iso + aniso, iso, aniso], axis=1)
    g = np.random.default_rng(0).normal(size=(n, 2, 3))
    dmdt = np.concatenate([g.sum(1, keepdims=True), g], axis=1)
    return DT * np.arange(n), dmdt, dadt


def write(path, n=N, **kw):
    t, dmdt, dadt = synthetic(n)
    with StreamWriter(path, SERIES, dt_fs=DT, temperature_K=300.0, volume_A3=1000.0, polarizability=True,
                      **kw) as w:
        w.append(t, dmdt, dadt=dadt)
    return t, dmdt, dadt


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("raman") / "r.dmdt.h5"
    write(path)
    return path


def at(spec_or_wavenumber, nu):
    wavenumber = getattr(spec_or_wavenumber, "wavenumber", spec_or_wavenumber)
    return int(np.argmin(np.abs(wavenumber - nu)))


def test_schema_of_dadt(stream):
    with h5py.File(stream) as f:
        a = f["dAdt"]
        assert a.shape == (N, 3, 6) and a.dtype == np.float64 and a.maxshape == (None, 3, 6)
        assert a.attrs["units"] == units.POLARIZABILITY_DERIVATIVE
        assert a.attrs["components"] == "xx,yy,zz,yz,xz,xy"
        assert a.chunks == f["dMdt"].chunks[:2] + (6,)
    info = read_info(stream)
    assert info.has_dadt and info.series == SERIES
    _, dmdt, dadt = synthetic()
    t, block = next(read_chunks(stream, ["group:H", "total"], dataset="dAdt"))
    np.testing.assert_array_equal(block, dadt[:, [2, 0]])
    np.testing.assert_array_equal(next(read_chunks(stream))[1], dmdt)   # dMdt stays the default


def test_cli_raman_csv_plot_peaks_and_depolarisation(stream, tmp_path):
    out, png = tmp_path / "r.csv", tmp_path / "r.png"
    res = CliRunner().invoke(main, ["spectrum", str(stream), "--raman", "-o", str(out), "--plot", str(png),
                                    "--max-lag", MAX_LAG])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    unit = "A4_amu-1_per_cm-1"
    for name in ("iso", "aniso", "vv", "vh"):
        assert f"{name}_{unit}" in header and f"{name}_{unit}_err" in header
    assert header[0] == "wavenumber_cm-1" and "depolarization_ratio_dimensionless" in header
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    col = {name: table[:, k] for k, name in enumerate(header)}
    nu, vv, rho = col["wavenumber_cm-1"], col[f"vv_{unit}"], col["depolarization_ratio_dimensionless"]
    step = nu[1]
    top2 = sorted(nu[k] for k in np.flatnonzero((vv[1:-1] > vv[:-2]) & (vv[1:-1] > vv[2:])) + 1
                  if vv[k] > 0.05 * vv.max())
    assert len(top2) == 2 and all(abs(p - q) <= 2 * step for p, q in zip(top2, (NU_ISO, NU_ANISO))), top2
    assert abs(rho[at(nu, NU_ISO)]) < 1e-3
    assert rho[at(nu, NU_ANISO)] == pytest.approx(0.75, abs=1e-3)
    assert png.stat().st_size > 10_000
    line = res.output.strip().splitlines()[-1]
    assert "VV peaks at" in line and "(ρ 0.00)" in line and "(ρ 0.75)" in line and str(out) in line
    assert "Å⁴·amu⁻¹ per cm⁻¹" in line


def test_file_gives_the_numbers_of_the_arrays(stream, tmp_path):
    _, _, dadt = synthetic()
    ref = raman_spectrum(dadt[:, 0], DT, 300.0, max_lag_fs=float(MAX_LAG))
    spec = compute_raman([stream], max_lag_fs=float(MAX_LAG))
    assert spec.series == ["total"] and spec.n_blocks == ref.n_blocks
    for name in ("wavenumber", "iso", "aniso", "vv", "vh"):
        a, b = getattr(ref, name), getattr(spec, name)
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.max(np.abs(a)), err_msg=name)
    np.testing.assert_allclose(spec.depolarization, ref.depolarization, rtol=1e-9, atol=1e-12)
    for name in ref.error:
        np.testing.assert_allclose(spec.error[name], ref.error[name], rtol=1e-9, atol=1e-12 * np.max(ref.vv))
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, ["spectrum", str(stream), "--raman", "-o", str(out), "--max-lag", MAX_LAG])
    assert res.exit_code == 0, res.output
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 0], ref.wavenumber, rtol=1e-12)
    np.testing.assert_allclose(table[:, 5], ref.vv, rtol=1e-12, atol=1e-12 * np.max(ref.vv))
    # a group series by name; absolute form with the file's volume
    group = compute_raman([stream], max_lag_fs=float(MAX_LAG), series=["group:H"])
    np.testing.assert_allclose(group.iso, 0.0, atol=1e-12 * np.max(group.aniso))
    absolute = compute_raman([stream], max_lag_fs=float(MAX_LAG), form="absolute", laser_nm=532.0)
    ref_abs = raman_spectrum(dadt[:, 0], DT, 300.0, volume_A3=1000.0, max_lag_fs=float(MAX_LAG), form="absolute",
                             laser_nm=532.0)
    assert absolute.quantity == ref_abs.quantity == "raman_scattering_coefficient"
    np.testing.assert_allclose(absolute.vv[1:], ref_abs.vv[1:], rtol=1e-12, atol=1e-12 * np.nanmax(ref_abs.vv))


def test_stream_without_dadt_is_one_error_line_naming_it(tmp_path):
    path = tmp_path / "ir.dmdt.h5"
    t, dmdt, _ = synthetic(400)
    with StreamWriter(path, SERIES, dt_fs=DT, temperature_K=300.0) as w:
        w.append(t, dmdt)
    assert not read_info(path).has_dadt
    res = CliRunner().invoke(main, ["spectrum", str(path), "--raman", "-o", str(tmp_path / "r.csv")])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "dAdt" in lines[0], res.stderr
    assert not (tmp_path / "r.csv").exists()
    with pytest.raises(InputError, match="dAdt"):
        next(read_chunks(path, dataset="dAdt"))


@pytest.mark.parametrize("args, words", [
    (["--raman", "--raman-form", "absolute"], ["--laser-nm"]),
    (["--raman", "--eps-inf", "1.77", "--no-decompose"], ["--eps-inf", "IR"]),   # --no-decompose: IR and Raman
    (["--laser-nm", "532"], ["--laser-nm", "--raman"]),
    (["--raman-form", "reduced"], ["--raman-form", "--raman"]),
])
def test_usage_errors(stream, tmp_path, args, words):
    res = CliRunner().invoke(main, ["spectrum", str(stream), "-o", str(tmp_path / "r.csv"), *args])
    assert res.exit_code == 2
    assert "Usage:" in res.stderr and all(w in res.stderr for w in words), res.stderr
    assert not (tmp_path / "r.csv").exists()


def test_absolute_form_on_the_command_line(stream, tmp_path):
    out = tmp_path / "a.csv"
    res = CliRunner().invoke(main, ["spectrum", str(stream), "--raman", "--raman-form", "absolute", "--laser-nm",
                                    "532", "-o", str(out), "--max-lag", MAX_LAG])
    assert res.exit_code == 0, res.output
    assert "vv_cm-1_sr-1_per_cm-1" in out.read_text().splitlines()[0]
    assert "laser 532 nm" in res.output
    res = CliRunner().invoke(main, ["spectrum", str(stream), "--raman", "--raman-form", "absolute", "--laser-nm",
                                    "-5", "-o", str(out)])
    assert res.exit_code == 2 and "laser" in res.stderr


def test_help_states_the_units():
    res = CliRunner().invoke(main, ["spectrum", "--help"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0
    assert "e·Å²/(V·fs)" in text and "Å⁴·amu⁻¹ per cm⁻¹" in text and "cm²·sr⁻¹ per cm⁻¹" in text
    assert "--laser-nm" in text and "nm" in text


def test_ir_of_a_stream_with_dadt_is_unchanged(stream, tmp_path):
    plain = tmp_path / "plain.h5"
    t, dmdt, _ = synthetic()
    with StreamWriter(plain, SERIES, dt_fs=DT, temperature_K=300.0, volume_A3=1000.0) as w:
        w.append(t, dmdt)
    tables = []
    for path in (stream, plain):
        out = tmp_path / f"{path.stem}.csv"
        res = CliRunner().invoke(main, ["spectrum", str(path), "-o", str(out), "--max-lag", "200"])
        assert res.exit_code == 0, res.output
        tables.append(out.read_text())
    assert tables[0] == tables[1]


def test_writer_checks_dadt(tmp_path):
    t, dmdt, dadt = synthetic(10)
    with StreamWriter(tmp_path / "a.h5", SERIES, dt_fs=DT, polarizability=True) as w:
        with pytest.raises(ValueError, match="pass dadt"):
            w.append(t, dmdt)
        bad = dadt.copy()
        bad[3, 1, 2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            w.append(t, dmdt, dadt=bad)
        assert w.n_frames == 0
        w.append(t, dmdt, dadt=dadt)
    with StreamWriter(tmp_path / "b.h5", SERIES, dt_fs=DT) as w:
        with pytest.raises(ValueError, match="polarizability=True"):
            w.append(t, dmdt, dadt=dadt)
        w.append(t, dmdt)
    with pytest.raises(OutputError, match="cannot resume: file has no polarizability"):
        StreamWriter(tmp_path / "b.h5", SERIES, dt_fs=DT, resume=True, polarizability=True)
    with pytest.raises(OutputError, match="cannot resume: file has polarizability"):
        StreamWriter(tmp_path / "a.h5", SERIES, dt_fs=DT, resume=True)


def test_layout_check_of_a_foreign_dadt(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["dMdt"] = np.zeros((10, 1, 3))
        f["time"] = np.arange(10.0)
        f["dAdt"] = np.zeros((10, 1, 3))
    with pytest.raises(InputError, match="'dAdt' has shape"):
        read_info(path)


def test_resumed_and_appended_stream_reads_back(tmp_path):
    t, dmdt, dadt = synthetic()
    path, whole = tmp_path / "resumed.h5", tmp_path / "whole.h5"
    write(whole)
    half = N // 2 + 7
    with StreamWriter(path, SERIES, dt_fs=DT, temperature_K=300.0, volume_A3=1000.0, polarizability=True) as w:
        w.append(t[:half], dmdt[:half], dadt=dadt[:half])
    with StreamWriter(path, SERIES, dt_fs=DT, resume=True, polarizability=True) as w:
        assert w.n_frames == half
        for s in range(half, N, 1000):   # several appends
            w.append(t[s:s + 1000], dmdt[s:s + 1000], dadt=dadt[s:s + 1000])
    assert n_frames(path) == N
    got = np.concatenate([b for _, b in read_chunks(path, chunk=999, dataset="dAdt")])
    np.testing.assert_array_equal(got, dadt)
    a = compute_raman([path], max_lag_fs=float(MAX_LAG))
    b = compute_raman([whole], max_lag_fs=float(MAX_LAG))
    np.testing.assert_array_equal(a.vv, b.vv)
    np.testing.assert_array_equal(a.depolarization, b.depolarization)
    # two parts merged into one file keep dAdt; two files average as independent runs
    parts = [tmp_path / "p0.h5", tmp_path / "p1.h5"]
    for k, p in enumerate(parts):
        sl = slice(k * N // 2, (k + 1) * N // 2)
        with StreamWriter(p, SERIES, dt_fs=DT, temperature_K=300.0, polarizability=True) as w:
            w.append(t[sl], dmdt[sl], dadt=dadt[sl])
    merged = merge_streams(parts, tmp_path / "merged.h5")
    np.testing.assert_array_equal(np.concatenate([b for _, b in read_chunks(merged, dataset="dAdt")]), dadt)
    two = compute_raman(parts, max_lag_fs=200.0)
    ref = raman_spectrum([dadt[:N // 2, 0], dadt[N // 2:, 0]], DT, 300.0, max_lag_fs=200.0)
    np.testing.assert_allclose(two.vv, ref.vv, rtol=1e-12, atol=1e-12 * np.max(ref.vv))
    with StreamWriter(tmp_path / "plain.h5", SERIES, dt_fs=DT, temperature_K=300.0) as w:
        w.append(t[N // 2:], dmdt[N // 2:])
    with pytest.raises(InputError, match="polarizability"):
        merge_streams([parts[0], tmp_path / "plain.h5"], tmp_path / "bad.h5")


WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from aptnn.io.stream_writer import StreamWriter
    w = StreamWriter(sys.argv[1], ["total"], dt_fs=1.0, temperature_K=300.0, flush_every=0.05, chunk=64,
                     polarizability=True)
    k = 0
    while True:
        w.append(np.arange(k, k + 10, dtype=float), np.full((10, 1, 3), float(k)),
                 dadt=np.arange(k, k + 10, dtype=float)[:, None, None] * np.ones((10, 1, 6)))
        k += 10
        if k == 200:
            print("ready", flush=True)
        time.sleep(0.002)
""")


def test_killed_writer_with_dadt_is_recovered_and_continued(tmp_path):
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with StreamWriter(path, ["total"], dt_fs=1.0, resume=True, polarizability=True) as w:
        start = w.n_frames
        assert start >= 200
        w.append([float(start)], np.zeros((1, 1, 3)), dadt=np.full((1, 1, 6), float(start)))
    assert n_frames(path) == start + 1
    t, a = next(read_chunks(path, chunk=10**6, dataset="dAdt"))
    np.testing.assert_array_equal(t, np.arange(start + 1, dtype=float))
    np.testing.assert_array_equal(a, t[:, None, None] * np.ones((1, 1, 6)))
