"""aptnn-ipi faults against a real i-PI (LAMMPS forces): processes left behind, i-PI left waiting, restarts.

Waits are on progress (aptnn.demo.ipi.wait_until); APTNN_TEST_TIME_SCALE multiplies every limit.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from aptnn.demo.ipi import (
    add_to_aptnn_socket,
    finish,
    kill_all,
    prepare_ipi_water,
    start_aptnn,
    start_ipi,
    tagged,
    tagged_pids,
    time_scale,
    wait_until,
)
from aptnn.io.stream import n_frames, read_chunks

CLI = [sys.executable, "-m", "aptnn.drivers.ipi.cli"]


# --- faults: processes left behind, i-PI left waiting ------------------------------------------------------

def test_no_ipi_server_is_one_error_line_and_exit_2(tmp_path):
    (tmp_path / "w.xyz").write_text("3\n\nO 0 0 0\nH 0.96 0 0\nH 0 0.96 0\n")
    tag, env = tagged()
    proc = subprocess.run([*CLI, "--address", f"nowhere-{tag}", "--dt", "0.5", "--structure", "w.xyz",
                           "--connect-timeout", "3"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, **env}, timeout=120 * time_scale())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"aptnn-ipi: error: no i-PI server at nowhere-{tag} after 3 s"]
    assert tagged_pids(tag) == []  # no worker, no resource tracker left


def test_sigterm_while_waiting_for_ipi_ends_it_promptly(tmp_path):
    (tmp_path / "w.xyz").write_text("3\n\nO 0 0 0\nH 0.96 0 0\nH 0 0.96 0\n")
    tag, env = tagged()
    log = tmp_path / "log"
    proc = subprocess.Popen([*CLI, "--address", f"nowhere-{tag}", "--dt", "0.5", "--structure", "w.xyz",
                             "--connect-timeout", "3600"], cwd=tmp_path, env={**os.environ, **env},
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: "connecting to i-PI" in log.read_text(), None, stall_s=120)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        ended = wait_until(lambda: proc.poll() is not None, None, stall_s=10)
        seconds = time.monotonic() - t0
    finally:
        kill_all(proc)
    assert ended and proc.returncode == 0, (seconds, log.read_text())
    assert "stopped while waiting for i-PI" in log.read_text() and "Traceback" not in log.read_text()
    assert wait_until(lambda: tagged_pids(tag) == [], None, stall_s=5)


def test_worker_leaves_when_the_client_is_sigkilled(tmp_path, monkeypatch):
    """SIGKILL of aptnn-ipi mid-run (queue full: the worker is behind): the worker process notices within
    seconds, closes the stream file cleanly (every written step kept) and exits."""
    monkeypatch.setenv("APTNN_FLUSH_SECONDS", "0")
    address = prepare_ipi_water(tmp_path, steps=5000)
    tag, env = tagged()
    server, lammps = start_ipi(tmp_path, address)
    apt = start_aptnn(tmp_path, address, ["-o", "run.h5", "--threads", "1", "--queue", "200", "--nice", "19"],
                      env=env)
    out = tmp_path / "run.h5"
    try:
        assert wait_until(lambda: out.exists() and n_frames(out) >= 5, tmp_path)
        time.sleep(1)
        assert len(tagged_pids(tag)) >= 2  # client and worker
        apt.kill()
        apt.wait()
        t0 = time.monotonic()
        gone = wait_until(lambda: tagged_pids(tag) == [], None, stall_s=10)
        seconds = time.monotonic() - t0
    finally:
        kill_all(server, lammps, apt)
        for pid in tagged_pids(tag):
            os.kill(pid, signal.SIGKILL)
    assert gone, f"worker still alive {seconds:.1f} s after its client was killed"
    print(f"worker gone {seconds:.2f} s after SIGKILL of its client")
    with h5py.File(out, "r") as f:  # closed cleanly: opens without SWMR
        frames = f["time"].shape[0]
        assert frames >= 5 and f["dMdt"].shape[0] == frames
    t, d = next(read_chunks(out))
    np.testing.assert_allclose(t, 0.25 * (np.arange(frames) + 0.5))
    assert np.isfinite(d).all()


WORKER_FED_HALF_A_MESSAGE = """
import dataclasses, functools, os, signal
import numpy as np
from aptnn.drivers.ipi.worker import ClientSettings, ProcessWorker, load_predictor
settings = ClientSettings(address="none", output="never.h5", symbols=["O"], dt_fs=0.5, resume=False)
worker = ProcessWorker(functools.partial(load_predictor, "water-rpbe-d3"), settings)
worker.start()  # returns at once; the worker needs seconds to import its modules
worker.queue.put(dataclasses.replace(settings, groups={"big": np.zeros(8_000_000)}))  # 64 MB item
print(worker.process.pid, flush=True)
import time; time.sleep(1.0)  # the queue's feeder thread has written 64 kB of it and waits for the reader
os.kill(os.getpid(), signal.SIGKILL)  # the pipe keeps a partial message
"""


def test_worker_leaves_when_its_client_dies_mid_message(tmp_path):
    """The client dies while the queue's feeder thread writes a large item: the worker, blocked reading
    that partial message, still notices and exits."""
    tag, env = tagged()
    try:  # output to a file: the worker would hold a pipe open
        proc = subprocess.run([sys.executable, "-c", WORKER_FED_HALF_A_MESSAGE], stdout=open(tmp_path / "out", "w"),
                              cwd=tmp_path, env={**os.environ, **env}, timeout=120 * time_scale())
        assert proc.returncode == -signal.SIGKILL
        worker = int((tmp_path / "out").read_text().split()[0])
        t0 = time.monotonic()
        gone = wait_until(lambda: tagged_pids(tag) == [], None, stall_s=60)
        print(f"worker gone {time.monotonic() - t0:.2f} s after its client died")
    finally:
        for pid in tagged_pids(tag):
            os.kill(pid, signal.SIGKILL)
    assert gone, f"worker {worker} blocked"
    assert not (tmp_path / "never.h5").exists()


def test_sigterm_while_ipi_is_unresponsive_ends_the_client(tmp_path):
    """i-PI stops answering (SIGSTOP) mid-run: SIGTERM ends aptnn-ipi (a second one if a step was open),
    worker included; the stream file is closed cleanly."""
    address = prepare_ipi_water(tmp_path, steps=5000)
    tag, env = tagged()
    server, lammps = start_ipi(tmp_path, address)
    apt = start_aptnn(tmp_path, address, ["-o", "run.h5", "--queue", "4"], env=env)
    out = tmp_path / "run.h5"
    try:
        assert wait_until(lambda: out.exists() and n_frames(out) >= 3, tmp_path)
        server.send_signal(signal.SIGSTOP)
        time.sleep(1)
        apt.send_signal(signal.SIGTERM)
        if not wait_until(lambda: apt.poll() is not None, None, stall_s=10):
            apt.send_signal(signal.SIGTERM)  # a step was open: the second signal leaves at once
        ended = wait_until(lambda: apt.poll() is not None, None, stall_s=20)
        gone = wait_until(lambda: tagged_pids(tag) == [], None, stall_s=10)
    finally:
        server.send_signal(signal.SIGCONT)
        kill_all(server, lammps, apt)
        for pid in tagged_pids(tag):
            os.kill(pid, signal.SIGKILL)
    log = (tmp_path / "aptnn-ipi.log").read_text()
    assert ended and gone and apt.returncode == 0, log
    assert "steps written" in log and "Traceback" not in log
    with h5py.File(out, "r") as f:
        assert f["time"].shape[0] >= 3


def test_ipi_timeout_hands_the_request_of_a_killed_client_to_another(tmp_path, monkeypatch):
    """With <timeout> (and consolidate_messages false) on the aptnn <ffsocket>, i-PI re-queues the request a
    SIGKILLed aptnn-ipi held and a second client (here i-PI's dummy driver) finishes the run."""
    monkeypatch.setenv("APTNN_FLUSH_SECONDS", "0")
    address = prepare_ipi_water(tmp_path, steps=150)
    add_to_aptnn_socket(tmp_path, address, "<timeout>5</timeout><consolidate_messages>false</consolidate_messages>")
    server, lammps = start_ipi(tmp_path, address)
    apt = start_aptnn(tmp_path, address, ["-o", "run.h5", "--threads", "1"])
    out, dummy = tmp_path / "run.h5", None
    try:
        assert wait_until(lambda: out.exists() and n_frames(out) >= 5, tmp_path)
        apt.kill()
        dummy = subprocess.Popen([str(Path(sys.executable).with_name("i-pi-driver-py")), "-u", "-a",
                                  f"{address}-apt", "-m", "dummy"], cwd=tmp_path,
                                 stdout=open(tmp_path / "dummy.log", "w"), stderr=subprocess.STDOUT)
        finished = wait_until(lambda: server.poll() is not None, tmp_path, stall_s=60)
    finally:
        kill_all(server, lammps, apt, dummy)
    assert finished and server.returncode == 0, (tmp_path / "ipi.log").read_text()[-3000:]


# --- restarts: the stream continues at i-PI's restart step ---------------------------------------------------

def _restartable_run(workdir: Path, steps: int) -> str:
    """16-molecule, 2-bead NVE water (deterministic) writing a checkpoint every 40 steps, floats in full."""
    address = prepare_ipi_water(workdir, n_molecules=16, nbeads=2, steps=steps, nve=True)
    xml = (workdir / "input.xml").read_text()
    xml = xml.replace("<simulation verbosity='low' safe_stride='100'>",
                      "<simulation verbosity='low' safe_stride='40' floatformat='%25.16e'>")
    xml = xml.replace("<output prefix='sim'>", "<output prefix='sim'>\n    <checkpoint stride='40'/>")
    (workdir / "input.xml").write_text(xml)
    return address


def _restart_step(path: Path) -> int:
    return int(re.search(r"<step>\s*(\d+)\s*</step>", path.read_text()).group(1))


@pytest.mark.parametrize("estimator,every", [("increment", 1), ("velocity", 1), ("increment", 4)])
def test_restart_continues_the_stream_at_the_restart_step(tmp_path, monkeypatch, estimator, every):
    """SIGTERM to i-PI mid-run (its RESTART lies behind the stream: checkpoints every 40 steps), restart i-PI
    from RESTART and aptnn-ipi: the stream equals an uninterrupted run's, no gap, no duplicate. With APTs every
    K = 4 steps the restart step is a node: the ≤ 3K rows after it are interpolated one-sidedly, all others equal
    the uninterrupted run's."""
    monkeypatch.setenv("APTNN_FLUSH_SECONDS", "0")
    steps, args = 200, ["--threads", "1", "--estimator", estimator, "--apt-every", str(every)]
    if every > 1:  # a short queue holds i-PI within ~8 + 3K steps of the rows, so it cannot end its run before
        args += ["--queue", "8"]  # the SIGTERM (the increment estimator resumes from the rows, not the ring)
    ref, run = tmp_path / "ref", tmp_path / "run"
    address = _restartable_run(ref, steps)
    server, lammps = start_ipi(ref, address)
    finish([server, lammps, start_aptnn(ref, address, ["-o", "ref.h5", *args])], 300, ref)
    address = _restartable_run(run, steps)
    server, lammps = start_ipi(run, address)
    apt = start_aptnn(run, address, ["-o", "run.h5", *args])
    out = run / "run.h5"
    try:
        # K > 1: the worker keeps up easily and rows lag up to 3K steps: stop earlier, before i-PI ends its run
        assert wait_until(lambda: out.exists() and n_frames(out) >= (90 if every == 1 else 50), run)
        server.send_signal(signal.SIGTERM)  # i-PI writes RESTART at its last safe step and tells clients EXIT
        finish([server, lammps, apt], 120, run)
    finally:
        kill_all(server, lammps, apt)
    assert apt.returncode == 0, (run / "aptnn-ipi.log").read_text()
    before, restart = n_frames(out), _restart_step(run / "RESTART")
    assert restart < steps, f"i-PI ended its {steps} steps before the SIGTERM: nothing left to restart"
    server, lammps = start_ipi(run, address, "RESTART")
    apt = start_aptnn(run, address, ["-o", "run.h5", *args], log="second.log")
    finish([server, lammps, apt], 300, run)
    log = (run / "second.log").read_text()
    assert server.returncode == 0 and apt.returncode == 0, log
    (tr, dr), (t, d) = next(read_chunks(ref / "ref.h5")), next(read_chunks(out))
    expected = steps if estimator == "increment" else steps - 1
    print(f"{estimator}: {before} frames at SIGTERM, i-PI restarted at step {restart}, {len(t)} frames after")
    assert restart <= before  # the stream was ahead of (or at) i-PI's restart: rows beyond it are dropped
    assert len(t) == len(tr) == expected
    np.testing.assert_allclose(t, tr, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.diff(t), 0.25, rtol=1e-9)
    seam = slice(max(restart - 5, 0), restart + 5)
    seam_err = np.abs(d[seam] - dr[seam]).max() / np.abs(dr[seam]).max()
    print(f"{estimator}, K = {every}: largest deviation from the uninterrupted run: {seam_err:.2g} (relative) at "
          f"the seam, {np.abs(d - dr).max() / np.abs(dr).max():.2g} overall")
    if every == 1:
        assert seam_err < 1e-6
        assert np.abs(d - dr).max() < 1e-4 * np.abs(dr).max()
    else:
        assert seam_err < 2e-2          # interpolation error, in the rows after the restart only
        # rows of the ≤ 3K steps before the stop (written at SIGTERM, one-sided) and after the restart
        outside = np.r_[0:max(0, min(restart, before) - 3 * every), restart + 3 * every + 1:len(t)]
        assert np.abs(d[outside] - dr[outside]).max() < 1e-4 * np.abs(dr).max()


def test_restart_ahead_of_the_stream_is_refused(tmp_path):
    """Steps missing between the stream's end and i-PI's restart (here: a dummy driver ran i-PI on without
    aptnn): aptnn-ipi refuses with an error naming the file and its last step, and leaves the stream as is."""
    address = prepare_ipi_water(tmp_path, n_molecules=16, nbeads=2, steps=600, nve=True)
    server, lammps = start_ipi(tmp_path, address)
    apt = start_aptnn(tmp_path, address, ["-o", "run.h5", "--queue", "4"])
    out, dummy = tmp_path / "run.h5", None
    try:
        assert wait_until(lambda: out.exists() and n_frames(out) >= 10, tmp_path)
        apt.send_signal(signal.SIGTERM)  # leaves between steps; i-PI goes on with the dummy driver
        wait_until(lambda: apt.poll() is not None, tmp_path)
        dummy = subprocess.Popen([str(Path(sys.executable).with_name("i-pi-driver-py")), "-u", "-a",
                                  f"{address}-apt", "-m", "dummy"], cwd=tmp_path,
                                 stdout=open(tmp_path / "dummy.log", "w"), stderr=subprocess.STDOUT)
        finish([server, lammps, dummy], 120, tmp_path)
    finally:
        kill_all(server, lammps, apt, dummy)
    assert server.returncode == 0 and apt.returncode == 0
    frames = n_frames(out)
    assert frames < 600  # aptnn-ipi stopped mid-run: i-PI's RESTART (at the end, step 600) lies ahead
    restart = (tmp_path / "RESTART").read_text()
    (tmp_path / "RESTART").write_text(restart.replace("<total_steps>600</total_steps>",
                                                      "<total_steps>640</total_steps>"))
    server, lammps = start_ipi(tmp_path, address, "RESTART")
    apt = start_aptnn(tmp_path, address, ["-o", "run.h5"], log="second.log")
    try:
        wait_until(lambda: apt.poll() is not None, tmp_path)
    finally:
        kill_all(server, lammps, apt)  # i-PI would wait for a client forever
    log = (tmp_path / "second.log").read_text()
    assert apt.returncode == 2, log
    assert "run.h5: cannot continue" in log and f"do not follow its last step {frames}" in log, log
    assert "ahead of the stream" in log and "Traceback" not in log
    assert n_frames(out) == frames
