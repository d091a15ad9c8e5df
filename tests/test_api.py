"""The public Python API: APTCalculator (ASE) and DipoleDerivative (MDAnalysis-style analysis), and the README
example examples/python_api.py."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import ase.io
import MDAnalysis as mda
import numpy as np
import pytest
from ase import units as ase_units
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.mixing import SumCalculator
from ase.calculators.tip3p import TIP3P
from ase.constraints import FixBondLengths
from ase.md.verlet import VelocityVerlet
from helpers import random_network, water_box
from MDAnalysis.coordinates.memory import MemoryReader
from scipy import constants as si
from scipy.spatial.transform import Rotation
from test_estimators import MODEL, relative, trajectory, write_beads

from aptnn.analysis import DipoleDerivative
from aptnn.calculator import APTCalculator
from aptnn.errors import InputError, OutputError
from aptnn.io.stream import read_chunks, read_info
from aptnn.predict import APTPredictor
from aptnn.spectrum import compute_spectrum
from aptnn.units import ASE_TIME_TO_FS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "python_api.py"


@pytest.fixture(scope="module")
def model() -> APTPredictor:
    return APTPredictor.load("water-rpbe-d3")


@pytest.fixture(scope="module")
def model64() -> APTPredictor:
    return APTPredictor.load("water-rpbe-d3", dtype="float64")


def dimer():
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] = Rotation.from_euler("xyz", [30, 60, 10], degrees=True).apply(atoms.positions[3:])
    atoms.positions[3:] += (2.9, 0.3, -0.2)
    return atoms


def velocities_fs(n: int, seed: int = 0) -> np.ndarray:
    """Thermal-size velocities in Å/fs (0.01 Å/fs = 1000 m/s)."""
    return np.random.default_rng(seed).normal(scale=0.01, size=(n, 3))


# --- APTCalculator ------------------------------------------------------------------------------------------
def test_calculator_equals_predictor(model):
    atoms = water_box(2)
    calc = APTCalculator(model)
    atoms.calc = calc
    expected = model.predict(atoms)
    np.testing.assert_array_equal(calc.get_property("apt", atoms), expected)
    np.testing.assert_array_equal(calc.get_born_effective_charges(atoms), expected)
    np.testing.assert_array_equal(atoms.get_forces(), 0.0)          # no field
    assert atoms.get_potential_energy() == 0.0
    assert "apt_std" not in calc.implemented_properties           # one member: no committee spread
    with pytest.raises(PropertyNotImplementedError):
        calc.get_property("apt_std", atoms)


def test_calculator_from_name_and_committee():
    calc = APTCalculator("water-rpbe-d3", dtype="float64")
    assert calc.predictor.dtype == np.float64 or str(calc.predictor.dtype) == "torch.float64"
    committee = APTPredictor([random_network(seed=1), random_network(seed=2)])
    atoms = water_box(2, seed=3)
    calc = APTCalculator(committee)
    means, stds = committee.predict_batch([atoms])
    np.testing.assert_allclose(calc.get_property("apt", atoms), means[0])
    np.testing.assert_allclose(calc.get_property("apt_std", atoms), stds[0])
    assert (stds[0] > 0).any()
    with pytest.raises(TypeError):
        APTCalculator(42)


def test_calculator_rotation_is_equivariant(model64):
    atoms = dimer()
    calc = APTCalculator(model64)
    apt = calc.get_apt(atoms)
    rot = Rotation.from_euler("zyx", [40, -25, 70], degrees=True).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    np.testing.assert_allclose(calc.get_apt(turned), rot @ apt @ rot.T, atol=1e-9)


def test_field_forces_are_apt_transpose_times_field(model):
    atoms = dimer()
    field = np.array([0.03, -0.05, 0.1])   # V/Å
    calc = APTCalculator(model, external_field=field)
    calls = []
    original = model.predict_batch
    calc.predictor = type("Counting", (), {"predict_batch": lambda self, f: calls.append(1) or original(f),
                                           "members": model.members})()
    atoms.calc = calc
    apt = model.predict(atoms)
    expected = np.array([apt[i].T @ field for i in range(len(atoms))])   # e · V/Å = eV/Å
    np.testing.assert_allclose(atoms.get_forces(), expected, rtol=1e-12, atol=1e-15)
    assert atoms.get_potential_energy() == 0.0
    calc.set(external_field=-2 * field)                                  # new field: the same APTs, no new call
    np.testing.assert_allclose(atoms.get_forces(), -2 * expected, rtol=1e-12, atol=1e-15)
    assert len(calls) == 1
    calc.set(external_field=None)
    np.testing.assert_array_equal(atoms.get_forces(), 0.0)
    for bad in ((1.0, 2.0), (np.nan, 0.0, 0.0), "x"):
        with pytest.raises((InputError, ValueError)):
            calc.set(external_field=bad)


def test_dipole_derivative_velocity_units(model):
    atoms = dimer()
    calc = APTCalculator(model)
    with pytest.raises(InputError, match="no momenta"):
        calc.get_property("dipole_derivative", atoms)
    v_ase = velocities_fs(len(atoms)) * 10.0                # Å per ASE time unit
    atoms.set_velocities(v_ase)
    # by hand: the ASE time unit is Å·sqrt(amu/eV), in fs
    ase_time_fs = 1e-10 * np.sqrt(si.atomic_mass / si.electron_volt) / 1e-15
    assert ase_time_fs == pytest.approx(10.1805, rel=1e-4)
    assert ASE_TIME_TO_FS == pytest.approx(ase_time_fs, rel=1e-6)
    v_fs = v_ase / ase_time_fs
    # and the kinetic energy with SI masses from these Å/fs velocities equals ASE's
    kinetic = 0.5 * np.sum(atoms.get_masses()[:, None] * si.atomic_mass * (v_fs * 1e5) ** 2) / si.electron_volt
    assert kinetic == pytest.approx(atoms.get_kinetic_energy(), rel=1e-6)
    apt = model.predict(atoms)
    expected = sum(apt[i] @ v_fs[i] for i in range(len(atoms)))
    np.testing.assert_allclose(calc.get_property("dipole_derivative", atoms), expected, rtol=1e-6)
    np.testing.assert_allclose(calc.get_dipole_derivative(atoms, velocities=v_fs), expected, rtol=1e-12)
    atoms.set_velocities(-v_ase)                           # only the velocities change: recomputed
    np.testing.assert_allclose(calc.get_dipole_derivative(atoms), -expected, rtol=1e-6)
    with pytest.raises(InputError, match="shape"):
        calc.get_dipole_derivative(atoms, velocities=v_fs[:2])


def test_md_step_in_a_field(model):
    def run(field):
        atoms = dimer()
        atoms.constraints = FixBondLengths([(3 * m + j, 3 * m + (j + 1) % 3) for m in range(2) for j in range(3)])
        atoms.set_velocities(velocities_fs(len(atoms), seed=4) * ASE_TIME_TO_FS)
        aptnn_calc = APTCalculator(model, external_field=field)
        atoms.calc = SumCalculator([TIP3P(rc=9.0), aptnn_calc])
        VelocityVerlet(atoms, timestep=0.5 * ase_units.fs).run(2)
        forces = atoms.get_forces()
        assert np.isfinite(forces).all() and np.isfinite(atoms.get_potential_energy())
        return atoms, aptnn_calc

    with_field, calc = run((0.0, 0.0, 0.5))
    without, _ = run(None)
    assert not np.allclose(with_field.positions, without.positions, atol=1e-10)
    np.testing.assert_allclose(calc.get_forces(with_field), np.einsum("nxz,x->nz", model.predict(with_field),
                                                                        [0.0, 0.0, 0.5]), rtol=1e-6, atol=1e-12)


# --- DipoleDerivative -----------------------------------------------------------------------------------------
N_FRAMES, DT_PS = 5, 0.0005


def frames_data(seed: int = 0):
    """Positions (Å, float32 as MDAnalysis stores them), velocities (Å/fs) and box of a few water molecules."""
    box = water_box(2, seed=seed)
    box.cell = box.cell.array.astype(np.float32).astype(float)   # MDAnalysis keeps the box in float32 too
    rng = np.random.default_rng(seed)
    pos = np.array([box.positions + k * velocities_fs(len(box), seed) * 0.5 for k in range(N_FRAMES)])
    vel = np.array([velocities_fs(len(box), seed) + rng.normal(scale=1e-3, size=(len(box), 3))
                    for _ in range(N_FRAMES)])
    return box, pos.astype(np.float32).astype(float), vel.astype(np.float32).astype(float)


def universe(box, pos, vel, with_velocities: bool = True):
    u = mda.Universe.empty(len(box), trajectory=False)
    u.add_TopologyAttr("elements", box.get_chemical_symbols())
    dims = np.r_[box.cell.lengths(), box.cell.angles()]
    u.load_new(pos, format=MemoryReader, dimensions=dims, dt=DT_PS,
               velocities=vel * 1e3 if with_velocities else None)   # Å/ps
    return u


def expected_dmdt(model, box, pos, vel, mask=None):
    out = []
    for p, v in zip(pos, vel):
        atoms = box.copy()
        atoms.positions = p
        per_atom = np.einsum("nxz,nz->nx", model.predict(atoms), v)
        out.append(per_atom.sum(0) if mask is None else per_atom[mask].sum(0))
    return np.array(out)


def test_universe_equals_predictor(model):
    box, pos, vel = frames_data()
    dd = DipoleDerivative(universe(box, pos, vel), model, verbose=False, apt_every=1).run()
    r = dd.results
    assert r.series == ["total", "group:O", "group:H"]
    np.testing.assert_allclose(r.time, np.arange(N_FRAMES) * DT_PS * 1e3)       # fs
    np.testing.assert_array_equal(r.frames, np.arange(N_FRAMES))
    assert r.dmdt.shape == (N_FRAMES, 3, 3)
    np.testing.assert_allclose(r.dmdt[:, 0], expected_dmdt(model, box, pos, vel), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(r.dmdt[:, 1] + r.dmdt[:, 2], r.dmdt[:, 0], rtol=1e-6, atol=1e-9)
    oxygen = box.numbers == 8
    np.testing.assert_allclose(r.dmdt[:, 1], expected_dmdt(model, box, pos, vel, oxygen), rtol=1e-5, atol=1e-8)
    assert r.volume_A3 == pytest.approx(box.get_volume())
    assert r.output is None and 10 < r.temperature_K < 1e4
    # a slice, batches and an extra group give the same rows
    part = DipoleDerivative(universe(box, pos, vel), model, verbose=True, batch_size=2,
                            groups={"first": [0, 1, 2]}).run(start=1, stop=5, step=2)
    np.testing.assert_array_equal(part.results.frames, [1, 3])
    assert part.results.series == ["total", "group:O", "group:H", "group:first"]
    np.testing.assert_allclose(part.results.dmdt[:, :3], r.dmdt[[1, 3]], rtol=1e-5, atol=1e-8)
    first = expected_dmdt(model, box, pos[[1, 3]], vel[[1, 3]], np.arange(len(box)) < 3)
    np.testing.assert_allclose(part.results.dmdt[:, 3], first, rtol=1e-5, atol=1e-8)


def test_universe_types_atomgroup_and_missing_velocities(model):
    box, pos, vel = frames_data()
    u = mda.Universe.empty(len(box), trajectory=False)
    u.add_TopologyAttr("types", ["OW" if s == "O" else "HW" for s in box.get_chemical_symbols()])
    u.load_new(pos, format=MemoryReader, dimensions=np.r_[box.cell.lengths(), 90, 90, 90], dt=DT_PS,
               velocities=vel * 1e3)
    whole = DipoleDerivative(u, model, verbose=False).run(stop=2)
    assert whole.results.series == ["total", "group:O", "group:H"]
    water0 = DipoleDerivative(u.atoms[:3], model, verbose=False).run(stop=2)     # an AtomGroup: one molecule
    assert water0.results.dmdt.shape == (2, 3, 3)
    with pytest.raises(InputError, match="no velocities"):
        DipoleDerivative(universe(box, pos, vel, with_velocities=False), model, verbose=False).run()
    with pytest.raises(TypeError):
        DipoleDerivative(42, model)


def test_ase_list_and_path_give_the_same_numbers(model, tmp_path):
    box, pos, vel = frames_data(seed=1)
    reference = DipoleDerivative(universe(box, pos, vel), model, verbose=False, apt_every=1).run().results
    frames = []
    for k, (p, v) in enumerate(zip(pos, vel)):
        atoms = box.copy()
        atoms.positions = p
        atoms.set_velocities(v * ASE_TIME_TO_FS)     # Å/fs → ASE units
        frames.append(atoms)
    from_list = DipoleDerivative(frames, model, timestep=DT_PS * 1e3, verbose=False, apt_every=1).run().results
    np.testing.assert_allclose(from_list.time, reference.time)
    np.testing.assert_allclose(from_list.dmdt, reference.dmdt, rtol=1e-5, atol=1e-8)
    path = tmp_path / "run.extxyz"
    ase.io.write(path, frames)
    from_file = DipoleDerivative(path, model, timestep=DT_PS * 1e3, verbose=False, apt_every=1).run().results
    np.testing.assert_allclose(from_file.time, reference.time)
    np.testing.assert_allclose(from_file.dmdt, reference.dmdt, rtol=1e-5, atol=1e-8)
    sliced = DipoleDerivative(str(path), model, timestep=DT_PS * 1e3, verbose=False,
                              apt_every=1).run(1, None, 2).results
    np.testing.assert_array_equal(sliced.frames, [1, 3])
    np.testing.assert_allclose(sliced.dmdt, reference.dmdt[[1, 3]], rtol=1e-5, atol=1e-8)
    with pytest.raises(InputError, match="elements="):
        DipoleDerivative(frames, model, elements=["O"] * len(box))


def test_output_stream_and_spectrum(model, tmp_path):
    box, pos, vel = frames_data(seed=2)
    out = tmp_path / "run.dmdt.h5"
    dd = DipoleDerivative(universe(box, pos, vel), model, output=out, verbose=False).run()
    r = dd.results
    assert r.dmdt is None and r.output == str(out)                        # streamed, not kept
    info = read_info(out)
    assert info.series == ["total", "group:O", "group:H"]
    assert info.dt_fs == pytest.approx(DT_PS * 1e3) and info.natoms == len(box)
    assert info.temperature_K == pytest.approx(r.temperature_K)
    assert info.volume_A3 == pytest.approx(box.get_volume())
    times, rows = zip(*read_chunks(out))
    memory = DipoleDerivative(universe(box, pos, vel), model, verbose=False).run().results
    np.testing.assert_allclose(np.concatenate(times), memory.time)
    np.testing.assert_allclose(np.concatenate(rows), memory.dmdt, rtol=1e-12)
    spectrum = r.spectrum(max_lag_fs=1.0)
    direct = compute_spectrum([str(out)], max_lag_fs=1.0)
    np.testing.assert_allclose(spectrum.total, direct.total)
    assert spectrum.quantity == "alpha_n_cm-1" and np.isfinite(spectrum.total).all()
    np.testing.assert_allclose(memory.spectrum(max_lag_fs=1.0).total, direct.total, rtol=1e-10)   # temp. file
    with pytest.raises(OutputError, match="exists"):
        DipoleDerivative(universe(box, pos, vel), model, output=out, verbose=False).run()
    kept = DipoleDerivative(universe(box, pos, vel), model, output=out, overwrite=True, in_memory=True,
                            batch_size=3, verbose=False).run()
    np.testing.assert_allclose(kept.results.dmdt, memory.dmdt, rtol=1e-5, atol=1e-8)   # float32 batches


def test_bad_frame_leaves_no_stream(model, tmp_path):
    box, pos, vel = frames_data(seed=3)
    frames = []
    for p, v in zip(pos, vel):
        atoms = box.copy()
        atoms.positions = p
        atoms.set_velocities(v * ASE_TIME_TO_FS)
        frames.append(atoms)
    del frames[3].arrays["momenta"]
    out = tmp_path / "bad.dmdt.h5"
    with pytest.raises(InputError, match="frame 3: frame has no velocities"):
        DipoleDerivative(frames, model, timestep=0.5, output=out, verbose=False).run()
    assert not out.exists()
    with pytest.raises(InputError, match="no time"):
        DipoleDerivative(frames, model, output=out, verbose=False).run()
    no_times = DipoleDerivative(frames, model, verbose=False).run(stop=3).results   # in memory: NaN times
    assert np.isnan(no_times.time).all()
    with pytest.raises(InputError, match="timestep="):
        no_times.spectrum()


# --- DipoleDerivative on the estimator core: APTs every K frames, committees, as aptnn-post -----------------------
def post_rows(tmp_path, name, sources, predictor, **settings):
    """aptnn-post's rows (velocities from the file) of the same frames."""
    from aptnn.post import PostSettings, run

    out = run(sources, MODEL, str(tmp_path / name), PostSettings(progress=False, **{"apt_every": 1, **settings}),
              predictor=predictor)
    return read_info(out), next(read_chunks(out))[1]


