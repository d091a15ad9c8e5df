"""aptnn-lammps faults against real LAMMPS, with real signals: SIGKILL and a restart from a restart file,
SIGTERM, a LAMMPS error mid-input, the refusals (one line on stderr, exit 2), minimize and --skip-runs.

Every run is a subprocess (``python -m aptnn.drivers.lammps.cli``) on 8 SPC/Fw waters in tmp_path with
``--log none --no-screen --threads 1``; waits are on progress (aptnn.demo.ipi.wait_until), and
APTNN_TEST_TIME_SCALE multiplies every limit.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from aptnn.demo import spcfw_setup, water_data
from aptnn.demo.ipi import kill_all, tagged, tagged_pids, time_scale, wait_until
from aptnn.io.stream import complete_frames, n_frames, read_info

CLI = [sys.executable, "-m", "aptnn.drivers.lammps.cli"]
QUIET = ["--log", "none", "--no-screen", "--threads", "1", "--status-every", "0"]
N_WATERS = 8
DT_FS = 0.5
HEAD = f"""include ff.lmp
timestep {DT_FS}
velocity all create 300.0 4928 mom yes rot yes dist gaussian
fix nve all nve
"""
#: the run that the SIGKILL and SIGTERM tests interrupt: NVE (no random numbers), restart files every 20 steps
RESTART_EVERY, TOTAL = 20, 120
RESTARTING = HEAD + f"restart {RESTART_EVERY} r.*.restart\nrun {TOTAL}\n"


def water(workdir: Path, n: int = N_WATERS, ff: str | None = None) -> Path:
    """water.data and ff.lmp (SPC/Fw, real units) in ``workdir``; ``ff``: other force-field text."""
    text, box = water_data(n, seed=1)
    (workdir / "water.data").write_text(text)
    (workdir / "ff.lmp").write_text(ff if ff is not None else spcfw_setup("water.data", box))
    return workdir


def run_cli(workdir: Path, script: str, *args: str, name: str = "in.lammps", env: dict | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    (workdir / name).write_text(script)
    return subprocess.run([*CLI, name, *QUIET, *args], cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout * time_scale())


def start_cli(workdir: Path, script: str, *args: str, env: dict, name: str = "in.lammps") -> subprocess.Popen:
    (workdir / name).write_text(script)
    return subprocess.Popen([*CLI, name, *QUIET, *args], cwd=workdir, stdout=open(workdir / "out.log", "w"),
                            stderr=open(workdir / "err.log", "w"), env={**os.environ, **env})


def rows(path: Path) -> dict[str, np.ndarray]:
    """The complete rows of a stream: time, dMdt, check (and kinetic_temperature when recorded)."""
    with h5py.File(path, "r", swmr=True) as f:
        n = complete_frames(f)
        return {name: f[name][:n] for name in ("time", "dMdt", "check", "kinetic_temperature") if name in f}


def uniform(times: np.ndarray, dt: float = DT_FS) -> bool:
    """Times (k + ½)·Δt, k = 0 … n−1 (increment rows): no gap, no duplicate, from the start."""
    return np.allclose(times, (np.arange(len(times)) + 0.5) * dt, rtol=0, atol=1e-9)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The stderr of a refused run: exactly one line, aptnn-lammps' error, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aptnn-lammps: error: "), proc.stderr
    return lines[0]


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The rows of one uninterrupted run of RESTARTING (every step through the network: --apt-every 1), and
    its stream file ("path": not to be modified)."""
    workdir = water(tmp_path_factory.mktemp("reference"))
    proc = run_cli(workdir, RESTARTING, "-o", "ref.h5", "--apt-every", "1")
    assert proc.returncode == 0, proc.stderr
    out = rows(workdir / "ref.h5")
    assert len(out["time"]) == TOTAL and uniform(out["time"])
    return {**out, "path": workdir / "ref.h5"}


def wait_for_rows(proc: subprocess.Popen, out: Path, count: int, workdir: Path) -> bool:
    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return out.exists() and n_frames(out) >= count
        except (OSError, KeyError):  # created but not yet laid out
            return False

    return wait_until(ready, workdir) and proc.poll() is None


