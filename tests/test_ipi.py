"""aptnn-ipi against a real i-PI server with LAMMPS (fix ipi) as the force engine.

Waits are on progress (the run's files growing, see aptnn.demo.ipi.wait_until), not on fixed wall times;
APTNN_TEST_TIME_SCALE multiplies every limit on a slow or loaded machine.
"""
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from aptnn.cli import post
from aptnn.demo.ipi import (
    finish,
    kill_all,
    prepare_ipi_water,
    run_ipi_pimd,
    start_aptnn,
    start_ipi,
    time_scale,
    wait_until,
)
from aptnn.drivers.ipi.client import ClientSettings, IPIClient, exact_sum_rule
from aptnn.drivers.ipi.protocol import Request
from aptnn.io.stream import n_frames, read_chunks, read_info

MODEL = "water-rpbe-d3"
CLI = [sys.executable, "-m", "aptnn.drivers.ipi.cli"]


def test_pimd_end_to_end(tmp_path):
    """4-bead PIMD, 100 steps, the network every 2nd step: shapes, series, attributes; EXIT finalises the file
    (the steps the interpolation held back included)."""
    pos0 = run_ipi_pimd(tmp_path, steps=100, aptnn_args=["-o", "run.dmdt.h5", "--status-every", "0.2",
                                                         "--apt-every-fs", "0.5"])
    log = (tmp_path / "aptnn-ipi.log").read_text()
    assert "100 steps written" in log and "404 requests" in log
    status = re.findall(r"aptnn-ipi: (\d+) steps received, (\d+) written, (\d+) queued", log)
    assert status and all(int(w) <= int(r) for r, w, _ in status)  # periodic status lines
    out = tmp_path / "run.dmdt.h5"
    with h5py.File(out, "r") as f:  # closed cleanly: opens without SWMR
        assert f["dMdt"].shape == (100, 7, 3)
    info = read_info(out)
    assert info.series == ["bead0", "bead1", "bead2", "bead3", "centroid", "group:O", "group:H"]
    assert info.estimator == "increment/centroid" and info.extra["nbeads"] == 4
    assert info.extra["apt_every"] == 2 and info.extra["apt_interpolation"] == "lagrange-cubic"
    assert info.dt_fs == pytest.approx(0.25) and info.temperature_K == pytest.approx(300.0)
    assert info.model.startswith(MODEL) and info.volume_A3 == pytest.approx(9.865355**3, rel=1e-4)
    t, d = next(read_chunks(out))
    np.testing.assert_allclose(t, 0.25 * (np.arange(100) + 0.5))
    np.testing.assert_allclose(d[:, 4], d[:, :4].mean(1), atol=1e-12)
    np.testing.assert_allclose(d[:, 5] + d[:, 6], d[:, 4], atol=1e-10)
    assert pos0.exists()


def test_nve_stream_equals_offline_post_processing(tmp_path):
    """NVE, velocity estimator: the streamed centroid equals aptnn-post on i-PI's own pos/vel output."""
    pos0 = run_ipi_pimd(tmp_path, steps=30, dt_fs=0.1, nve=True,
                        aptnn_args=["-o", "run.dmdt.h5", "--estimator", "velocity"])
    res = CliRunner().invoke(post, [str(pos0), "--timestep", "0.1", "-o", str(tmp_path / "post.h5"), "--quiet"])
    assert res.exit_code == 0, res.output
    (ts, stream), (tp, offline) = next(read_chunks(tmp_path / "run.dmdt.h5")), next(read_chunks(tmp_path / "post.h5"))
    np.testing.assert_allclose(ts, tp[1:-1], atol=1e-9)  # central differences: first and last step missing
    offline = offline[1:-1]
    for series in (4, 0):  # centroid, bead 0
        err = np.linalg.norm(stream[:, series] - offline[:, series]) / np.linalg.norm(offline[:, series])
        assert err < 1e-3, (series, err)


def test_increment_estimator_is_exact_for_a_quadratic_dipole(tmp_path):
    """The real i-PI client on the quadratic dipole (the estimator core alone: tests/test_estimators.py)."""
    from test_estimators import QuadraticDipoleModel

    address = prepare_ipi_water(tmp_path, nbeads=2, steps=12)  # aptnn listed after LAMMPS: rids 2, 3
    symbols = ["O", "H", "H"] * 32
    model = QuadraticDipoleModel([-0.82, 0.41, 0.41] * 32)
    settings = ClientSettings(address=f"{address}-apt", output=str(tmp_path / "exact.h5"), symbols=symbols,
                              nbeads=2, rid_offset=2, dt_fs=0.25, temperature_K=300.0, resume=False)
    client = IPIClient(model, settings)
    thread = threading.Thread(target=client.run)
    server, lammps = start_ipi(tmp_path, address)
    thread.start()
    finish([server, lammps], 120, tmp_path)
    wait_until(lambda: not thread.is_alive(), tmp_path, stall_s=60)
    assert not thread.is_alive() and client.worker.steps_written == 12
    _, d = next(read_chunks(tmp_path / "exact.h5"))
    seen = np.array(model.seen).reshape(13, 2, 96, 3)  # 13 steps × 2 beads, in bead order per step
    m = np.array([[model.dipole(r) for r in step] for step in seen])  # (13, 2, 3) e·Å
    expected = np.diff(m, axis=0) / 0.25
    for bead in range(2):
        rel = np.abs(d[:, bead] - expected[:, bead]).max() / np.abs(expected[:, bead]).max()
        assert rel < 1e-6
    np.testing.assert_allclose(d[:, 2], expected.mean(1), rtol=1e-6, atol=1e-9)


