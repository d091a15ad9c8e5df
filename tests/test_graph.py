"""Frames → graph: neighbour lists against ASE's, far-away coordinates, and absurd cells refused up front."""
import time

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list
from helpers import water_box

from aptnn.errors import InputError
from aptnn.graph import frame_graph, neighbour_list


def _pairs(i, j, d):
    return sorted(zip(i.tolist(), j.tolist(), np.round(d, 6).tolist()))


@pytest.mark.parametrize("pbc", [True, False, (True, True, False)])
def test_neighbour_list_matches_ase_on_a_small_triclinic_cell(pbc):
    atoms = water_box(2, spacing=2.6, seed=4)
    atoms.set_cell(atoms.cell.array + [[0, 0, 0], [1.3, 0, 0], [0.7, -0.9, 0]], scale_atoms=False)
    atoms.pbc = pbc
    atoms.positions += [[40.0, -13.0, 7.5]]  # unwrapped, far outside the cell
    i, j, vec = neighbour_list(atoms, 6.0)
    ai, aj, ad = neighbor_list("ijd", atoms, 6.0)
    assert len(i) == len(ai) > 0
    assert _pairs(i, j, np.linalg.norm(vec, axis=1)) == _pairs(ai, aj, ad)


def test_coordinates_far_from_the_origin_give_the_same_apts():
    from aptnn.predict import APTPredictor

    model = APTPredictor.load("water-rpbe-d3", dtype="float64")
    atoms = water_box(2, seed=5)
    ref = model.predict(atoms)
    for distance, tol in ((1e4, 1e-9), (1e8, 1e-6), (1e12, 2e-3)):  # float64 input holds 1e12 Å to ~1e-4 Å
        far = atoms.copy()
        far.positions += distance * np.array([1.0, -0.7, 0.3])
        np.testing.assert_allclose(model.predict(far), ref, atol=tol)


@pytest.mark.parametrize("case", ["tiny cell", "nm read as Å", "overlap"])
def test_absurd_frames_are_refused_before_any_large_allocation(case):
    atoms = water_box(3, seed=6)
    if case == "tiny cell":
        atoms = Atoms("H", positions=[[0.1, 0.2, 0.3]], cell=np.eye(3) * 0.5, pbc=True)
        match = r"cell 0.5, 0.5, 0.5 Å .* 8 atoms/Å³ .* neighbour pairs"
    elif case == "nm read as Å":
        atoms.set_cell(atoms.cell / 10, scale_atoms=True)
        match = r"atoms/Å³ .* is the cell or the length unit wrong"
    else:
        atoms.positions[4] = atoms.positions[1]
        match = r"atoms (1 and 4|4 and 1) are 0 Å apart"
    start = time.monotonic()
    with pytest.raises(InputError, match=match):
        frame_graph(atoms, [1, 8], 6.0, "t.xyz", 3)
    assert time.monotonic() - start < 5
