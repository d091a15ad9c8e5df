"""The anchor code's (AtomicPolarTensor) xyz format.

A frame is a count line, a comment line holding ``fmt=p:a`` (all atoms labelled) or ``fmt=p:t``
(partial: only some rows carry a label), then one row per atom: ``El x y z`` (Å) optionally followed by
the 9 APT components (e, row-major P[ξ,ζ] = ∂M_ξ/∂r_ζ). The format has no cell: give it separately.
"""
from __future__ import annotations

import os
import re

import numpy as np
from ase import Atoms

from aptnn.errors import InputError
from aptnn.labels import APT_KEY

_FMT = re.compile(r"fmt\s*=\s*['\"]?p:([at])['\"]?")


def read_anchor(path: str | os.PathLike, cell=None, pbc: bool | None = None) -> list[Atoms]:
    """Read every frame of an anchor-format file.

    ``cell``: 3 numbers (orthorhombic box, Å) or a 3×3 matrix (rows = lattice vectors, Å); with no cell the
    frames have open boundaries. Atoms without APT components get NaN labels (masked out of the loss).
    """
    path = str(path)
    with open(path) as fh:
        lines = fh.read().splitlines()
    if cell is not None:
        cell = np.asarray(cell, dtype=float)
        cell = np.diag(cell) if cell.shape == (3,) else cell.reshape(3, 3)
    use_pbc = (cell is not None) if pbc is None else bool(pbc)
    frames: list[Atoms] = []
    pos = 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1
            continue
        index = len(frames)
        try:
            natoms = int(lines[pos].split()[0])
        except (ValueError, IndexError):
            raise InputError(f"line {pos + 1}: expected an atom count, got {lines[pos]!r}", path, index)
        if pos + 2 + natoms > len(lines):
            raise InputError(f"truncated: {natoms} atoms announced at line {pos + 1}", path, index)
        match = _FMT.search(lines[pos + 1])
        full = match is None or match.group(1) == "a"
        symbols, xyz = [], np.empty((natoms, 3))
        apt = np.full((natoms, 9), np.nan)
        for k in range(natoms):
            row = lines[pos + 2 + k].split()
            if len(row) not in (4, 13):
                raise InputError(f"line {pos + 3 + k}: expected 4 or 13 fields, got {len(row)}", path, index)
            if full and len(row) != 13:
                raise InputError(f"line {pos + 3 + k}: fmt=p:a requires 9 APT components", path, index)
            symbols.append(row[0])
            try:
                values = np.array(row[1:], dtype=float)
            except ValueError:
                raise InputError(f"line {pos + 3 + k}: not a number in {row[1:]}", path, index)
            xyz[k] = values[:3]
            if len(row) == 13:
                apt[k] = values[3:]
        try:
            atoms = Atoms(symbols=symbols, positions=xyz)
        except (KeyError, ValueError) as err:
            raise InputError(f"unknown element: {err}", path, index)
        if cell is not None:
            atoms.cell = cell
        atoms.pbc = use_pbc
        atoms.arrays[APT_KEY] = apt
        frames.append(atoms)
        pos += 2 + natoms
    return frames


def write_anchor(path: str | os.PathLike, frames: list[Atoms]) -> None:
    """Write frames in the anchor format (cells are not stored by the format)."""
    with open(path, "w") as fh:
        for atoms in frames:
            apt = atoms.arrays.get(APT_KEY)
            labelled = None if apt is None else np.isfinite(apt).all(axis=1)
            full = labelled is not None and labelled.all()
            fh.write(f"{len(atoms)}\nfmt={'p:a' if full else 'p:t'}\n")
            for k, (sym, xyz) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions)):
                row = f"{sym} {xyz[0]:.8e} {xyz[1]:.8e} {xyz[2]:.8e}"
                if labelled is not None and labelled[k]:
                    row += " " + " ".join(f"{v:.8e}" for v in apt[k])
                fh.write(row + "\n")
