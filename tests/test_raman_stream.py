"""dα/dt streamed beside dM/dt by the producers (aptnn-post, the i-PI/LAMMPS step processor) for a model with a
PGT head: the rows equal Σ_i G_i·v_i computed independently from the model's PGTs, the APT rows are unchanged by
the extra head, groups and committee members add up, resume continues /dAdt, and `aptnn spectrum --raman` reads
the result. Models are small random float64 networks (helpers.random_network) saved as real checkpoints."""
import ase.io
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import random_network, water_box

from aptnn import units
from aptnn.cli import main
from aptnn.drivers.ipi.processor import ClientSettings, StepProcessor
from aptnn.errors import InputError
from aptnn.io.stream import read_chunks, read_info
from aptnn.io.trajectory import open_trajectory
from aptnn.keys import VOIGT, VOIGT_NAMES
from aptnn.model.checkpoint import save_checkpoint
from aptnn.model.network import HeadsNetwork
from aptnn.post import PostSettings, run
from aptnn.predict import APTPredictor

DT = 0.5  # fs
PGT_SCALE = [0.5, 2.0, 1.5, 3.0]


def pgt_model(path, targets=("apt", "pgt"), seed=1, members=1):
    nets = [random_network(targets=list(targets), pgt_irrep_scale=PGT_SCALE, seed=seed + k) for k in range(members)]
    save_checkpoint(path, nets, {"description": "random test model"})
    return str(path)


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    """12 frames of 8 waters (24 atoms, periodic) moving with random velocities (Å/fs), extxyz with time."""
    rng = np.random.default_rng(3)
    atoms = water_box(2, 3.1, seed=4)
    vel = rng.normal(scale=0.01, size=(len(atoms), 3))
    frames = []
    for k in range(12):
        a = atoms.copy()
        a.positions = atoms.positions + k * DT * vel + 0.002 * np.sin(0.7 * k) * rng.normal(size=vel.shape)
        a.arrays["velocities"] = vel + 0.001 * rng.normal(size=vel.shape)
        a.info["time"] = k * DT
        frames.append(a)
    path = tmp_path_factory.mktemp("traj") / "traj.extxyz"
    ase.io.write(path, frames, format="extxyz")
    return str(path), ase.io.read(path, ":")   # as written (8 decimals)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"both": pgt_model(d / "both.pt"), "apt": pgt_model(d / "apt.pt", ("apt",)),
            "pgt": pgt_model(d / "pgt.pt", ("pgt",)), "committee": pgt_model(d / "committee.pt", members=2)}


def voigt(g_dot_v: np.ndarray) -> np.ndarray:
    return np.stack([g_dot_v[..., i, j] for i, j in VOIGT], axis=-1)


def post(path, model, out, **settings):
    predictor = APTPredictor.load(model, dtype="float64")
    return run([open_trajectory(path)], model, str(out), PostSettings(progress=False, apt_every=1, **settings),
               predictor=predictor)


def test_post_dadt_is_the_pgt_contracted_with_the_velocities(trajectory, models, tmp_path):
    path, frames = trajectory
    out = post(path, models["both"], tmp_path / "s.h5")
    info = read_info(out)
    assert info.has_dadt and info.series[:3] == ["total", "group:O", "group:H"]
    dadt = next(read_chunks(out, dataset="dAdt"))[1]
    dmdt = next(read_chunks(out))[1]
    predictor = APTPredictor.load(models["both"], dtype="float64")
    symbols = np.array(frames[0].get_chemical_symbols())
    for k, atoms in enumerate(frames):
        g = predictor.predict_pgt(atoms)
        assert np.abs(g.sum(0)).max() < 1e-12                      # the sum rule of the head
        per_atom = np.einsum("nijk,nk->nij", g, atoms.arrays["velocities"])
        expected = [voigt(per_atom.sum(0)), voigt(per_atom[symbols == "O"].sum(0)),
                    voigt(per_atom[symbols == "H"].sum(0))]
        np.testing.assert_allclose(dadt[k, :3], expected, rtol=1e-10, atol=1e-14)
        apt = predictor.predict(atoms)
        np.testing.assert_allclose(dmdt[k, 0], np.einsum("nij,nj->i", apt, atoms.arrays["velocities"]),
                                   rtol=1e-10, atol=1e-14)
    assert np.abs(dadt).max() > 1e-6                               # a non-trivial signal
    with h5py.File(out) as f:
        assert f["dAdt"].attrs["units"] == units.POLARIZABILITY_DERIVATIVE
        assert f["dAdt"].attrs["components"] == ",".join(VOIGT_NAMES)


