"""One contract for every trajectory reader (as MDAnalysis' ``MultiframeReaderTest``): the same physical frames,
written in each format the registry reads (extxyz, H5MD in nm/ps, LAMMPS dumps in real and metal units, i-PI
bead files with velocities in atomic units), must come back alike: Å, Å/fs, fs, steps, elements, slicing."""
from __future__ import annotations

import ase.io
import h5py
import numpy as np
import pytest
from ase import Atoms

from aptnn import units
from aptnn.io.source import NATIVE_UNITS, READERS, FrameSource
from aptnn.io.trajectory import detect_format, open_run, open_trajectory

N_FRAMES, DT_FS, STRIDE, BOX = 4, 0.5, 10, 7.0
VEL_AU = units.BOHR_TO_ANGSTROM / units.AU_TIME_TO_FS  # Å/fs per bohr/(a.u. of time)


def water_frames() -> list[tuple[Atoms, np.ndarray, float, int]]:
    """8 waters in a periodic 7 Å box: (atoms Å, velocities Å/fs, time fs, step) of a few frames."""
    rng = np.random.default_rng(7)
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)]) * 3.5 + 1.2
    oh = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.24, 0.9266, 0.0]])
    base = (grid[:, None] + oh[None]).reshape(-1, 3)
    out = []
    for k in range(N_FRAMES):
        pos = base + 0.05 * rng.standard_normal(base.shape)
        atoms = Atoms("OH2" * 8, positions=pos, cell=np.eye(3) * BOX, pbc=True)
        v = 0.01 * rng.standard_normal(base.shape)
        out.append((atoms, v, k * STRIDE * DT_FS, k * STRIDE))
    return out


def write_extxyz(frames, path) -> None:
    images = []
    for atoms, v, time, step in frames:
        a = atoms.copy()
        a.arrays["velocities"] = v
        a.info.update(time=time, step=step)
        images.append(a)
    ase.io.write(path, images, format="extxyz")


