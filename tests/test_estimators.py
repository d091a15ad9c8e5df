"""The one dM/dt estimator core (aptnn.estimators) behind both producers, aptnn-post and aptnn-ipi.

(1) exactness for a dipole quadratic in the positions (increment and velocity); (2) one trajectory through
both front ends (aptnn.post.run on extxyz files, the i-PI StepProcessor fed the same positions step by step)
gives the same series to 1e-10 in float64; (3) the same for PIMD bead files and bead positions.
"""
import ase.io
import numpy as np
import pytest
from helpers import water_box

from aptnn.drivers.ipi.processor import ClientSettings, StepProcessor
from aptnn.estimators import StepEstimator, canonical, minimum_image, resolve, species_groups
from aptnn.io.stream import read_chunks, read_info
from aptnn.io.trajectory import ASESource
from aptnn.post import PostSettings, run

MODEL = "water-rpbe-d3"
DT = 0.5  # fs


class QuadraticDipoleModel:
    """A test model with an exactly known dipole, M_ξ(r) = Σ_i q_i r_iξ + Σ_i Σ_ζ A_ξζ r_iζ², and its exact
    Jacobian as APT, P_i[ξ,ζ] = q_i δ_ξζ + 2 A_ξζ r_iζ. Records every geometry it is asked about."""

    def __init__(self, charges):
        self.q = np.asarray(charges)
        self.a = np.array([[0.01, -0.02, 0.005], [0.003, 0.015, -0.01], [-0.007, 0.002, 0.02]])
        self.seen: list[np.ndarray] = []

    def dipole(self, r):
        return (self.q[:, None] * r).sum(0) + self.a @ (r**2).sum(0)

    def apt(self, r):
        return self.q[:, None, None] * np.eye(3) + 2 * self.a[None] * r[:, None, :]

    def predict_batch(self, frames, source=None, first_index=0):
        out = []
        for atoms in frames:
            self.seen.append(atoms.positions.copy())
            out.append(self.apt(atoms.positions))
        return out, None


def feed(proc: StepProcessor, steps) -> None:
    """Steps (step, bead positions (B, N, 3) Å, cell) into the processor, as the i-PI client queues them."""
    items = iter([(s, list(pos), cell, None) for s, pos, cell in steps] + [None])
    proc.consume(lambda: next(items))


def test_names_and_aliases():
    assert resolve("centroid", "velocity").label(4) == "velocity/centroid"
    assert resolve("centroid-apt", "velocity").label(4) == "velocity/apt-at-centroid"
    assert resolve("centroid-apt", "increment").label(4) == "increment/apt-at-centroid"
    assert resolve("increment", "increment").label(1) == "increment"
    assert canonical("increment", "increment", 4) == "increment/centroid"  # streams of older versions
    with pytest.raises(ValueError, match="unknown estimator"):
        resolve("bogus", "velocity")
    cell = np.diag([10.0, 10.0, 0.0])  # an all-zero third vector: open along z
    np.testing.assert_allclose(minimum_image(np.array([9.5, -0.2, 30.0]), cell, [True, True, False]),
                               [-0.5, -0.2, 30.0])
    assert minimum_image(np.ones(3) * 7, np.zeros((3, 3))).tolist() == [7, 7, 7]


