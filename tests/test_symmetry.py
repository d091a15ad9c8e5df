"""Exact physics of the network: E(3) equivariance, invariances, sum rule, equivalent cells, open boundaries.

All tests use a float64 network with random weights and non-trivial normalisation (per-species isotropic
mean and per-irrep scales), so the normalisation is covered too.
"""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import make_supercell, molecule
from e3nn import o3
from helpers import apts, random_network, water_box

TOL = 1e-5  # e; float64 reaches ~1e-12


def rotate(atoms: Atoms, r: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ r.T
    if atoms.pbc.any():
        out.cell = atoms.cell.array @ r.T
    return out


@pytest.mark.parametrize("pbc", [True, False])
def test_rotation_equivariance(net64, pbc):
    atoms = water_box(pbc=pbc)
    r = o3.rand_matrix(dtype=torch.float64).numpy()
    p = apts(net64, atoms)
    p_rot = apts(net64, rotate(atoms, r))
    assert np.abs(p).max() > 0.1  # non-trivial output
    np.testing.assert_allclose(p_rot, r @ p @ r.T, atol=TOL)
    # a general (non-symmetric) tensor: the transposed law would fail
    assert np.abs(p - p.transpose(0, 2, 1)).max() > 1e-3


def test_inversion_leaves_polar_polar_tensor_unchanged(net64):
    atoms = water_box(pbc=False)
    inv = rotate(atoms, -np.eye(3))
    np.testing.assert_allclose(apts(net64, inv), apts(net64, atoms), atol=TOL)


def test_translation_and_unwrapped_positions(net64, waters):
    p = apts(net64, waters)
    shifted = waters.copy()
    shifted.positions += np.array([0.37, -1.9, 2.4])
    np.testing.assert_allclose(apts(net64, shifted), p, atol=TOL)
    unwrapped = waters.copy()  # individual atoms moved by lattice vectors far outside the cell
    rng = np.random.default_rng(3)
    unwrapped.positions += rng.integers(-40, 40, size=(len(waters), 3)) @ waters.cell.array
    np.testing.assert_allclose(apts(net64, unwrapped), p, atol=TOL)


def test_permutation_equivariance(net64, waters):
    perm = np.random.default_rng(0).permutation(len(waters))
    np.testing.assert_allclose(apts(net64, waters[perm]), apts(net64, waters)[perm], atol=TOL)


@pytest.mark.parametrize("charge", [0.0, 1.0])
def test_acoustic_sum_rule_exact(charge):
    net = random_network()
    atoms = water_box()
    from aptnn.graph import collate, frame_graph
    g = collate([frame_graph(atoms, [1, 8], 6.0)], dtype=torch.float64)
    p = net(g, torch.tensor([charge], dtype=torch.float64)).detach().numpy()
    np.testing.assert_allclose(p.sum(0), charge * np.eye(3), atol=1e-10)
    p_free = apts(random_network(sum_rule=False), atoms)
    assert np.abs(p_free.sum(0)).max() > 1e-3  # the rule is really switched off


def test_cubic_and_sheared_triclinic_description_agree(net64, waters):
    a1, a2, a3 = waters.cell.array
    sheared = waters.copy()
    sheared.cell = np.array([a1, a2 + a1, a3 - 2 * a2 + a1])  # same lattice, triclinic cell
    assert abs(sheared.cell.angles()[2] - 90) > 10
    p = apts(net64, waters)
    np.testing.assert_allclose(apts(net64, sheared), p, atol=TOL)
    sheared.wrap()  # and with the atoms wrapped into the triclinic cell
    np.testing.assert_allclose(apts(net64, sheared), p, atol=TOL)


def test_supercell_gives_identical_apts(net64, waters):
    p = apts(net64, waters)
    big = make_supercell(waters, np.diag([2, 1, 1]))
    p_big = apts(net64, big)
    # make_supercell orders atoms image by image
    np.testing.assert_allclose(p_big[: len(waters)], p, atol=TOL)
    np.testing.assert_allclose(p_big[len(waters):], p, atol=TOL)


def test_cell_smaller_than_twice_the_cutoff(net64):
    small = water_box(n_per_side=1, spacing=3.1)  # 3.1 Å box, cutoff 6 Å: many images of every atom
    p = apts(net64, small)
    big = small.repeat((2, 3, 1))
    np.testing.assert_allclose(apts(net64, big), np.tile(p, (6, 1, 1)), atol=TOL)


def test_open_boundaries_molecule_far_from_origin(net64):
    mol = molecule("H2O")
    p = apts(net64, mol)
    far = mol.copy()
    far.positions += 1e4
    far.cell = np.eye(3) * 2.0  # a cell that must be ignored because pbc is False
    np.testing.assert_allclose(apts(net64, far), p, atol=1e-4)
    # an isolated molecule is not its periodic image: a big box differs only when images are in range
    boxed = mol.copy()
    boxed.cell = np.eye(3) * 4.0
    boxed.pbc = True
    assert np.abs(apts(net64, boxed) - p).max() > 1e-4
    boxed.cell = np.eye(3) * 30.0
    np.testing.assert_allclose(apts(net64, boxed), p, atol=1e-10)


def test_batching_frames_is_the_same_as_one_by_one(net64, waters):
    other = water_box(seed=5)
    both = apts(net64, [waters, other])
    np.testing.assert_allclose(both[: len(waters)], apts(net64, waters), atol=1e-10)
    np.testing.assert_allclose(both[len(waters):], apts(net64, other), atol=1e-10)
