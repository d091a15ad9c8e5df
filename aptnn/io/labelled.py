"""Read and write labelled frames (extxyz via ASE with per-atom ``apt``, anchor xyz) with clear errors."""
from __future__ import annotations

import os

import numpy as np
from ase import Atoms

from aptnn.errors import InputError
from aptnn.io.checks import describe, reading
from aptnn.labels import APT_KEY, check_frame


def _is_anchor(path: str) -> bool:
    with open(path) as fh:
        fh.readline()
        return "fmt=" in fh.readline().replace(" ", "")


def read_frames(path: str | os.PathLike, index: str | int | slice = ":", fmt: str | None = None,
                cell=None) -> list[Atoms]:
    """Read frames from ``path`` and validate each one.

    ``fmt``: ``"anchor"`` for the anchor xyz format (detected from ``fmt=p:a|p:t`` in the comment line),
    otherwise any ASE format name or ``None`` to let ASE guess. ``cell`` (Å) is used by formats without one
    (anchor) or overrides a missing cell. APT labels are taken from the per-atom ``apt`` array (N×9, e).
    """
    path = str(path)
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if os.path.getsize(path) == 0:
        raise InputError("file is empty", path)
    with reading(path, "the file"):
        anchor = fmt == "anchor" or (fmt is None and _is_anchor(path))
    if anchor:
        from ase.io.formats import string2index

        from aptnn.io.anchor import read_anchor

        with reading(path, "as anchor xyz"):
            frames = read_anchor(path, cell=cell)
        index = string2index(index) if isinstance(index, str) else index
        frames = [frames[index]] if isinstance(index, int) else frames[index]
    else:
        import ase.io

        with reading(path, f"as {fmt or 'an ASE format'}"):  # ASE raises many kinds: one clear error
            frames = ase.io.read(path, index=index, format=fmt)
        if isinstance(frames, Atoms):
            frames = [frames]
        for atoms in frames:
            if cell is not None and not atoms.pbc.any():
                cell_arr = np.asarray(cell, dtype=float)
                atoms.cell = np.diag(cell_arr) if cell_arr.shape == (3,) else cell_arr.reshape(3, 3)
                atoms.pbc = True
            for key in ("APT", "apts"):
                if key in atoms.arrays and APT_KEY not in atoms.arrays:
                    atoms.arrays[APT_KEY] = atoms.arrays.pop(key)
            if APT_KEY in atoms.arrays:
                atoms.arrays[APT_KEY] = np.asarray(atoms.arrays[APT_KEY], dtype=float).reshape(len(atoms), -1)
    if not frames:
        raise InputError("file holds no frames", path)
    for k, atoms in enumerate(frames):
        check_frame(atoms, path, k)
    return frames


def write_frames(path: str | os.PathLike, frames: list[Atoms]) -> None:
    """Write frames as extxyz, atomically (a temporary file renamed into place: nothing half-written)."""
    import ase.io

    from aptnn.errors import OutputError

    path = str(path)
    tmp = path + ".part"
    try:
        ase.io.write(tmp, frames, format="extxyz")
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"cannot write: {describe(err)}", path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
