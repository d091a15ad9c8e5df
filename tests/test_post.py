"""aptnn-post on real LAMMPS output: dM/dt streams, formats, resume after SIGKILL, bad input."""
import os
import signal
import subprocess
import sys
import time

import ase.io
import h5py
import numpy as np
import pytest
from ase import Atoms
from click.testing import CliRunner

import aptnn
from aptnn.cli import post
from aptnn.demo import run_water
from aptnn.errors import InputError
from aptnn.io.stream import n_frames, read_chunks, read_info
from aptnn.io.trajectory import open_trajectory
from aptnn.post import PostSettings, run

MODEL = "water-rpbe-d3"


def parse_dump(path):
    """Independent minimal reader of a LAMMPS custom dump: (steps, elements, positions Å, velocities Å/fs)."""
    steps, pos, vel, elements = [], [], [], None
    lines = open(path).read().splitlines()
    k = 0
    while k < len(lines):
        assert lines[k] == "ITEM: TIMESTEP"
        steps.append(int(lines[k + 1]))
        n = int(lines[k + 3])
        cols = lines[k + 8].split()[2:]
        rows = sorted((r.split() for r in lines[k + 9:k + 9 + n]), key=lambda r: int(r[0]))
        elements = [r[cols.index("element")] for r in rows]
        table = np.array([[float(r[cols.index(c)]) for c in ("xu", "yu", "zu", "vx", "vy", "vz")] for r in rows])
        pos.append(table[:, :3])
        vel.append(table[:, 3:])
        k += 9 + n
    return np.array(steps), elements, np.array(pos), np.array(vel)


@pytest.fixture(scope="module")
def lammps_water(tmp_path_factory):
    """A real LAMMPS run: 32 SPC/Fw waters, 0.5 fs steps, 120 dumped steps (real units)."""
    return run_water(tmp_path_factory.mktemp("lammps"), n_molecules=32, steps=120, equilibrate=200)