# --- signals ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_then_read_restart_continues_the_stream(tmp_path, reference):
    """SIGKILL mid-run (--queue 4 holds LAMMPS a few steps ahead of the model): the worker closes the stream
    (readable, every written row kept); the input rerun from the newest restart file the stream holds, same
    -o, continues it with no gap or duplicate, equal to the uninterrupted run."""
    water(tmp_path)
    tag, env = tagged()
    env["APTNN_FLUSH_SECONDS"] = "0.2"
    out = tmp_path / "run.h5"
    proc = start_cli(tmp_path, RESTARTING, "-o", "run.h5", "--apt-every", "1", "--queue", "4", env=env)
    try:
        assert wait_for_rows(proc, out, 2 * RESTART_EVERY + 5, tmp_path), (tmp_path / "err.log").read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the worker notices its parent's death (watchdog, 0.5 s) and closes the stream
        assert wait_until(lambda: tagged_pids(tag) == [], None, stall_s=20), tagged_pids(tag)
    finally:
        kill_all(proc)
    read_info(out)
    killed = rows(out)
    n = len(killed["time"])
    assert 2 * RESTART_EVERY + 5 <= n < TOTAL and uniform(killed["time"])
    np.testing.assert_array_equal(killed["dMdt"], reference["dMdt"][:n])  # same input, same numbers

    # the newest restart file at a step the stream holds (row k is completed by step k + 1)
    written = sorted(int(re.match(r"r\.(\d+)\.restart", p.name).group(1)) for p in tmp_path.glob("r.*.restart"))
    held = [s for s in written if 0 < s <= n]
    assert held, (written, n)
    step = held[-1]
    resume = f"""read_restart r.{step}.restart
kspace_style pppm 1e-5
fix nve all nve
run {TOTAL} upto
"""
    again = run_cli(tmp_path, resume, "-o", "run.h5", "--apt-every", "1", name="in.resume")
    assert again.returncode == 0, again.stderr
    assert f"{TOTAL - step} rows written" in again.stderr, again.stderr
    done = rows(out)
    assert len(done["time"]) == TOTAL and uniform(done["time"])
    np.testing.assert_array_equal(done["dMdt"][:step], reference["dMdt"][:step])
    difference = relative_difference(done["dMdt"], reference["dMdt"])
    print(f"\nSIGKILL after {n} rows, restart at step {step} (restart files {written}): rows after it differ from "
          f"the uninterrupted run by {difference:.2e} (max |Δ| / max |dM/dt|)")
    assert difference < 1e-8, difference


def test_sigterm_ends_with_status_0_and_a_prefix_of_the_run(tmp_path, reference):
    water(tmp_path)
    tag, env = tagged()
    env["APTNN_FLUSH_SECONDS"] = "0.2"
    out = tmp_path / "run.h5"
    proc = start_cli(tmp_path, RESTARTING, "-o", "run.h5", "--apt-every", "1", "--queue", "4", env=env)
    try:
        assert wait_for_rows(proc, out, 10, tmp_path), (tmp_path / "err.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: proc.poll() is not None, None, stall_s=60)
        assert wait_until(lambda: tagged_pids(tag) == [], None, stall_s=20), tagged_pids(tag)
    finally:
        kill_all(proc)
    err = (tmp_path / "err.log").read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "(stopped by a signal)" in err, err
    info = read_info(out)
    assert info.dt_fs == DT_FS and info.natoms == 3 * N_WATERS
    got = rows(out)
    n = len(got["time"])
    assert 10 <= n < TOTAL and uniform(got["time"]), n
    assert f"{n} rows written" in err, err
    with h5py.File(out, "r") as f:  # closed cleanly: every row confirmed by a flush
        assert int(f["flushed"][0]) == f["dMdt"].shape[0] == n
    np.testing.assert_array_equal(got["dMdt"], reference["dMdt"][:n])


# --- LAMMPS errors and refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    ("this_is_no_command 1 2", "this_is_no_command"),
    # an error in the setup of the next run (no charge left for PPPM): LAMMPS' instance crashed (SIGSEGV) when
    # deleted after it, until aptnn-lammps left it undeleted
    ("delete_atoms group all\nrun 20", "kspace_modify gewald"),
])
def test_lammps_error_mid_input_keeps_the_run_before_it(tmp_path, bad, message):
    water(tmp_path)
    script = HEAD + f"run 20\n{bad}\nrun 20\n"
    proc = run_cli(tmp_path, script, "-o", "run.h5")
    line = one_error_line(proc)
    line_no = 6 + bad.count("\n")
    assert f"in.lammps:{line_no}" in line and message in line, line
    got = rows(tmp_path / "run.h5")
    assert len(got["time"]) == 20 and uniform(got["time"])


def refused(tmp_path: Path, script: str, *args: str) -> str:
    proc = run_cli(tmp_path, script, "-o", "run.h5", *args)
    return one_error_line(proc)


def refused_at_once(tmp_path: Path, script: str, *args: str) -> str:
    """A refusal at the first MD step (LAMMPS side, before any row): no stream file is left behind. The model
    runs in a thread (--worker thread): the checks do not depend on it, and a second Python process that
    imports torch costs seconds on busy cores (the process worker's error paths are tested above and below)."""
    line = refused(tmp_path, script, "--worker", "thread", *args)
    assert not (tmp_path / "run.h5").exists()
    return line


def test_refuses_a_changing_atom_count(tmp_path):
    water(tmp_path)
    line = refused(tmp_path, HEAD + "run 10\ngroup gone molecule 1\ndelete_atoms group gone mol yes\nrun 10\n")
    assert "number of atoms changed from 24 to 21 at LAMMPS step 10" in line, line
    assert len(rows(tmp_path / "run.h5")["time"]) == 10


