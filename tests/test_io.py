"""Reading labelled frames: extxyz layout, anchor format (full and partial labels), bad input."""
import numpy as np
import pytest
from ase.build import molecule

from aptnn.errors import InputError
from aptnn.io import read_frames, write_frames
from aptnn.io.anchor import read_anchor, write_anchor
from aptnn.labels import get_apt, set_apt


def test_extxyz_apt_is_row_major_dM_dr(tmp_path):
    """Column k of the 9 numbers is P[k // 3, k % 3] = ∂M_(k//3)/∂r_(k%3)."""
    mol = molecule("H2O")
    p = np.arange(27, dtype=float).reshape(3, 3, 3)
    set_apt(mol, p)
    path = tmp_path / "m.extxyz"
    write_frames(path, [mol])
    text = path.read_text().splitlines()[2].split()
    assert [float(v) for v in text[4:13]] == list(range(9))  # first atom, row-major
    back, mask = get_apt(read_frames(path)[0])
    assert mask.all() and back[0, 0, 1] == 1.0 and back[0, 1, 0] == 3.0
    np.testing.assert_array_equal(back, p)


def test_shared_extxyz(shared_data):
    frames = read_frames(shared_data / "train10.extxyz")
    assert len(frames) == 10 and all(len(a) == 384 for a in frames)
    apt, mask = get_apt(frames[0])
    assert mask.all()
    # oxygen Born charges are negative on the diagonal, hydrogens positive
    assert np.trace(apt[frames[0].numbers == 8].mean(0)) < 0 < np.trace(apt[frames[0].numbers == 1].mean(0))


def test_anchor_partial_labels(shared_data):
    frames = read_frames(shared_data / "partial18.anchor.xyz", cell=[15.6627] * 3)
    assert len(frames) == 18
    for atoms in frames:
        _, mask = get_apt(atoms)
        assert mask.sum() == 1 and atoms.pbc.all()
        assert np.allclose(atoms.cell.lengths(), 15.6627)


def test_anchor_full_frames_match_extxyz(shared_data):
    anchor = read_frames(shared_data / "sample2.anchor.xyz", cell=[15.6627] * 3)
    pool = read_frames(shared_data / "pool19.extxyz")
    for a in anchor:
        match = [f for f in pool if np.allclose(f.positions, a.positions, atol=1e-5)]
        assert len(match) == 1, "sample2 frames are frames of pool19"
        np.testing.assert_allclose(a.arrays["apt"], match[0].arrays["apt"], atol=1e-5)


def test_anchor_round_trip(tmp_path):
    mol = molecule("H2O")
    apt = np.random.default_rng(0).normal(size=(3, 9))
    apt[1] = np.nan  # unlabelled atom
    mol.arrays["apt"] = apt
    write_anchor(tmp_path / "a.xyz", [mol, mol])
    assert "fmt=p:t" in (tmp_path / "a.xyz").read_text()
    back = read_anchor(tmp_path / "a.xyz")
    assert len(back) == 2 and not back[0].pbc.any()
    np.testing.assert_allclose(back[1].arrays["apt"], apt, atol=1e-7)


