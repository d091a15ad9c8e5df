"""APT labels on ASE :class:`~ase.Atoms` frames: checks, and reading/writing the ``apt`` array (keys in
:mod:`aptnn.keys`).

* positions in Å (may be unwrapped, i.e. outside the cell), cell rows = lattice vectors in Å;
* ``pbc`` all False means open boundaries (cluster / gas phase), then the cell is ignored;
* APT labels live in ``atoms.arrays["apt"]`` with shape (N, 9): row-major P[ξ,ζ] = ∂M_ξ/∂r_ζ in e;
  atoms without a label carry NaN in all nine columns (partially labelled frames);
* committee spread in ``atoms.arrays["apt_std"]`` (N, 9), same layout.
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

from aptnn import keys
from aptnn.errors import InputError

APT_KEY = keys.APT          # kept as names of this module for existing imports
APT_STD_KEY = keys.APT_STD


def check_frame(atoms: Atoms, source: str | None = None, frame: int | None = None) -> None:
    """Raise :class:`InputError` naming ``source`` and ``frame`` if ``atoms`` cannot be used."""
    if len(atoms) == 0:
        raise InputError("frame has no atoms", source, frame)
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        bad = int(np.argwhere(~np.isfinite(pos))[0, 0])
        raise InputError(f"non-finite coordinates (NaN or inf), first at atom {bad}", source, frame)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        cell = np.asarray(atoms.cell.array, dtype=float)
        if not np.all(np.isfinite(cell)):
            raise InputError("cell contains NaN or inf", source, frame)
        lengths = np.linalg.norm(cell, axis=1)
        if np.any(lengths[pbc] < 1e-8):
            raise InputError(
                "periodic frame without a cell: give a cell (extxyz Lattice=...) or set pbc to False",
                source, frame)
        if atoms.cell.rank == 3 and abs(np.linalg.det(cell)) < 1e-8:
            raise InputError("cell is singular (zero volume)", source, frame)
    if APT_KEY in atoms.arrays:
        apt = atoms.arrays[APT_KEY]
        if apt.shape != (len(atoms), 9):
            raise InputError(f"APT array '{APT_KEY}' has shape {apt.shape}, expected ({len(atoms)}, 9)",
                             source, frame)
        finite = np.isfinite(apt)
        partial = finite.any(axis=1) & ~finite.all(axis=1)
        if partial.any():
            raise InputError(f"atom {int(np.argmax(partial))} has some but not all 9 APT components",
                             source, frame)


def get_apt(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Return (P, mask): P with shape (N, 3, 3) in e, P[i, ξ, ζ] = ∂M_ξ/∂r_iζ, and the labelled-atom mask.

    Unlabelled atoms (NaN rows) get zeros in P and False in the mask; a frame without an ``apt`` array
    is entirely unlabelled.
    """
    n = len(atoms)
    if APT_KEY not in atoms.arrays:
        return np.zeros((n, 3, 3)), np.zeros(n, dtype=bool)
    flat = np.asarray(atoms.arrays[APT_KEY], dtype=float)
    mask = np.isfinite(flat).all(axis=1)
    apt = np.where(mask[:, None], flat, 0.0).reshape(n, 3, 3)
    return apt, mask


def set_apt(atoms: Atoms, apt: np.ndarray, key: str = APT_KEY) -> None:
    """Store (N, 3, 3) tensors P[i, ξ, ζ] row-major as ``atoms.arrays[key]`` with shape (N, 9)."""
    apt = np.asarray(apt, dtype=float)
    atoms.arrays[key] = apt.reshape(len(atoms), 9).copy()


PGT_KEY = keys.PGT  # (N, 27) e·Å/V, row-major G[ξ,η,ζ] = ∂α_ξη/∂r_ζ; NaN rows = unlabelled


def get_pgt_labels(atoms: Atoms, source: str | None = None, frame: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Return (G, mask): G with shape (N, 3, 3, 3) in e·Å/V, G[i, ξ, η, ζ] = ∂α_ξη/∂r_iζ, and the labelled-atom
    mask, as :func:`get_apt` for the ``pgt`` array (N, 27): NaN rows are unlabelled (zeros, False), a frame
    without the array is entirely unlabelled; a wrong shape or a partly finite row is an :class:`InputError`."""
    n = len(atoms)
    if PGT_KEY not in atoms.arrays:
        return np.zeros((n, 3, 3, 3)), np.zeros(n, dtype=bool)
    flat = np.asarray(atoms.arrays[PGT_KEY], dtype=float)
    if flat.shape != (n, 27):
        raise InputError(f"PGT array '{PGT_KEY}' has shape {flat.shape}, expected ({n}, 27)", source, frame)
    finite = np.isfinite(flat)
    partial = finite.any(axis=1) & ~finite.all(axis=1)
    if partial.any():
        raise InputError(f"atom {int(np.argmax(partial))} has some but not all 27 PGT components", source, frame)
    mask = finite.all(axis=1)
    return np.where(mask[:, None], flat, 0.0).reshape(n, 3, 3, 3), mask
