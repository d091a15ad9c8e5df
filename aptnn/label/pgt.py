"""Reference polarisability-gradient tensors (PGTs, for Raman spectra) of molecules (open boundaries).

Conventions (units as in :mod:`aptnn.units`):

* polarisability α in e·Å²/V, so that a dipole in e·Å is α times a field in V/Å (1 atomic unit of
  polarisability = e·a0²/(E_h/e) = :data:`aptnn.units.POLARIZABILITY_AU_TO_E_A2_PER_V` ≈ 0.0102908 e·Å²/V);
* PGT of atom i: G_i[ξ,η,ζ] = ∂α_ξη/∂r_iζ in e·Å/V (symmetric in ξη); positions in Å, fields in V/Å (the
  ``aptnn label --field`` convention);
* layout: (N, 3, 3, 3) indexed [i, ξ, η, ζ]; in extxyz the per-atom array ``pgt`` of 27 floats, row-major over
  (ξ, η, ζ) (:func:`set_pgt`, :func:`get_pgt`);
* translational sum rule Σ_i G_i = 0 (also for ions); under a rotation R, G'[a,b,c] = R_ai R_bj R_ck G[i,j,k]
  (:func:`rotate_pgt`).

The routes rest on P_i[ξ,ζ] = ∂μ_ξ/∂r_iζ (APT, e) and α_ξη = ∂μ_ξ/∂E_η, so that
G_i[ξ,η,ζ] = ∂α_ξη/∂r_iζ = ∂P_i[ξ,ζ]/∂E_η = ∂²F_iζ/∂E_ξ∂E_η:

* A, :func:`pgt_displacement`: analytic α at ±δ along every atom coordinate, 6N polarisability calculations;
* B, :func:`pgt_field`: analytic APTs in fields ±E along x, y, z, 6 APT calculations for all atoms;
* C, :func:`pgt_field_forces`: second differences of forces in fields (any ``make(field)`` calculator factory,
  e.g. :func:`aptnn.label.xtb.xtb_factory` for clusters), 19 single points.

PySCF (closed-shell HF or Kohn–Sham) gives α and the APTs analytically from coupled-perturbed SCF (CPHF/CPKS;
PySCF ≥ 2 has no ``pyscf.prop`` without the separate pyscf-properties package, so the response equations are
solved here with ``pyscf.scf.cphf``).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
from ase import Atoms

from aptnn import keys, units
from aptnn.errors import InputError, LabelError

PGT_KEY = keys.PGT  # (N, 27) e·Å/V, row-major G[ξ,η,ζ]


def _pyscf_scf(atoms: Atoms, field, method: str, basis: str):
    from aptnn.label.pyscf_backend import scf_in_field

    if atoms.pbc.any():
        raise LabelError("polarisability-gradient tensors are labelled for molecules only; set pbc to False")
    mol, mf, field_au = scf_in_field(atoms, field, method=method, basis=basis)
    mol.set_common_orig((0.0, 0.0, 0.0))
    return mol, mf, field_au


def polarizability(atoms: Atoms, method: str = "b3lyp", basis: str = "6-31g*", tol: float = 1e-10) -> np.ndarray:
    """Static polarisability α (3, 3) in e·Å²/V, analytic (CPHF/CPKS, closed shells, PySCF).

    The field perturbation h_ξ = r_ξ gives first-order orbitals U_ξ (virtual–occupied, ``tol`` the CPHF
    residual) and α_ξη = −4 Σ_ai r_ξ,ai U_η,ai (double occupancy; electrons carry −e).
    """
    from pyscf.scf import cphf

    mol, mf, _ = _pyscf_scf(atoms, None, method, basis)
    c, occ = mf.mo_coeff, mf.mo_occ > 0
    co = c[:, occ]
    nmo, nocc = c.shape[1], co.shape[1]
    h1 = np.einsum("xpq,pa,qi->xai", mol.intor_symmetric("int1e_r", comp=3), c, co)
    vresp = mf.gen_response(c, mf.mo_occ, hermi=1)

    def induced(mo1):
        dm = np.einsum("pa,xai,qi->xpq", c, 2 * mo1.reshape(-1, nmo, nocc), co)
        return np.einsum("pa,xpq,qi->xai", c, vresp(dm + dm.transpose(0, 2, 1)), co)

    mo1 = cphf.solve(induced, mf.mo_energy, mf.mo_occ, h1, np.zeros_like(h1), max_cycle=100, tol=tol)[0]
    e2 = np.einsum("xai,yai->xy", h1, mo1)
    return -2 * (e2 + e2.T) * units.POLARIZABILITY_AU_TO_E_A2_PER_V


def polarizability_field(atoms: Atoms, make: Callable, strength: float = 0.01) -> np.ndarray:
    """α (3, 3) in e·Å²/V, symmetrised, from dipoles (e·Å) at fields ±``strength`` V/Å along x, y, z (6 single
    points of a ``make(field)`` calculator factory, e.g. :func:`aptnn.label.pyscf_backend.pyscf_factory`)."""
    alpha = np.empty((3, 3))
    for eta in range(3):
        e = np.zeros(3)
        e[eta] = strength
        mu = []
        for sign in (1, -1):
            a = atoms.copy()
            a.calc = make(sign * e)
            mu.append(np.asarray(a.get_dipole_moment(), dtype=float))
        alpha[:, eta] = (mu[0] - mu[1]) / (2 * strength)  # α_ξη = ∂μ_ξ/∂E_η
    return 0.5 * (alpha + alpha.T)


def apt_in_field(atoms: Atoms, field=None, method: str = "b3lyp", basis: str = "6-31g*") -> np.ndarray:
    """Analytic APTs (N, 3, 3) in e, P[i, ξ, ζ] = ∂μ_ξ/∂r_iζ, in a uniform field (V/Å; None: no field): the
    CPHF APT of :func:`aptnn.label.pyscf_backend.analytic_apt`, converged tightly (differences of it are taken)."""
    from aptnn.label.pyscf_backend import analytic_apt

    if atoms.pbc.any():
        raise LabelError("polarisability-gradient tensors are labelled for molecules only; set pbc to False")
    return analytic_apt(atoms, method, basis, field=field, cpscf_tol=1e-10)


def pgt_displacement(atoms: Atoms, method: str = "b3lyp", basis: str = "6-31g*", delta: float = 0.005,
                     alpha: Callable[[Atoms], np.ndarray] | None = None) -> np.ndarray:
    """Route A: G (N, 3, 3, 3) in e·Å/V from α at ±``delta`` Å along each atom coordinate (central differences,
    6N polarisability calculations). ``alpha(atoms)`` (e·Å²/V) defaults to the analytic :func:`polarizability`;
    e.g. ``partial(polarizability_field, make=xtb_factory())`` for xTB."""
    alpha = alpha or partial(polarizability, method=method, basis=basis)
    g = np.empty((len(atoms), 3, 3, 3))
    for i in range(len(atoms)):
        for zeta in range(3):
            pair = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, zeta] += sign * delta
                pair.append(np.asarray(alpha(a), dtype=float))
            g[i, :, :, zeta] = (pair[0] - pair[1]) / (2 * delta)
    return g


def pgt_field(atoms: Atoms, method: str = "b3lyp", basis: str = "6-31g*", strength: float = 0.05,
              apt: Callable[[Atoms, np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """Route B: (G (N, 3, 3, 3) in e·Å/V symmetrised in ξη, relative asymmetry before symmetrising).

    G[i,ξ,η,ζ] = (P_i[ξ,ζ](+E_η) − P_i[ξ,ζ](−E_η)) / 2E with E = ``strength`` V/Å: 6 APT calculations.
    ``apt(atoms, field)`` defaults to the analytic :func:`apt_in_field`; the finite-field APT route works too:
    ``lambda a, e: field_route(a, lambda f: make(e if f is None else e + f), h)`` (6 × 7 single points).
    The asymmetry max|G[ξη] − G[ηξ]| / max|G| measures the finite-difference error (it vanishes exactly).
    """
    apt = apt or partial(apt_in_field, method=method, basis=basis)
    g = np.empty((len(atoms), 3, 3, 3))
    for eta in range(3):
        e = np.zeros(3)
        e[eta] = strength
        g[:, :, eta, :] = (apt(atoms, e) - apt(atoms, -e)) / (2 * strength)
    sym = 0.5 * (g + g.transpose(0, 2, 1, 3))
    return sym, float(np.abs(g - sym).max() * 2 / max(np.abs(sym).max(), 1e-300))


def pgt_field_forces(atoms: Atoms, make: Callable, strength: float = 0.2, with_apt: bool = False):
    """Route C: G (N, 3, 3, 3) in e·Å/V = ∂²F_iζ/∂E_ξ∂E_η from forces (eV/Å) at fields (V/Å) 0, ±h e_ξ and
    ±h e_ξ ± h e_η (ξ < η), h = ``strength``: 19 single points of a ``make(field)`` factory (``make(None)``:
    no field), e.g. :func:`aptnn.label.xtb.xtb_factory` for clusters. Second differences amplify force noise by
    1/h², so h is larger than for APTs (xTB: use ``accuracy`` ≤ 1e-3); the error is O(h²).

    ``with_apt``: also the APTs from the same ±h e_ξ points, P_i[ξ,ζ] = ∂F_iζ/∂E_ξ = ∂M_ξ/∂r_iζ in e (the
    convention of :func:`aptnn.label.routes.field_route`, O(h²) accurate): returns (G, P)."""
    def forces(field) -> np.ndarray:
        a = atoms.copy()
        a.calc = make(None if field is None else np.asarray(field, dtype=float) * strength)
        return a.get_forces()

    axes = np.eye(3)
    f0 = forces(None)
    g = np.empty((len(atoms), 3, 3, 3))
    apt = np.empty((len(atoms), 3, 3))
    for xi in range(3):
        plus, minus = forces(axes[xi]), forces(-axes[xi])
        g[:, xi, xi, :] = (plus + minus - 2 * f0) / strength**2
        apt[:, xi, :] = (plus - minus) / (2 * strength)
        for eta in range(xi + 1, 3):
            s, d = axes[xi] + axes[eta], axes[xi] - axes[eta]
            g[:, xi, eta, :] = g[:, eta, xi, :] = (forces(s) + forces(-s) - forces(d) - forces(-d)) / (
                4 * strength**2)
    return (g, apt) if with_apt else g


def rotate_pgt(g: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """G of the rotated molecule (positions r → R r): G'[i,a,b,c] = R_aj R_bk R_cl G[i,j,k,l]."""
    return np.einsum("aj,bk,cl,ijkl->iabc", rot, rot, rot, g)


def set_pgt(atoms: Atoms, g: np.ndarray) -> None:
    """Store G (N, 3, 3, 3) in e·Å/V as ``atoms.arrays["pgt"]`` (N, 27), row-major over (ξ, η, ζ)."""
    g = np.asarray(g, dtype=float)
    if g.shape != (len(atoms), 3, 3, 3):
        raise InputError(f"PGT has shape {g.shape}, expected ({len(atoms)}, 3, 3, 3)")
    atoms.arrays.pop(PGT_KEY, None)
    atoms.new_array(PGT_KEY, g.reshape(len(atoms), 27))


def get_pgt(atoms: Atoms) -> np.ndarray:
    """G (N, 3, 3, 3) in e·Å/V from ``atoms.arrays["pgt"]`` (N, 27)."""
    if PGT_KEY not in atoms.arrays:
        raise InputError(f"frame has no '{PGT_KEY}' array")
    g = np.asarray(atoms.arrays[PGT_KEY], dtype=float)
    if g.shape != (len(atoms), 27):
        raise InputError(f"PGT array '{PGT_KEY}' has shape {g.shape}, expected ({len(atoms)}, 27)")
    return g.reshape(len(atoms), 3, 3, 3)