def frames_now(path) -> int:
    return n_frames(path)  # the writer moves the file into place only once it is readable (SWMR mode)


def test_sigterm_between_steps_and_restart_appends(tmp_path, monkeypatch):
    monkeypatch.setenv("APTNN_FLUSH_SECONDS", "0")  # every frame visible at once
    address = prepare_ipi_water(tmp_path, steps=150)
    server, lammps = start_ipi(tmp_path, address)
    first = start_aptnn(tmp_path, address, ["-o", "run.dmdt.h5", "--threads", "1"])
    out = tmp_path / "run.dmdt.h5"
    assert wait_until(lambda: out.exists() and frames_now(out) >= 10, tmp_path)
    first.send_signal(signal.SIGTERM)
    wait_until(lambda: first.poll() is not None, tmp_path, stall_s=60)
    assert first.poll() == 0
    assert n_frames(out) >= 10  # valid after SIGTERM
    second = start_aptnn(tmp_path, address, ["-o", "run.dmdt.h5"], log="second.log")
    finish([server, lammps, second], 180, tmp_path)  # i-PI did not hang: it finished with the new client
    assert server.returncode == 0 and second.returncode == 0
    t, d = next(read_chunks(out))
    assert "150 steps written" not in (tmp_path / "aptnn-ipi.log").read_text()  # really stopped mid-run
    np.testing.assert_allclose(t, 0.25 * (np.arange(150) + 0.5))  # all 150 increments, no gap, no repeat
    assert np.isfinite(d).all()


def test_second_client_on_the_same_socket_is_a_clear_error(tmp_path):
    address = prepare_ipi_water(tmp_path, steps=40)
    server, lammps = start_ipi(tmp_path, address)
    a = start_aptnn(tmp_path, address, ["-o", "a.h5"], log="a.log")
    b = start_aptnn(tmp_path, address, ["-o", "b.h5"], log="b.log")
    try:
        wait_until(lambda: a.poll() is not None and b.poll() is not None, tmp_path)
    finally:
        kill_all(server, lammps, a, b)  # with both aptnn clients gone i-PI waits for a new one
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert 2 in (a.returncode, b.returncode)
    assert "second client" in logs and "Traceback" not in logs


def test_worker_process_failure_stops_the_client_with_its_error(tmp_path):
    """The worker process fails (an existing output from another run cannot be continued): aptnn-ipi
    answers the request in flight and exits with that error."""
    from aptnn.io.stream_writer import StreamWriter

    address = prepare_ipi_water(tmp_path, steps=40)
    StreamWriter(tmp_path / "run.h5", ["total"], dt_fs=0.25).close()
    server, lammps = start_ipi(tmp_path, address)
    apt = start_aptnn(tmp_path, address, ["-o", "run.h5"])
    try:
        wait_until(lambda: apt.poll() is not None, tmp_path)
    finally:
        kill_all(server, lammps, apt)
    log = (tmp_path / "aptnn-ipi.log").read_text()
    assert apt.returncode == 2, log
    assert "worker failed" in log and "run.h5: exists but holds no i-PI client state" in log and "Traceback" not in log


def test_unknown_species_fails_before_connecting(tmp_path):
    """Species the model does not know fail at once, before i-PI is committed (no server needed)."""
    (tmp_path / "c.xyz").write_text("2\n\nC 0 0 0\nO 0 0 1.2\n")
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, "--address", "nowhere", "--dt", "0.5", "--structure", "c.xyz",
                           "--connect-timeout", "600"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120 * time_scale())
    assert proc.returncode == 2 and time.monotonic() - t0 < 100 * time_scale()
    assert proc.stderr.strip().splitlines() == [
        "aptnn-ipi: error: c.xyz: element(s) ['C'] unknown to the model water-rpbe-d3 (it knows ['H', 'O'])"]