@pytest.mark.parametrize("estimator", ["increment", "velocity"])
def test_estimators_are_exact_for_a_quadratic_dipole(tmp_path, estimator):
    """Two beads on paths quadratic in time (central differences exact) through the i-PI StepProcessor: the
    increment rows are the exact dipole change per step, the velocity rows the exact dM/dt (to rounding)."""
    rng = np.random.default_rng(3)
    n, steps = 12, 9
    model = QuadraticDipoleModel(rng.normal(size=n))
    r0, v0, acc = rng.normal(scale=3, size=(2, n, 3)), rng.normal(scale=0.02, size=(2, n, 3)), \
        rng.normal(scale=1e-3, size=(2, n, 3))
    path = [r0 + v0 * (k * DT) + 0.5 * acc * (k * DT) ** 2 for k in range(steps)]
    settings = ClientSettings(address="test", output=str(tmp_path / "q.h5"), symbols=["O", "H", "H"] * 4,
                              nbeads=2, dt_fs=DT, temperature_K=300.0, estimator=estimator, resume=False,
                              groups=species_groups(["O", "H", "H"] * 4))
    proc = StepProcessor(model, settings)
    feed(proc, [(k, path[k], None) for k in range(steps)])
    t, d = next(read_chunks(tmp_path / "q.h5"))
    m = np.array([[model.dipole(r) for r in beads] for beads in path])  # (steps, 2, 3) e·Å
    if estimator == "increment":
        expected, times = np.diff(m, axis=0) / DT, DT * (np.arange(steps - 1) + 0.5)
    else:
        v = [v0 + acc * (k * DT) for k in range(1, steps - 1)]
        expected = np.array([[np.einsum("nij,nj->i", model.apt(r), vb) for r, vb in zip(path[k], v[k - 1])]
                             for k in range(1, steps - 1)])
        times = DT * np.arange(1, steps - 1)
    np.testing.assert_allclose(t, times)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(d[:, :2], expected, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(d[:, 2], expected.mean(1), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(d[:, 3] + d[:, 4], d[:, 2], atol=1e-12 * scale)  # groups sum to the centroid
    # the same core with the velocities given: the exact dM/dt at every step at once
    est = StepEstimator("velocity", 2, DT, {})
    for k in range(1, steps - 1):
        time, row = est.update(k, path[k], np.stack([model.apt(r) for r in path[k]]), None,
                               velocities=v0 + acc * (k * DT))
        exact = [np.einsum("nij,nj->i", model.apt(r), vb) for r, vb in zip(path[k], v0 + acc * (k * DT))]
        np.testing.assert_allclose(row[:2], exact, rtol=0, atol=1e-12 * scale)
        assert time == k * DT


def trajectory(nbeads: int, steps: int = 8, seed: int = 0) -> tuple[list[list], np.ndarray]:
    """Bead positions (steps × beads × (N, 3) Å) of 27 waters in a 9.3 Å box, wrapped into the box (atoms
    cross it: the minimum image matters), rounded as extxyz stores them (8 decimals)."""
    atoms = water_box(3, 3.1)
    atoms.positions += 0.01 - atoms.positions[0]  # atom 0 at a corner of the box: it crosses the faces
    rng = np.random.default_rng(seed)
    r0 = atoms.positions + rng.normal(scale=0.03, size=(nbeads, len(atoms), 3))
    v = rng.normal(scale=0.005, size=(nbeads, len(atoms), 3))
    frames = []
    for k in range(steps):
        beads = []
        for b in range(nbeads):
            a = atoms.copy()
            a.positions = r0[b] + v[b] * (k * DT) + 0.02 * np.sin(0.7 * k + b)
            a.wrap()
            a.positions = np.round(a.positions, 8)
            beads.append(a)
        frames.append(beads)
    jumps = np.diff([[a.positions for a in beads] for beads in frames], axis=0)
    assert np.abs(jumps).max() > 4.0  # some atom was wrapped across the box
    return frames, atoms.cell.array


def write_beads(tmp_path, frames, velocities: bool = False) -> list[ASESource]:
    """One extxyz file per bead, with times (fs); ``velocities``: central differences written as velocities
    (frames 1 … n−2), else positions only."""
    paths = []
    for b in range(len(frames[0])):
        out = []
        for k in range(1, len(frames) - 1) if velocities else range(len(frames)):
            a = frames[k][b].copy()
            a.info["time"] = k * DT
            if velocities:
                disp = minimum_image(frames[k + 1][b].positions - frames[k - 1][b].positions, a.cell.array)
                a.arrays["velocities"] = disp / (2 * DT)
            out.append(a)
        paths.append(str(tmp_path / f"{'vel' if velocities else 'pos'}_{b}.extxyz"))
        ase.io.write(paths[-1], out)
    return [ASESource(p) for p in paths]


def read_back(sources) -> list[list]:
    """The positions exactly as the files hold them (what i-PI would send)."""
    per_bead = [ase.io.read(s.path, ":") for s in sources]
    return [list(step) for step in zip(*per_bead)]


@pytest.fixture(scope="module")
def predictor():
    from aptnn.predict import APTPredictor

    return APTPredictor.load(MODEL, dtype="float64")


def ipi_stream(tmp_path, predictor, frames, cell, estimator: str, name: str, apt_every: int | None = None):
    symbols = frames[0][0].get_chemical_symbols()
    settings = ClientSettings(address="test", output=str(tmp_path / name), symbols=symbols, nbeads=len(frames[0]),
                              dt_fs=DT, estimator=estimator, resume=False, groups=species_groups(symbols),
                              model_label="test", apt_every=apt_every)
    feed(StepProcessor(predictor, settings), [(k, np.stack([a.positions for a in beads]), cell)
                                              for k, beads in enumerate(frames)])
    return read_info(tmp_path / name), *next(read_chunks(tmp_path / name))


def relative(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_classical_trajectory_gives_the_same_series_through_both_producers(tmp_path, predictor):
    frames, cell = trajectory(1)
    pos_files = write_beads(tmp_path, frames)
    frames = read_back(pos_files)
    info_i, t_i, d_i = ipi_stream(tmp_path, predictor, frames, cell, "velocity", "ipi.h5")
    assert info_i.estimator == "velocity" and info_i.series == ["centroid", "group:O", "group:H"]
    results = {}
    for batch in (1, 4):  # float64: batching frames through the model changes nothing
        out = run(pos_files, MODEL, str(tmp_path / f"pos{batch}.h5"),
                  PostSettings(batch_size=batch, progress=False, apt_every=1), predictor=predictor)
        results[batch] = next(read_chunks(out))
    assert relative(results[4][1], results[1][1]) < 1e-12
    info_p = read_info(tmp_path / "pos4.h5")
    assert info_p.estimator == "velocity" and info_p.series == ["total", "group:O", "group:H"]
    t_p, d_p = results[4]
    np.testing.assert_allclose(t_p, t_i, rtol=0, atol=1e-12)
    err_pos = relative(d_p, d_i)
    vel_files = write_beads(tmp_path, frames, velocities=True)  # the central differences, written as velocities
    t_v, d_v = next(read_chunks(run(vel_files, MODEL, str(tmp_path / "vel.h5"),
                                    PostSettings(batch_size=3, progress=False, apt_every=1), predictor=predictor)))
    np.testing.assert_allclose(t_v, t_i, rtol=0, atol=1e-12)
    err_vel = relative(d_v, d_i)
    print(f"classical: largest relative difference post/ipi {err_pos:.2g} (positions), {err_vel:.2g} (velocities)")
    assert err_pos < 1e-10 and err_vel < 1e-10


@pytest.mark.parametrize("estimator", ["centroid", "centroid-apt"])
def test_pimd_beads_give_the_same_series_through_both_producers(tmp_path, predictor, estimator):
    frames, cell = trajectory(3, steps=6)
    sources = write_beads(tmp_path, frames)
    frames = read_back(sources)
    ipi_name = "velocity" if estimator == "centroid" else "velocity/apt-at-centroid"
    info_i, t_i, d_i = ipi_stream(tmp_path, predictor, frames, cell, ipi_name, "ipi.h5")
    out = run(sources, MODEL, str(tmp_path / "post.h5"), PostSettings(batch_size=2, progress=False, apt_every=1),
              estimator=estimator, predictor=predictor)
    info_p, (t_p, d_p) = read_info(out), next(read_chunks(out))
    assert info_p.estimator == info_i.estimator == resolve(estimator, "velocity").label(3)
    np.testing.assert_allclose(t_p, t_i, rtol=0, atol=1e-12)
    common = [s for s in info_i.series if s in info_p.series]
    assert common == (["bead0", "bead1", "bead2"] if estimator == "centroid" else []) + \
        ["centroid", "group:O", "group:H"]
    cols_i, cols_p = [info_i.series.index(s) for s in common], [info_p.series.index(s) for s in common]
    err = relative(d_p[:, cols_p], d_i[:, cols_i])
    print(f"PIMD {estimator}: largest relative difference post/ipi {err:.2g}")
    assert err < 1e-10