def test_lammps_dump_to_stream_equals_python_api(lammps_water, tmp_path):
    out = tmp_path / "w.dmdt.h5"
    res = CliRunner().invoke(post, [str(lammps_water), "-o", str(out), "--timestep", "0.5", "--quiet",
                                    "--spectrum", str(tmp_path / "s.csv"), "--batch-size", "16", "--apt-every", "1"])
    assert res.exit_code == 0, res.output
    info = read_info(out)
    assert info.series == ["total", "group:O", "group:H"] and info.dt_fs == 0.5 and info.natoms == 96
    assert info.model.startswith(MODEL + " sha256:") and info.volume_A3 == pytest.approx(9.865355**3, rel=1e-5)
    assert 150 < info.temperature_K < 500  # kinetic temperature
    t, d = next(read_chunks(out))
    steps, elements, pos, vel = parse_dump(lammps_water)
    np.testing.assert_allclose(t, steps * 0.5)
    model = aptnn.load_model(MODEL)
    box = np.eye(3) * 9.865355
    for k in (0, 57, len(steps) - 1):
        atoms = Atoms(elements, positions=pos[k], cell=box, pbc=True)
        p = model.predict(atoms)
        expected = np.einsum("nij,nj->i", p, vel[k])
        np.testing.assert_allclose(d[k, 0], expected, rtol=1e-4, atol=1e-7)
        o = np.array(elements) == "O"
        np.testing.assert_allclose(d[k, 1], np.einsum("nij,nj->i", p[o], vel[k][o]), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(d[:, 1] + d[:, 2], d[:, 0], atol=1e-9)
    header = (tmp_path / "s.csv").read_text().splitlines()[0]
    assert header.startswith("wavenumber_cm-1,alpha_n_cm-1")


def test_h5md_and_extxyz_of_the_same_frames_give_identical_streams(lammps_water, tmp_path):
    steps, elements, pos, vel = parse_dump(lammps_water)
    steps, pos, vel = steps[:20], pos[:20], vel[:20]
    box = 9.865355
    frames = []
    for k in range(len(steps)):
        a = Atoms(elements, positions=pos[k], cell=np.eye(3) * box, pbc=True)
        a.arrays["velocities"] = vel[k]  # Å/fs
        a.info["time"] = steps[k] * 0.5
        frames.append(a)
    ase.io.write(tmp_path / "w.extxyz", frames)
    with h5py.File(tmp_path / "w.h5", "w") as f:  # H5MD in nm and nm/ps, as GROMACS or MDAnalysis write it
        g = f.create_group("particles/all")
        g["position/value"] = pos / 10.0
        g["position/value"].attrs["unit"] = "nm"
        g["position/time"] = steps * 0.5e-3
        g["position/time"].attrs["unit"] = "ps"
        g["position/step"] = steps
        g["velocity/value"] = vel * 100.0
        g["velocity/value"].attrs["unit"] = "nm ps-1"
        g["box/edges/value"] = np.full((len(steps), 3), box / 10.0)
        g["box/edges/value"].attrs["unit"] = "nm"
        g["box"].attrs["dimension"] = 3
        g["box"].attrs["boundary"] = ["periodic"] * 3
        g["species"] = np.array([8 if e == "O" else 1 for e in elements])
    settings = PostSettings(progress=False)
    a = run([open_trajectory(str(tmp_path / "w.extxyz"))], MODEL, str(tmp_path / "a.h5"), settings)
    b = run([open_trajectory(str(tmp_path / "w.h5"))], MODEL, str(tmp_path / "b.h5"), settings)
    (ta, da), (tb, db) = next(read_chunks(a)), next(read_chunks(b))
    np.testing.assert_allclose(ta, tb, rtol=1e-12)
    np.testing.assert_allclose(da, db, rtol=1e-5, atol=1e-6)  # float32 model, nm→Å rounding
    assert len(ta) == 20
    # seeking to a frame range (shards of distributed runs) gives the same frames as reading through
    for path in (tmp_path / "w.extxyz", tmp_path / "w.h5", lammps_water):
        src = open_trajectory(str(path), timestep=0.5)
        every = list(src)[:20]
        part = list(src.iter_range(7, 12))
        assert len(part) == 5, path
        for f, g in zip(part, every[7:12]):
            np.testing.assert_array_equal(f.atoms.positions, g.atoms.positions)
            np.testing.assert_array_equal(f.velocities, g.velocities)
            assert f.time == g.time and f.step == g.step


def test_finite_difference_velocities(lammps_water, tmp_path):
    steps, elements, pos, vel = parse_dump(lammps_water)
    frames = [Atoms(elements, positions=pos[k], cell=np.eye(3) * 9.865355, pbc=True) for k in range(30)]
    for k, a in enumerate(frames):
        a.info["time"] = 0.5 * k
        a.wrap()  # wrapped coordinates: displacements must use the minimum image
    ase.io.write(tmp_path / "novel.extxyz", frames)
    with pytest.warns(UserWarning, match="central differences"):
        out = run([open_trajectory(str(tmp_path / "novel.extxyz"))], MODEL, str(tmp_path / "fd.h5"),
                  PostSettings(progress=False))
    info = read_info(out)
    assert info.extra["velocity_source"] == "central-difference" and info.extra["fd_step_fs"] == 0.5
    t, d = next(read_chunks(out))
    assert t[0] == 0.5 and len(t) == 28  # first and last frame have no central difference
    model = aptnn.load_model(MODEL)
    exact = np.einsum("nij,nj->i", model.predict(frames[5]), vel[5])
    assert np.linalg.norm(d[4, 0] - exact) < 0.05 * np.linalg.norm(exact)


def test_kill_and_resume_completes_the_same_stream(lammps_water, tmp_path):
    ref = run([open_trajectory(str(lammps_water), timestep=0.5)], MODEL, str(tmp_path / "ref.h5"),
              PostSettings(progress=False, batch_size=4))
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "aptnn.cli_post", str(lammps_water), "-o", str(out), "--timestep", "0.5",
           "--batch-size", "2", "--quiet", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, APTNN_FLUSH_SECONDS="0"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if out.exists() and n_frames(out) >= 20:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = n_frames(out)
    assert 20 <= partial < 121
    res = CliRunner().invoke(post, [str(lammps_water), "-o", str(out), "--timestep", "0.5", "--quiet"])
    assert res.exit_code == 0, res.output
    (tr, dr), (tk, dk) = next(read_chunks(ref)), next(read_chunks(out))
    np.testing.assert_array_equal(tr, tk)
    np.testing.assert_allclose(dk, dr, rtol=1e-5, atol=1e-9)


def test_bad_trajectories(lammps_water, tmp_path):
    steps, elements, pos, vel = parse_dump(lammps_water)
    sodium = ["Na" if e == "O" else e for e in elements]
    frames = [Atoms(sodium, positions=pos[k], cell=np.eye(3) * 9.87, pbc=True, info={"time": k * 0.5})
              for k in range(3)]
    for a, v in zip(frames, vel):
        a.arrays["velocities"] = v
    ase.io.write(tmp_path / "na.extxyz", frames)
    with pytest.raises(InputError, match=r"na.extxyz.*\['Na'\] unknown to the model"):
        run([open_trajectory(str(tmp_path / "na.extxyz"))], MODEL, str(tmp_path / "x.h5"), PostSettings(progress=False))
    frames = [Atoms(elements[: 96 - 3 * (k == 2)], positions=pos[k][: 96 - 3 * (k == 2)], cell=np.eye(3) * 9.87,
                    pbc=True, info={"time": k * 0.5}) for k in range(4)]
    for a, v in zip(frames, vel):
        a.arrays["velocities"] = v[: len(a)]
    ase.io.write(tmp_path / "count.extxyz", frames)
    with pytest.raises(InputError, match="frame 2: 93 atoms instead of 96"):
        run([open_trajectory(str(tmp_path / "count.extxyz"))], MODEL, str(tmp_path / "y.h5"),
            PostSettings(progress=False, batch_size=1))
    fast = [Atoms(elements, positions=pos[k], cell=np.eye(3) * 9.87, pbc=True, info={"time": k * 0.5})
            for k in range(3)]
    for a, v in zip(fast, vel):
        a.arrays["velocities"] = v * 1000  # Å/ps values read as Å/fs
    ase.io.write(tmp_path / "fast.extxyz", fast)
    for temperature in (300.0, None):  # velocities 1000× too fast: 10⁶× the temperature, given or not
        with pytest.raises(InputError, match="fast.extxyz, frame 0: kinetic temperature .* velocity units"):
            run([open_trajectory(str(tmp_path / "fast.extxyz"))], MODEL, str(tmp_path / "z.h5"),
                PostSettings(progress=False, temperature_K=temperature))
    assert not (tmp_path / "z.h5").exists()
    for a, v in zip(fast, vel):
        a.arrays["velocities"] = v * 2.5  # off by ×6 in temperature: a warning only
    ase.io.write(tmp_path / "fast.extxyz", fast)
    with pytest.warns(UserWarning, match="kinetic temperature"):
        run([open_trajectory(str(tmp_path / "fast.extxyz"))], MODEL, str(tmp_path / "z.h5"),
            PostSettings(progress=False, temperature_K=300.0))
    res = CliRunner().invoke(post, [str(lammps_water), "-o", str(tmp_path / "t.h5"), "--quiet"])
    assert res.exit_code == 2 and "--timestep" in res.output and "frame 0" in res.output


@pytest.fixture(scope="module")
def ipi_pimd(tmp_path_factory):
    """A real i-PI PIMD run (4 beads, 32 SPC/Fw waters, LAMMPS fix ipi forces), 30 steps of 0.25 fs."""
    from aptnn.demo.ipi import run_ipi_pimd

    return run_ipi_pimd(tmp_path_factory.mktemp("ipi"), n_molecules=32, nbeads=4, steps=30)


def test_pimd_bead_files_centroid_and_centroid_apt(ipi_pimd, tmp_path):
    from aptnn.io.trajectory import open_run

    sources = open_run(str(ipi_pimd), timestep=0.25)
    assert len(sources) == 4 and all(s.velocity_path for s in sources)
    out = run(sources, MODEL, str(tmp_path / "c.h5"), PostSettings(progress=False))
    info = read_info(out)
    assert info.series == ["bead0", "bead1", "bead2", "bead3", "centroid", "group:O", "group:H"]
    assert info.estimator == "velocity/centroid" and info.extra["nbeads"] == 4 and info.dt_fs == 0.25
    # the run's mean bead kinetic temperature divided by P (this short unequilibrated run heats up)
    from aptnn.post import kinetic_temperature
    per_step = [np.mean([kinetic_temperature(f) for f in beads]) / 4 for beads in zip(*map(iter, sources))]
    assert info.temperature_K == pytest.approx(np.mean(per_step), rel=1e-9)
    assert info.extra["temperature_source"] == "kinetic-mean"
    t, d = next(read_chunks(out))
    assert len(t) == 31
    np.testing.assert_allclose(d[:, 4], d[:, :4].mean(1), atol=1e-12)
    np.testing.assert_allclose(d[:, 5] + d[:, 6], d[:, 4], atol=1e-9)
    assert np.abs(d[:, 0] - d[:, 1]).max() > 1e-4  # beads really differ
    # one bead checked against the Python API on i-PI's own reader (atomic units converted here)
    from ipi import read_trajectory
    pos, vel = read_trajectory(str(ipi_pimd)), read_trajectory(str(ipi_pimd).replace("pos_0", "vel_0"))
    from aptnn import units
    assert info.extra["apt_every"] == 8   # the default: the network every 2 fs; frame 8 is a node
    p = aptnn.load_model(MODEL).predict(pos[8])
    v = vel[8].arrays["velocities"] / units.ASE_TIME_TO_FS  # ASE velocity units → Å/fs
    np.testing.assert_allclose(d[8, 0], np.einsum("nij,nj->i", p, v), rtol=1e-4, atol=1e-7)
    apt = run(open_run(str(ipi_pimd), timestep=0.25), MODEL, str(tmp_path / "a.h5"), PostSettings(progress=False),
              estimator="centroid-apt")
    assert read_info(apt).estimator == "velocity/apt-at-centroid"
    _, da = next(read_chunks(apt))
    np.testing.assert_allclose(da[:, :4], d[:, :4], atol=1e-12)  # bead series are the same
    diff = np.abs(da[:, 4] - d[:, 4]).max()
    assert 1e-6 < diff < 0.5 * np.abs(d[:, 4]).max()  # a different, but related, estimator


def test_mdanalysis_selection_groups(lammps_water, tmp_path):
    res = CliRunner().invoke(post, [str(lammps_water), "-o", str(tmp_path / "g.h5"), "--timestep", "0.5", "--quiet",
                                    "--groups", "water=name O H", "--groups", "first=index 0:2"])
    assert res.exit_code == 0, res.output
    info = read_info(tmp_path / "g.h5")
    assert info.series == ["total", "group:O", "group:H", "group:water", "group:first"]
    _, d = next(read_chunks(tmp_path / "g.h5"))
    np.testing.assert_allclose(d[:, 3], d[:, 0], atol=1e-12)  # every atom is in 'water'
    steps, elements, pos, vel = parse_dump(lammps_water)
    p = aptnn.load_model(MODEL).predict(Atoms(elements, positions=pos[0], cell=np.eye(3) * 9.865355, pbc=True))
    np.testing.assert_allclose(d[0, 4], np.einsum("nij,nj->i", p[:3], vel[0][:3]), rtol=1e-4, atol=1e-7)
    res = CliRunner().invoke(post, [str(lammps_water), "-o", str(tmp_path / "h.h5"), "--timestep", "0.5", "--quiet",
                                    "--groups", "none=name Xx"])
    assert res.exit_code == 2 and "matches no atom" in res.output


@pytest.mark.slow
def test_lammps_example_script_runs(tmp_path):
    """lammps_examples/water_post/run.sh in quick mode: LAMMPS → aptnn-post → spectrum plot."""
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "lammps_examples" / "water_post"
    shutil.copytree(src, tmp_path / "ex", ignore=shutil.ignore_patterns("*.lammpstrj", "*.h5", "spectrum.*"))
    res = subprocess.run(["bash", str(tmp_path / "ex" / "run.sh")], env={**os.environ, "QUICK": "1"},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "ex" / "spectrum.png").stat().st_size > 10_000
    assert read_info(tmp_path / "ex" / "water.dmdt.h5").natoms == 192


def test_h5md_with_an_unknown_unit_names_file_and_dataset(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("particles/all")
        g["position/value"] = np.zeros((2, 3, 3))
        g["position/value"].attrs["unit"] = "furlong"
        g["species"] = np.array([8, 1, 1])
    with pytest.raises(InputError, match=r"bad.h5: /particles/all/position/value: unknown length unit 'furlong'"):
        list(open_trajectory(str(path), timestep=0.5))


def test_positions_only_and_velocity_dumps_of_one_run_give_one_spectrum(lammps_water, tmp_path):
    """Central differences of a velocity-Verlet run are its velocities: no sinc² correction, stretch within 1 %."""
    from aptnn.spectrum import compute_spectrum

    steps, elements, pos, vel = parse_dump(lammps_water)
    with_v, without_v = [], []
    for k in range(len(pos)):
        a = Atoms(elements, positions=pos[k], cell=np.eye(3) * 9.865355, pbc=True, info={"time": 0.5 * k})
        without_v.append(a.copy())
        if 0 < k < len(pos) - 1:  # the frames central differences can serve
            a.arrays["velocities"] = vel[k]
            with_v.append(a)
    ase.io.write(tmp_path / "v.extxyz", with_v)
    ase.io.write(tmp_path / "x.extxyz", without_v)
    settings = PostSettings(progress=False, temperature_K=300.0)
    out_v = run([open_trajectory(str(tmp_path / "v.extxyz"))], MODEL, str(tmp_path / "v.h5"), settings)
    with pytest.warns(UserWarning, match="central differences"):
        out_x = run([open_trajectory(str(tmp_path / "x.extxyz"))], MODEL, str(tmp_path / "x.h5"), settings)
    sv, sx = (compute_spectrum([p], max_lag_fs=25.0) for p in (out_v, out_x))
    band = (sv.wavenumber > 2800) & (sv.wavenumber < 4000)
    stretch_v = np.trapezoid(sv.total[band], sv.wavenumber[band])
    stretch_x = np.trapezoid(sx.total[band], sx.wavenumber[band])
    assert stretch_x == pytest.approx(stretch_v, rel=0.01)
    assert sx.integral() == pytest.approx(sv.integral(), rel=0.01)


def test_stored_temperature_is_the_mean_over_the_run(lammps_water, tmp_path):
    from ase.data import atomic_masses, atomic_numbers
    from scipy import constants as si

    steps, elements, pos, vel = parse_dump(lammps_water)
    m = np.array([atomic_masses[atomic_numbers[e]] for e in elements]) * si.atomic_mass
    per_frame = (m[None, :, None] * (vel * 1e5) ** 2).sum(axis=(1, 2)) / (3 * len(m) * si.k)
    out = run([open_trajectory(str(lammps_water), timestep=0.5)], MODEL, str(tmp_path / "t.h5"),
              PostSettings(progress=False))
    info = read_info(out)
    assert info.extra["temperature_source"] == "kinetic-mean"
    assert info.temperature_K == pytest.approx(per_frame.mean(), rel=1e-4)
    assert abs(per_frame[0] - per_frame.mean()) > 1e-3 * per_frame.mean()  # the first frame alone would differ
    given = run([open_trajectory(str(lammps_water), timestep=0.5)], MODEL, str(tmp_path / "g.h5"),
                PostSettings(progress=False, temperature_K=310.0))
    assert read_info(given).temperature_K == 310.0 and read_info(given).extra["temperature_source"] == "given"


def test_positions_every_tenth_step_are_refused_for_finite_differences(tmp_path):
    """A dump written every 10 steps without velocities would alias the stretch (3628 → 3016 cm⁻¹)."""
    dump = run_water(tmp_path / "md", n_molecules=8, steps=60, equilibrate=20, dump_every=10)
    steps, elements, pos, _ = parse_dump(dump)
    assert np.all(np.diff(steps) == 10)
    text = []
    for step, p in zip(steps, pos):  # the same frames, positions only
        text += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(p)),
                 "ITEM: BOX BOUNDS pp pp pp"] + ["0 6.21" for _ in range(3)] + ["ITEM: ATOMS id element xu yu zu"]
        text += [f"{i + 1} {e} {x:.6f} {y:.6f} {z:.6f}" for i, (e, (x, y, z)) in enumerate(zip(elements, p))]
    (tmp_path / "pos.lammpstrj").write_text("\n".join(text) + "\n")
    res = CliRunner().invoke(post, [str(tmp_path / "pos.lammpstrj"), "--timestep", "0.5", "--units", "real",
                                    "--temperature", "300",
                                    "-o", str(tmp_path / "p.h5"), "--quiet"])
    assert res.exit_code == 2 and "frames are 10 MD steps apart" in res.output, res.output
    assert not (tmp_path / "p.h5").exists()