BAD = {
    "empty": ("", "empty"),
    "nan": ("1\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nO nan 0 0\n",
            "non-finite"),
    "no_cell": ("1\nProperties=species:S:1:pos:R:3 pbc=\"T T T\"\nO 0 0 0\n", "without a cell"),
    "apt_shape": ("1\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3:apt:R:4 pbc=\"T T T\"\n"
                  "O 0 0 0 1 2 3 4\n", "shape"),
    "anchor_short_row": ("2\nfmt=p:a\nO 0 0 0 1 2 3 4 5 6 7 8 9\nH 1 0 0 1 2\n", "expected 4 or 13"),
    "anchor_truncated": ("3\nfmt=p:t\nO 0 0 0\n", "truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_clear_error(tmp_path, case):
    text, words = BAD[case]
    path = tmp_path / f"{case}.xyz"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_frames(path)
    message = str(err.value)
    assert str(path) in message and words in message
    if case not in ("empty",):
        assert "frame 0" in message


def test_second_frame_error_names_that_frame(tmp_path):
    good = "1\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nO 0 0 0\n"
    bad = "1\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nO 0 inf 0\n"
    path = tmp_path / "two.extxyz"
    path.write_text(good + bad)
    with pytest.raises(InputError, match="frame 1"):
        read_frames(path)


def test_anchor_index_selection(tmp_path):
    mols = [molecule("H2O") for _ in range(4)]
    for k, m in enumerate(mols):
        m.positions += k
    write_anchor(tmp_path / "a.xyz", mols)
    assert len(read_frames(tmp_path / "a.xyz", index="1:3")) == 2
    np.testing.assert_allclose(read_frames(tmp_path / "a.xyz", index=-1)[0].positions, mols[3].positions, atol=1e-7)


# --- MD trajectories (aptnn.io.trajectory): every frame checked at the reader, library errors named ---------

def _dump(path, rows_of_frame, columns="id type element xu yu zu vx vy vz", frames=3):
    """A LAMMPS custom dump (real units) of a water molecule; ``rows_of_frame(k)`` gives its rows."""
    with open(path, "w") as fh:
        for k in range(frames):
            rows = rows_of_frame(k)
            fh.write(f"ITEM: TIMESTEP\n{k}\nITEM: NUMBER OF ATOMS\n{len(rows)}\nITEM: BOX BOUNDS pp pp pp\n0 10\n0 10\n"
                     f"0 10\nITEM: ATOMS {columns}\n" + "".join(" ".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def _water_rows(k, element_of_last="H", x=5.0, vx=0.001, digits=6):
    """Rows of a water molecule at ``x`` Å, coordinates written with ``digits`` significant digits (%g)."""
    g = lambda v: f"{v:.{digits}g}"  # noqa: E731
    return [(1, 1, "O", g(x + 0.0123456), g(5.0123456), g(5.0123456), vx, 0, 0),
            (2, 2, "H", g(x + 0.9723456), g(5.0123456), g(5.0123456), 0, 0, 0),
            (3, 2 if element_of_last == "H" else 1, element_of_last, g(x - 0.2423456), g(5.9423456), g(5.0123456), 0,
             0, 0)]


def test_lammps_dump_problems_name_file_and_frame(tmp_path):
    from functools import partial

    from aptnn.io.trajectory import open_trajectory as open_any

    open_trajectory = partial(open_any, lammps_units="real")
    good = _dump(tmp_path / "good.lammpstrj", _water_rows)
    assert [f.atoms.get_chemical_symbols() for f in open_trajectory(good)] == [["O", "H", "H"]] * 3
    cases = {
        "swap": (lambda k: _water_rows(k, "O" if k == 2 else "H"), r"frame 2: atom 2 is O but was H in frame 0"),
        "nanv": (lambda k: _water_rows(k, vx="nan" if k == 1 else 0.001), "frame 1: non-finite velocities"),
        "count": (lambda k: _water_rows(k)[: 2 if k == 1 else 3], "frame 1: 2 atoms instead of 3"),
        "far": (lambda k: _water_rows(k, x=2.0e4), r"frame 0: coordinates reach 2000\d.* Å but are written to "
                                                   r"0.1 Å only"),
    }
    for name, (rows, message) in cases.items():
        with pytest.raises(InputError, match=f"{name}.lammpstrj.*{message}"):
            list(open_trajectory(_dump(tmp_path / f"{name}.lammpstrj", rows)))
    with pytest.raises(InputError, match="frame 2: atom 2 is O"):  # a shard starting later: compared with frame 0
        list(open_trajectory(str(tmp_path / "swap.lammpstrj")).iter_range(2, 3))
    # text precision (LAMMPS' %g: 6 digits): 400.123 (0.001 Å) is fine with velocities (limit 1e-3 Å)…
    assert len(list(open_trajectory(_dump(tmp_path / "mid.lammpstrj", lambda k: _water_rows(k, x=400.0))))) == 3
    mid = _dump(tmp_path / "midfd.lammpstrj", lambda k: [r[:6] for r in _water_rows(k, x=400.0)],
                columns="id type element xu yu zu")
    with pytest.raises(InputError, match="written to 0.001 Å only .*position differences"):  # …not without them
        list(open_trajectory(mid))
    # …unless written with more digits
    more = _dump(tmp_path / "more.lammpstrj", lambda k: [r[:6] for r in _water_rows(k, x=400.0, digits=10)],
                 columns="id type element xu yu zu")
    assert len(list(open_trajectory(more))) == 3
    for name, columns, message in (("noid", "type element xu yu zu vx vy vz", "no 'id' column"),
                                   ("nox", "id type element vx vy vz", "no coordinate columns")):
        rows = lambda k: [r[1:] if name == "noid" else r[:3] + r[6:] for r in _water_rows(k)]  # noqa: E731
        with pytest.raises(InputError, match=f"{name}.lammpstrj, frame 0: {message}"):
            open_trajectory(_dump(tmp_path / f"{name}.lammpstrj", rows, columns))
    (tmp_path / "empty.lammpstrj").touch()
    (tmp_path / "bin.lammpstrj").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bin.extxyz").write_bytes(bytes(range(256)) * 4)
    for name, message in (("empty.lammpstrj", "file is empty"), ("bin.lammpstrj", "binary data"),
                          ("bin.extxyz", "frame 0: cannot read as extxyz: binary data")):
        with pytest.raises(InputError, match=f"{name}.*{message}"):
            list(open_trajectory(str(tmp_path / name)).iter_range(0, None))


def test_h5md_without_units_warns_and_refuses_nm(tmp_path):
    import h5py

    from aptnn.io.trajectory import open_trajectory

    def write(name, scale):
        mol = molecule("H2O")
        with h5py.File(tmp_path / name, "w") as f:
            g = f.create_group("particles/all")
            g["position/value"] = np.array([mol.positions + 5.0] * 2) * scale
            g["box/edges/value"] = np.full((2, 3), 10.0 * scale)
            g["species"] = mol.numbers
        return str(tmp_path / name)

    with pytest.warns(UserWarning, match="no unit attribute.*LAMMPS 'real' units"):
        frames = list(open_trajectory(write("angstrom.h5", 1.0)))
    np.testing.assert_allclose(frames[0].atoms.cell.lengths(), 10.0)
    with pytest.warns(UserWarning, match="no unit attribute"):
        with pytest.raises(InputError, match="nm.h5: atoms 0.0\\d+ Å apart in frame 0.*unit attributes"):
            open_trajectory(write("nm.h5", 0.1))


CONFIG_PROBLEMS = {"channels": (100000, "channels = 100000 is outside 1…512"), "lmax": (9, "lmax = 9 is outside 0…4"),
                   "n_layers": (2.5, "not a whole number"), "cutoff": (50.0, r"cutoff = 50.0 Å is outside \(0, 20\]"),
                   "species": ([8, 8], "repeats an element"), "irrep_scale": ([1.0], "irrep_scale"),
                   "colour": ("red", r"unknown key\(s\) \['colour'\]"), "radial_hidden": (64, "implies")}


@pytest.mark.parametrize("key", sorted(CONFIG_PROBLEMS))
def test_checkpoint_config_is_checked_before_building(tmp_path, key):
    import json

    import torch

    from aptnn.errors import CheckpointError
    from aptnn.model.checkpoint import SHIPPED_DIR, load_checkpoint

    payload = torch.load(SHIPPED_DIR / "water-rpbe-d3.pt", weights_only=True)
    config = json.loads(payload["config"])
    value, message = CONFIG_PROBLEMS[key]
    config[key] = value
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=f"m.pt.*{message}"):
        load_checkpoint(tmp_path / "m.pt")