def write_h5md(frames, path) -> None:
    """H5MD in nm and ps with unit attributes (as MDAnalysis writes it)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("particles/water")
        g["species"] = frames[0][0].numbers
        pos = g.create_group("position")
        pos["value"] = np.array([a.positions for a, *_ in frames]) / 10.0
        pos["value"].attrs["unit"] = "nm"
        pos["time"] = np.array([t for *_, t, _ in frames]) / 1000.0
        pos["time"].attrs["unit"] = "ps"
        pos["step"] = np.array([s for *_, s in frames])
        vel = g.create_group("velocity")
        vel["value"] = np.array([v for _, v, *_ in frames]) * 100.0  # Å/fs → nm/ps
        vel["value"].attrs["unit"] = "nm ps-1"
        box = g.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = np.array([b"periodic"] * 3)
        edges = box.create_group("edges")
        edges["value"] = np.array([a.cell.lengths() for a, *_ in frames]) / 10.0
        edges["value"].attrs["unit"] = "nm"


def write_lammps(frames, path, style: str) -> None:
    """A ``dump custom … id element x y z vx vy vz`` in ``style`` (real: Å/fs; metal: Å/ps)."""
    fvel = units.LAMMPS_UNITS[style][2]
    lines = []
    for atoms, v, _, step in frames:
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
                  "ITEM: BOX BOUNDS pp pp pp"] + [f"0 {BOX}"] * 3 + ["ITEM: ATOMS id element x y z vx vy vz"]
        order = np.arange(len(atoms))[::-1]  # rows out of id order: the reader sorts them
        lines += [f"{i + 1} {atoms[i].symbol} " + " ".join(f"{x:.10g}" for x in (*atoms.positions[i], *(v[i] / fvel)))
                  for i in order]
    path.write_text("\n".join(lines) + "\n")


def write_ipi(frames, prefix) -> str:
    """One bead of i-PI xyz output (its ``print_xyz`` layout): positions in Å, velocities in atomic units."""
    for kind, unit in (("pos", "positions{angstrom}  cell{angstrom}"), ("vel", "velocities{atomic_unit}  "
                                                                                "cell{atomic_unit}")):
        lines = []
        for atoms, v, _, step in frames:
            values = atoms.positions if kind == "pos" else v / VEL_AU
            a = BOX if kind == "pos" else BOX / units.BOHR_TO_ANGSTROM
            lines += [str(len(atoms)), f"# CELL(abcABC): {a:10.5f}  {a:10.5f}  {a:10.5f}  {90:10.5f}  {90:10.5f}  "
                                       f"{90:10.5f}  Step: {step:10d}  Bead:  0 {unit}"]
            lines += ["%8s %12.5e %12.5e %12.5e" % (s, *x) for s, x in zip(atoms.get_chemical_symbols(), values)]
        (prefix.parent / f"{prefix.name}.{kind}_0.xyz").write_text("\n".join(lines) + "\n")
    return str(prefix.parent / f"{prefix.name}.pos_0.xyz")


# case: (format, native units, position/velocity tolerances (Å, Å/fs) of what the format stores)
CASES = {
    "extxyz": ("extxyz", NATIVE_UNITS, 1e-7, 1e-7),
    "h5md-nm-ps": ("h5md", {"length": "nm", "time": "ps", "velocity": "nm ps-1"}, 1e-9, 1e-9),
    "lammps-real": ("lammpsdump", {"length": "angstrom", "time": "fs", "velocity": "angstrom/fs"}, 1e-8, 1e-10),
    "lammps-metal": ("lammpsdump", {"length": "angstrom", "time": "ps", "velocity": "angstrom/ps"}, 1e-8, 1e-10),
    "ipi": ("ipi", {"length": "angstrom", "time": "fs", "velocity": "bohr/au"}, 1e-4, 1e-6),
}


@pytest.fixture(scope="module")
def frames():
    return water_frames()


@pytest.fixture(scope="module", params=list(CASES))
def case(request, frames, tmp_path_factory):
    """(name, path, reader factory) of the frames written in one format."""
    tmp = tmp_path_factory.mktemp(request.param)
    name = request.param
    if name == "extxyz":
        path = str(tmp / "w.extxyz")
        write_extxyz(frames, path)
        return name, path, lambda: open_trajectory(path)
    if name == "h5md-nm-ps":
        path = str(tmp / "w.h5")
        write_h5md(frames, path)
        return name, path, lambda: open_trajectory(path)
    if name.startswith("lammps"):
        style = name.split("-")[1]
        path = tmp / "w.lammpstrj"
        write_lammps(frames, path, style)
        dt = DT_FS / units.LAMMPS_UNITS[style][1]  # the timestep in the style's time unit
        return name, str(path), lambda: open_trajectory(str(path), lammps_units=style, timestep=dt)
    path = write_ipi(frames, tmp / "sim")
    return name, path, lambda: open_trajectory(path, timestep=DT_FS)


def same(a, b) -> None:
    np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
    np.testing.assert_array_equal(a.velocities, b.velocities)
    assert (a.time, a.step, a.atoms.get_chemical_symbols()) == (b.time, b.step, b.atoms.get_chemical_symbols())


class TestReaderContract:
    """Every registered format passes the same checks."""

    def test_registered_and_detected(self, case):
        name, path, make = case
        fmt = CASES[name][0]
        source = make()
        assert isinstance(source, FrameSource) and READERS[fmt] is type(source)
        assert source.format == fmt and detect_format(path) == fmt

    def test_declares_units(self, case):
        name, _, make = case
        source = make()
        assert set(source.units) == {"length", "time", "velocity"}
        assert source.units == CASES[name][1]
        assert set(type(source).units) == {"length", "time", "velocity"}  # declared by the class too

    def test_length(self, case):
        assert len(case[2]()) == N_FRAMES

    def test_frames_in_internal_units(self, case, frames):
        name, _, make = case
        _, _, tol_pos, tol_vel = CASES[name]
        got = list(make())
        assert len(got) == N_FRAMES
        for frame, (atoms, v, time, step) in zip(got, frames):
            np.testing.assert_allclose(frame.atoms.positions, atoms.positions, rtol=0, atol=tol_pos)
            np.testing.assert_allclose(frame.atoms.cell.array, atoms.cell.array, rtol=0, atol=tol_pos)
            assert frame.atoms.pbc.all()
            np.testing.assert_allclose(frame.velocities, v, rtol=1e-5, atol=tol_vel)
            assert frame.time == pytest.approx(time, abs=1e-9)
            assert frame.step == step
            assert frame.atoms.get_chemical_symbols() == atoms.get_chemical_symbols()

    def test_iter_range_equals_slicing(self, case):
        source = case[2]()
        full = list(source)
        for start, stop in ((0, None), (1, 3), (2, None), (0, 1), (3, 100)):
            part = list(source.iter_range(start, stop))
            assert len(part) == len(full[start:stop]), (start, stop)
            for a, b in zip(part, full[start:stop]):
                same(a, b)

    def test_iterating_twice(self, case):
        source = case[2]()
        first, second = list(source), list(source)
        assert len(first) == len(second) == N_FRAMES
        for a, b in zip(first, second):
            same(a, b)

    def test_out_of_range_and_empty(self, case):
        source = case[2]()
        assert list(source.iter_range(N_FRAMES, None)) == []
        assert list(source.iter_range(N_FRAMES + 5, N_FRAMES + 9)) == []
        assert list(source.iter_range(2, 2)) == []


def test_ipi_run_is_one_source_per_bead(frames, tmp_path):
    path = write_ipi(frames, tmp_path / "sim")
    sources = open_run(path, timestep=DT_FS)
    assert len(sources) == 1 and sources[0].velocity_path.endswith("sim.vel_0.xyz")
    assert [f.step for f in sources[0]] == [k * STRIDE for k in range(N_FRAMES)]


def test_registry_covers_the_formats():
    from aptnn.io.trajectory import FORMATS

    assert set(FORMATS) == {"extxyz", "h5md", "lammpsdump", "ipi", "ase"} == set(READERS)
    for reader in READERS.values():
        assert set(reader.units) == {"length", "time", "velocity"}