def test_no_raman_gives_the_same_dmdt_without_dadt(trajectory, models, tmp_path):
    path, _ = trajectory
    with_pgt = post(path, models["both"], tmp_path / "a.h5")
    without = post(path, models["both"], tmp_path / "b.h5", raman=False)
    assert not read_info(without).has_dadt
    np.testing.assert_allclose(next(read_chunks(with_pgt))[1], next(read_chunks(without))[1], rtol=0, atol=1e-15)


def test_raman_needs_the_right_heads(trajectory, models, tmp_path):
    path, _ = trajectory
    with pytest.raises(InputError, match="not polarisability gradients"):
        post(path, models["apt"], tmp_path / "a.h5", raman=True)
    assert not (tmp_path / "a.h5").exists()
    with pytest.raises(InputError, match="not APTs"):
        post(path, models["pgt"], tmp_path / "p.h5")
    assert not read_info(post(path, models["apt"], tmp_path / "ok.h5")).has_dadt   # default: no PGT head, no dAdt


def test_committee_members_average_to_the_total(trajectory, models, tmp_path):
    path, _ = trajectory
    out = post(path, models["committee"], tmp_path / "c.h5")
    series = read_info(out).series
    dadt = next(read_chunks(out, dataset="dAdt"))[1]
    members = [series.index(f"member{k}") for k in range(2)]
    np.testing.assert_allclose(dadt[:, members].mean(1), dadt[:, series.index("total")], rtol=1e-10, atol=1e-15)
    assert np.abs(dadt[:, members[0]] - dadt[:, members[1]]).max() > 1e-6


def test_heads_committee_streams_dadt(trajectory, tmp_path):
    path, _ = trajectory
    torch.manual_seed(2)
    base = random_network(targets=["apt", "pgt"], pgt_irrep_scale=PGT_SCALE)
    heads = HeadsNetwork(base.config, 3).double()
    save_checkpoint(tmp_path / "heads.pt", heads, {})
    out = post(path, str(tmp_path / "heads.pt"), tmp_path / "h.h5")
    series = read_info(out).series
    dadt = next(read_chunks(out, dataset="dAdt"))[1]
    members = [series.index(f"member{k}") for k in range(3)]
    np.testing.assert_allclose(dadt[:, members].mean(1), dadt[:, 0], rtol=1e-10, atol=1e-15)


def test_post_resume_continues_dadt(trajectory, models, tmp_path):
    path, frames = trajectory
    whole = post(path, models["both"], tmp_path / "whole.h5")
    part = tmp_path / "part.extxyz"
    ase.io.write(part, frames[:6], format="extxyz")
    out = tmp_path / "resumed.h5"
    post(str(part), models["both"], out)
    import shutil

    shutil.copy(path, part)      # the run went on: same frames, more of them
    post(str(part), models["both"], out)
    np.testing.assert_array_equal(next(read_chunks(str(out), dataset="dAdt"))[1],
                                  next(read_chunks(whole, dataset="dAdt"))[1])