@pytest.fixture(scope="module")
def md_file(tmp_path_factory):
    """16 frames (0.5 fs apart) of 27 waters with velocities, in one extxyz file (an ASESource)."""
    frames, _ = trajectory(1, steps=18)
    return write_beads(tmp_path_factory.mktemp("md"), frames, velocities=True)


def test_every_frame_equals_aptnn_post_and_every_k_interpolates(model, md_file, tmp_path):
    path = md_file[0].path
    calls = []
    original = model.predict_batch

    def counting(frames, *args):
        calls.append(len(frames))
        return original(frames, *args)

    model.predict_batch = counting
    try:
        k1 = DipoleDerivative(path, model, verbose=False, apt_every=1).run().results
        n1, calls[:] = sum(calls), []
        out = tmp_path / "k4.dmdt.h5"
        k4 = DipoleDerivative(path, model, apt_every=4, output=out, in_memory=True, batch_size=3,
                              verbose=False).run().results
        n4 = sum(calls)
    finally:
        del model.predict_batch
    _, post1 = post_rows(tmp_path, "post1.h5", md_file, model, apt_every=1)
    np.testing.assert_array_equal(k1.dmdt, post1)                        # K = 1: aptnn-post's rows, bit for bit
    assert k1.apt_every == 1 and k1.series == k4.series == ["total", "group:O", "group:H"]
    assert n1 == 16 and n4 == 5                                   # frames 0, 4, 8, 12 and the last, 15
    np.testing.assert_array_equal(k4.time, k1.time)
    np.testing.assert_array_equal(k4.dmdt[::4], k1.dmdt[::4])     # the nodes: the network's own APTs
    assert 0 < relative(k4.dmdt, k1.dmdt) < 0.05
    _, post4 = post_rows(tmp_path, "post4.h5", md_file, model, apt_every=4)
    np.testing.assert_array_equal(k4.dmdt, post4)                        # the same interpolation as aptnn-post
    info = read_info(out)
    assert info.extra["apt_every"] == 4 and info.extra["apt_interpolation"] == "lagrange-cubic"
    assert "uncertainty_scale" not in info.extra and info.series == k4.series
    np.testing.assert_array_equal(next(read_chunks(out))[1], k4.dmdt)
    assert read_info(tmp_path / "post1.h5").extra["apt_every"] == 1
    # K from apt_every_fs and the time between the first two frames (0.5 fs): 2 fs → K = 4
    by_fs = DipoleDerivative(path, model, apt_every_fs=2.0, verbose=False).run().results
    assert by_fs.apt_every == 4
    np.testing.assert_array_equal(by_fs.dmdt, k4.dmdt)
    # nodes on the sequence of analysed frames: every 2nd of frames 1, 3, 5, … (frames 1, 5, 9, …)
    sliced = DipoleDerivative(path, model, apt_every=2, verbose=False).run(start=1, step=2).results
    np.testing.assert_array_equal(sliced.frames, np.arange(1, 16, 2))
    np.testing.assert_array_equal(sliced.dmdt[::2], k1.dmdt[1::4])
    assert 0 < relative(sliced.dmdt, k1.dmdt[1::2]) < 0.05
    # frames without times: apt_every_fs cannot give K, every frame is evaluated
    frames = ase.io.read(path, ":")
    for atoms in frames:
        del atoms.info["time"]
    untimed = DipoleDerivative(frames[:6], model, apt_every_fs=2.0, verbose=False).run().results
    assert untimed.apt_every == 1 and np.isnan(untimed.time).all()
    np.testing.assert_array_equal(untimed.dmdt, k1.dmdt[:6])
    with pytest.raises(InputError, match="apt_every"):
        DipoleDerivative(frames, model, apt_every=0)