def test_refuses_a_changing_time_step(tmp_path):
    water(tmp_path)
    line = refused(tmp_path, HEAD + "run 10\ntimestep 0.25\nrun 10\n")
    assert "time step changed from 0.5 fs to 0.25 fs" in line, line
    assert len(rows(tmp_path / "run.h5")["time"]) == 10


def test_refuses_a_mass_of_no_element(tmp_path):
    water(tmp_path)
    line = refused_at_once(tmp_path, HEAD.replace("timestep", "mass 2 5.0\ntimestep") + "run 10\n")
    assert "type 2 has mass 5" in line and "--types" in line, line


def test_refuses_an_element_the_model_does_not_know(tmp_path):
    water(tmp_path)
    line = refused_at_once(tmp_path, HEAD + "run 10\n", "--types", "O Na")
    assert "['Na'] unknown to the model" in line, line


def test_refuses_mixed_periodicity(tmp_path):
    text, box = water_data(N_WATERS, seed=1)
    ff = spcfw_setup("water.data", box).replace("boundary p p p", "boundary p p f")
    ff = ff.replace("kspace_style pppm 1e-5", "kspace_style pppm 1e-5\nkspace_modify slab 3.0")
    water(tmp_path, ff=ff)
    line = refused_at_once(tmp_path, HEAD + "run 10\n")
    assert "all three periodic" in line, line


def test_refuses_to_continue_an_unrelated_stream_and_leaves_it_intact(tmp_path, reference):
    water(tmp_path)
    shutil.copy(reference["path"], tmp_path / "run.h5")
    other = HEAD.replace("4928", "777") + "run 10\n"  # other velocities: another trajectory, not a restart
    line = refused(tmp_path, other, "--apt-every", "1")
    assert "cannot continue" in line, line
    read_info(tmp_path / "run.h5")
    after = rows(tmp_path / "run.h5")
    for name in ("time", "dMdt", "check", "kinetic_temperature"):
        np.testing.assert_array_equal(after[name], reference[name])


# --- what is streamed ---------------------------------------------------------------------------------------

def test_minimize_is_not_streamed(tmp_path):
    water(tmp_path)
    script = "include ff.lmp\ntimestep 0.5\nminimize 1e-4 1e-6 50 500\nreset_timestep 0\n" + \
             "velocity all create 300.0 4928 mom yes rot yes dist gaussian\nfix nve all nve\nrun 12\n"
    proc = run_cli(tmp_path, script, "-o", "run.h5")
    assert proc.returncode == 0, proc.stderr
    got = rows(tmp_path / "run.h5")
    assert len(got["time"]) == 12 and uniform(got["time"])


def test_skip_runs_streams_only_the_later_runs(tmp_path, reference):
    """--skip-runs 1: the first run (10 steps) is not streamed; the second is, from stream time 0, and its rows
    are those of the same steps in one run (the second run's setup rebuilds the neighbour lists: rounding)."""
    water(tmp_path)
    proc = run_cli(tmp_path, HEAD + "run 10\nrun 30\n", "-o", "run.h5", "--apt-every", "1", "--skip-runs", "1")
    assert proc.returncode == 0, proc.stderr
    got = rows(tmp_path / "run.h5")
    assert len(got["time"]) == 30 and uniform(got["time"])
    np.testing.assert_allclose(got["check"], reference["check"][10:40], rtol=0, atol=1e-9)
    difference = relative_difference(got["dMdt"], reference["dMdt"][10:40])
    print(f"\n--skip-runs 1: rows differ from the same steps of one run by {difference:.2e}")
    assert difference < 1e-8, difference


def test_runs_in_a_loop_join_into_one_stream_and_equal_one_run(tmp_path, reference):
    """A `label`/`jump SELF` loop of 4 × `run 10` (the loop part runs through LAMMPS' own reader) streams the
    same 40 rows as one 40-step run: each later run's setup repeats the last step (atoms re-wrapped into the
    box change the unwrapped positions by rounding only) and is skipped."""
    water(tmp_path)
    loop = HEAD + "variable k loop 4\nlabel again\nrun 10\nnext k\njump SELF again\n"
    proc = run_cli(tmp_path, loop, "-o", "run.h5", "--apt-every", "1")
    assert proc.returncode == 0, proc.stderr
    got = rows(tmp_path / "run.h5")
    assert len(got["time"]) == 40 and uniform(got["time"])
    np.testing.assert_allclose(got["check"], reference["check"][:40], rtol=0, atol=1e-9)
    assert relative_difference(got["dMdt"], reference["dMdt"][:40]) < 1e-8


def test_minimize_after_a_loop_command_is_refused_before_lammps_runs(tmp_path):
    water(tmp_path)
    script = HEAD + "label again\nrun 5\nminimize 1e-4 1e-6 50 500\n"
    line = one_error_line(run_cli(tmp_path, script, "-o", "run.h5"))
    assert "minimize" in line and "label" in line
    assert not (tmp_path / "run.h5").exists()
