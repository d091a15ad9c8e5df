"""The two routes to APTs through ASE calculators (energies eV, forces eV/Å, dipoles e·Å, fields V/Å).

``field_route`` needs a calculator factory ``make(field)`` returning a calculator with a uniform external field
``field`` (V/Å, 3-vector) whose energy contains −M·E, so that F_i = P_iᵀ·E to first order and
∂F_iζ/∂E_ξ = P_i[ξ,ζ] (no sign flip). ``displacement_route`` needs a calculator that reports the dipole.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from ase import Atoms

from aptnn.errors import BackendMissing, LabelError  # noqa: F401 (defined in aptnn.errors, re-exported)


def _forces(atoms: Atoms, calc) -> np.ndarray:
    a = atoms.copy()
    a.calc = calc
    return a.get_forces()


def field_route(atoms: Atoms, make: Callable[[np.ndarray | None], object], strength: float = 0.01,
                linear_tolerance: float = 0.05) -> np.ndarray:
    """APTs (N, 3, 3) in e from forces at ±E along x, y, z (``strength`` in V/Å); 7 single points.

    Linearity check: the even part F(+E) + F(−E) − 2F(0) must stay below ``linear_tolerance`` times the odd
    part F(+E) − F(−E); otherwise the field is too strong (a :class:`LabelError` says so).
    """
    f0 = _forces(atoms, make(None))
    apt = np.empty((len(atoms), 3, 3))
    for xi in range(3):
        e = np.zeros(3)
        e[xi] = strength
        fp, fm = _forces(atoms, make(e)), _forces(atoms, make(-e))
        odd, even = fp - fm, fp + fm - 2 * f0
        if np.abs(even).max() > linear_tolerance * max(np.abs(odd).max(), 1e-12):
            raise LabelError(f"field {strength} V/Å along axis {xi} is outside the linear regime (even response "
                             f"{np.abs(even).max():.3g} vs odd {np.abs(odd).max():.3g} eV/Å): use a weaker field")
        apt[:, xi, :] = odd / (2 * strength)  # P_i[ξ, ζ] = ∂F_iζ / ∂E_ξ
    return apt


def wrap_dipole_difference(delta: np.ndarray, atoms: Atoms) -> np.ndarray:
    """Reduce a dipole difference (e·Å) by the polarization quantum e·(lattice vectors) of a periodic cell."""
    if not atoms.pbc.any():
        return delta
    cell = atoms.cell.array
    frac = np.linalg.solve(cell.T, delta)
    return delta - np.round(frac) @ cell


def displacement_route(atoms: Atoms, calc, delta: float = 0.01, indices: list[int] | None = None) -> np.ndarray:
    """APTs (N, 3, 3) in e from dipoles at ±``delta`` Å per atom and axis (NaN rows for atoms not in
    ``indices``); periodic dipole differences are wrapped by the polarization quantum."""
    apt = np.full((len(atoms), 3, 3), np.nan)
    for i in range(len(atoms)) if indices is None else indices:
        for zeta in range(3):
            dipoles = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, zeta] += sign * delta
                a.calc = calc
                dipoles.append(np.asarray(a.get_dipole_moment(), dtype=float))
            diff = wrap_dipole_difference(dipoles[0] - dipoles[1], atoms)
            apt[i, :, zeta] = diff / (2 * delta)  # P_i[ξ, ζ] = ∂M_ξ / ∂r_iζ
    return apt