def test_committee_member_series(model, md_file, tmp_path):
    import copy

    import torch

    second = copy.deepcopy(model.members[0])                  # a second member: a perturbed readout
    with torch.no_grad():
        for p in list(second.parameters())[-2:]:
            p.mul_(1.05)
    committee = APTPredictor([model.members[0], second], fingerprint="test-committee sha256:0")
    path, out = md_file[0].path, tmp_path / "committee.dmdt.h5"
    r = DipoleDerivative(path, committee, output=out, in_memory=True, verbose=False, apt_every=1).run().results
    assert r.series == ["total", "group:O", "group:H", "member0", "member1"] and r.dmdt.shape == (16, 5, 3)
    np.testing.assert_allclose(r.dmdt[:, 3:].mean(1), r.dmdt[:, 0], rtol=0, atol=1e-12)   # mean APT: mean total
    assert np.abs(r.dmdt[:, 3] - r.dmdt[:, 4]).max() > 1e-4                            # the members differ
    single = DipoleDerivative(path, model, verbose=False, apt_every=1).run().results
    np.testing.assert_allclose(r.dmdt[:, 3], single.dmdt[:, 0], rtol=0, atol=1e-12)   # member 0: the network
    info, post = post_rows(tmp_path, "post.h5", md_file, committee)
    assert info.series == r.series
    np.testing.assert_allclose(r.dmdt, post, rtol=0, atol=1e-12)                        # as aptnn-post
    stream = read_info(out)
    assert stream.extra["uncertainty_scale"] == committee.uncertainty_scale == r.uncertainty_scale == 1.0
    assert stream.extra["apt_every"] == 1 and stream.extra["apt_interpolation"] == "none"
    k4 = DipoleDerivative(path, committee, apt_every=4, batch_size=2, verbose=False).run().results
    np.testing.assert_allclose(k4.dmdt, post_rows(tmp_path, "post4.h5", md_file, committee, apt_every=4)[1],
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(k4.dmdt[::4], r.dmdt[::4])
    np.testing.assert_allclose(k4.dmdt[:, 3:].mean(1), k4.dmdt[:, 0], rtol=0, atol=1e-12)


# --- the README example ---------------------------------------------------------------------------------------
def test_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    printed = capsys.readouterr().out
    assert "['total', 'group:O', 'group:H']" in printed and "(41, 3, 3)" in printed
    info = read_info(tmp_path / "dimer.dmdt.h5")
    assert info.series == ["total", "group:O", "group:H"] and info.model.startswith("water-rpbe-d3 sha256:")


def test_readme_python_api_is_the_example():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Python API\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    if section is None:
        pytest.skip("README has no 'Python API' section yet")
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert blocks and blocks[0].strip() == EXAMPLE.read_text().strip()