def test_unknown_model_fails_before_connecting(tmp_path):
    (tmp_path / "w.xyz").write_text("1\n\nO 0 0 0\n")
    proc = subprocess.run([*CLI, "--address", "nowhere", "--dt", "0.5", "--structure", "w.xyz",
                           "--model", "no-such-model"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60 * time_scale())
    assert proc.returncode == 2 and "no-such-model" in proc.stderr


def test_bec_and_field_replies():
    from ase.build import molecule

    import aptnn

    model = aptnn.load_model(MODEL)
    atoms = molecule("H2O")
    field = np.array([0.01, -0.02, 0.005])
    settings = ClientSettings(address="unused", output="unused.h5", symbols=atoms.get_chemical_symbols(),
                              dt_fs=0.5, bec=True, efield=field)
    client = IPIClient(model, settings)
    from aptnn import units
    req = Request(0, np.zeros((3, 3)), atoms.positions / units.BOHR_TO_ANGSTROM)
    energy, forces, virial, extras, apt = client._reply(req)
    p = exact_sum_rule(model.predict(atoms))
    np.testing.assert_allclose(apt, p, atol=1e-12)
    np.testing.assert_allclose(p.sum(0), 0, atol=1e-12)
    np.testing.assert_allclose(forces, np.einsum("nxz,x->nz", p, field), atol=1e-12)  # F_iζ = Σ_ξ P_i[ξ,ζ] E_ξ
    import json
    bec = np.array(json.loads(extras)["BEC"])
    assert bec.shape == (9, 3)
    # i-PI: Z[3i+α, β] = ∂μ_β/∂R_iα, the transpose of P_i[β, α]
    for i in range(3):
        np.testing.assert_allclose(bec[3 * i:3 * i + 3], p[i].T, atol=1e-12)
    assert energy == 0 and not virial.any()


def test_centroid_contraction_mode(tmp_path):
    """<force nbeads='1'>: i-PI sends the centroid only; one series, labelled as APT at the centroid."""
    run_ipi_pimd(tmp_path, steps=20, aptnn_args=["-o", "run.dmdt.h5"],
                 aptnn_force="<force forcefield='aptnn' nbeads='1'/>")
    info = read_info(tmp_path / "run.dmdt.h5")
    assert info.series == ["centroid", "group:O", "group:H"]
    assert info.estimator == "increment/apt-at-centroid"
    assert "20 steps written (21 requests" in (tmp_path / "aptnn-ipi.log").read_text().replace(" to run.dmdt.h5", "")


@pytest.mark.parametrize("example,expected", [
    ("water_pimd", {"nbeads": 4, "dt_fs": 0.25, "rid_offset": 4, "contracted": False}),
    ("water_classical", {"nbeads": 1, "dt_fs": 0.5, "rid_offset": 1, "contracted": False}),
    ("water_driven_bec", {"nbeads": 1, "dt_fs": 0.5, "rid_offset": 1, "contracted": False}),
])
def test_settings_read_from_the_example_inputs(example, expected):
    from aptnn.drivers.ipi.cli import read_ipi_input

    path = Path(__file__).resolve().parents[1] / "ipi_examples" / example / "input.xml"
    found = read_ipi_input(str(path), "aptnn-example-apt")
    assert {k: found[k] for k in expected} == expected
    assert found["temperature_K"] == pytest.approx(300.0) and found["structure"].endswith("init.xyz")


@pytest.mark.slow
def test_pimd_example_script_runs(tmp_path):
    """ipi_examples/water_pimd/run.sh in quick mode ends with a spectrum plot."""
    import shutil
    import subprocess

    src = Path(__file__).resolve().parents[1] / "ipi_examples"
    shutil.copytree(src, tmp_path / "ex")
    res = subprocess.run(["bash", str(tmp_path / "ex" / "water_pimd" / "run.sh")], env={**__import__("os").environ,
                         "QUICK": "1"}, capture_output=True, text=True, timeout=600 * time_scale())
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "ex" / "water_pimd" / "spectrum.png").stat().st_size > 10_000
    assert "200 steps written" in res.stdout


def test_time_step_from_ipi_init_parameters_reaches_the_worker_process(tmp_path):
    """No --dt, no --ipi-input: the time step arrives in i-PI's INIT string (<parameters>), after the worker
    process started; it must still reach it."""
    address = prepare_ipi_water(tmp_path, steps=10)  # 4 beads; aptnn's force after LAMMPS': rid offset 4
    xml = (tmp_path / "input.xml").read_text()
    xml = xml.replace(f"<address>{address}-apt</address></ffsocket>",
                      f"<address>{address}-apt</address><parameters>{{dt: 0.25}}</parameters></ffsocket>")
    (tmp_path / "input.xml").write_text(xml)
    server, lammps = start_ipi(tmp_path, address)
    apt = subprocess.Popen([sys.executable, "-m", "aptnn.drivers.ipi.cli", "--address", f"{address}-apt",
                            "--structure", "init.xyz", "--nbeads", "4", "--rid-offset", "4", "-o", "run.h5"],
                           cwd=tmp_path, stdout=open(tmp_path / "aptnn-ipi.log", "w"), stderr=subprocess.STDOUT)
    finish([server, lammps, apt], 180, tmp_path)
    assert apt.returncode == 0, (tmp_path / "aptnn-ipi.log").read_text()
    info = read_info(tmp_path / "run.h5")
    assert info.dt_fs == pytest.approx(0.25) and n_frames(tmp_path / "run.h5") == 10