def test_step_processor_increment_rows(trajectory, models, tmp_path):
    """The engine side (aptnn-ipi, aptnn-lammps): increment rows ½(G(n) + G(n+1))·Δr/Δt at (n + ½)Δt."""
    _, frames = trajectory
    symbols = frames[0].get_chemical_symbols()
    settings = ClientSettings(address="test", output=str(tmp_path / "ipi.h5"), symbols=symbols, dt_fs=DT,
                              temperature_K=300.0, estimator="increment", resume=False, apt_every=1,
                              groups={}, centre="total", source="test")
    predictor = APTPredictor.load(models["both"], dtype="float64")
    proc = StepProcessor(predictor, settings)
    cell = frames[0].cell.array
    items = [(k, [a.positions.copy()], cell, None) for k, a in enumerate(frames)] + [None]
    proc.consume(iter(items).__next__)
    dadt = next(read_chunks(settings.output, dataset="dAdt"))[1]
    dmdt = next(read_chunks(settings.output))[1]
    assert dadt.shape == (len(frames) - 1, 1, 6)
    g = [predictor.predict_pgt(a) for a in frames]
    p = [predictor.predict(a) for a in frames]
    for k in range(len(frames) - 1):
        step = frames[k + 1].positions - frames[k].positions
        expected = np.einsum("nijk,nk->ij", 0.5 * (g[k] + g[k + 1]), step) / DT
        np.testing.assert_allclose(dadt[k, 0], voigt(expected), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(dmdt[k, 0], np.einsum("nij,nj->i", 0.5 * (p[k] + p[k + 1]), step) / DT,
                                   rtol=1e-10, atol=1e-14)


def test_spectrum_raman_reads_a_produced_stream(trajectory, models, tmp_path):
    path, _ = trajectory
    out = post(path, models["both"], tmp_path / "s.h5")
    csv = tmp_path / "raman.csv"
    result = CliRunner().invoke(main, ["spectrum", out, "--raman", "-o", str(csv), "--max-lag", "3"])
    assert result.exit_code == 0, result.output
    data = np.genfromtxt(csv, delimiter=",", names=True)
    assert len(data) > 3 and np.isfinite(data[data.dtype.names[1]]).all()


# --- the engines, real: i-PI (PIMD, 4 beads) and LAMMPS ---------------------------------------------------------
@pytest.mark.slow
def test_ipi_pimd_streams_dadt_equal_to_aptnn_post_on_its_output(models, tmp_path):
    """aptnn-ipi with a PGT model beside a real i-PI PIMD run (NVE, velocity estimator): per-bead and centroid
    dα/dt equal aptnn-post with the same model on i-PI's own position/velocity files."""
    from aptnn.demo.ipi import run_ipi_pimd

    pos0 = run_ipi_pimd(tmp_path, steps=20, dt_fs=0.1, nve=True,
                        aptnn_args=["-o", "run.dmdt.h5", "--estimator", "velocity", "--model", models["both"],
                                    "--apt-every", "1", "--threads", "1"])
    res = CliRunner().invoke(main, ["post", str(pos0), "--timestep", "0.1", "-o", str(tmp_path / "post.h5"),
                                    "--model", models["both"], "--apt-every", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    info = read_info(tmp_path / "run.dmdt.h5")
    assert info.has_dadt and info.series[:5] == ["bead0", "bead1", "bead2", "bead3", "centroid"]
    ts, stream = next(read_chunks(tmp_path / "run.dmdt.h5", dataset="dAdt"))
    tp, offline = next(read_chunks(tmp_path / "post.h5", dataset="dAdt"))
    np.testing.assert_allclose(ts, tp[1:-1], atol=1e-9)  # central differences: first and last step missing
    offline = offline[1:-1]
    for series in (4, 0):  # centroid, bead 0
        err = np.linalg.norm(stream[:, series] - offline[:, series]) / np.linalg.norm(offline[:, series])
        assert err < 1e-3, (series, err)   # i-PI's xyz output has 8 significant digits


@pytest.mark.slow
def test_lammps_streams_dadt_equal_to_aptnn_post_on_its_dump(models, tmp_path):
    """aptnn-lammps with a PGT model (velocity estimator) against aptnn-post on a full-precision dump of the run."""
    import os
    import subprocess
    import sys

    from aptnn.demo.water import water_data, water_setup

    workdir = tmp_path
    text, box = water_data(8, 1)
    (workdir / "water.data").write_text(text)
    (workdir / "raman.lammps").write_text(water_setup("water.data", box) + """
neighbor 2.0 bin
timestep 0.5
minimize 1e-4 1e-6 100 1000
reset_timestep 0
velocity all create 300.0 7 mom yes rot yes dist gaussian
fix nve all nve
dump traj all custom 1 traj.lammpstrj id type element xu yu zu vx vy vz
dump_modify traj element O H sort id format float %.17g
run 20
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "aptnn.drivers.lammps.cli", "raman.lammps", "-o", "s.h5",
                           "--model", models["both"], "--estimator", "velocity", "--apt-every", "1", "--log", "none",
                           "--no-screen", "--threads", "1", "--status-every", "0"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = CliRunner().invoke(main, ["post", str(workdir / "traj.lammpstrj"), "--timestep", "0.5", "--units",
                                    "real", "-o", str(workdir / "post.h5"), "--model", models["both"],
                                    "--apt-every", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    ts, streamed = next(read_chunks(workdir / "s.h5", dataset="dAdt"))
    tp, offline = next(read_chunks(workdir / "post.h5", dataset="dAdt"))
    common, i, j = np.intersect1d(np.round(ts, 6), np.round(tp, 6), return_indices=True)
    assert len(common) >= 15
    err = np.abs(streamed[i] - offline[j]).max() / np.abs(offline[j]).max()
    assert err < 1e-6, err


def test_annotate_writes_pgt_beside_apt(trajectory, models):
    _, frames = trajectory
    predictor = APTPredictor.load(models["both"], dtype="float64")
    out = predictor.annotate(frames[:2], progress=False)
    for atoms, original in zip(out, frames[:2]):
        np.testing.assert_array_equal(atoms.arrays["pgt"].reshape(-1, 3, 3, 3), predictor.predict_pgt(original))
        np.testing.assert_array_equal(atoms.arrays["apt"].reshape(-1, 3, 3), predictor.predict(original))
        assert "pgt_std" not in atoms.arrays
    committee = APTPredictor.load(models["committee"], dtype="float64").annotate(frames[:1], progress=False)[0]
    assert committee.arrays["pgt_std"].shape == (len(frames[0]), 27) and committee.arrays["pgt_std"].max() > 0
    only_pgt = APTPredictor.load(models["pgt"], dtype="float64").annotate(frames[:1], progress=False)[0]
    assert "pgt" in only_pgt.arrays and "apt" not in only_pgt.arrays
