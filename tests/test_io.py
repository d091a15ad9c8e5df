"""Reading labelled frames: extxyz layout, anchor format (full and partial labels), bad input."""
import numpy as np
import pytest
from ase.build import molecule

from aptnn.errors import InputError
from aptnn.frames import get_apt, set_apt
from aptnn.io import read_frames, write_frames
from aptnn.io.anchor import read_anchor, write_anchor


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
