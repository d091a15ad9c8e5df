"""Read and write labelled frames (extxyz via ASE, anchor xyz) with clear errors; checks of MD frames."""
from __future__ import annotations

import contextlib
import os

import numpy as np
from ase import Atoms

from aptnn.errors import APTNNError, InputError
from aptnn.labels import APT_KEY, check_frame

#: coarsest float32 step (Å) accepted at the largest |coordinate| of a frame with velocities (|x| < 16384 Å)
FLOAT32_STEP_LIMIT_A = 1e-3
#: the same without velocities, which then come from differences of positions (|x| < 2048 Å)
FLOAT32_STEP_LIMIT_FD_A = 1e-4


def describe(err: BaseException) -> str:
    """One line for a library's exception: its type and message (MDAnalysis' topology preamble dropped)."""
    text = str(err)
    if "Failed to construct topology" in text and "Error: " in text:
        text = text.split("Error: ", 1)[1]
    text = " ".join(text.split())
    text = text if len(text) <= 300 else text[:297] + "..."
    name = type(err).__name__
    if isinstance(err, UnicodeDecodeError):
        return f"binary data where text was expected ({name}: {text})"
    return f"{name}: {text}" if text else name


@contextlib.contextmanager
def reading(path: str, what: str, frame: int | None = None):
    """Turn any exception but aptnn's own into ``InputError("cannot read <what>: …", path, frame)``."""
    try:
        yield
    except APTNNError:
        raise
    except Exception as err:  # the readers raise ValueError, KeyError, OSError, EOFError, struct.error...
        raise InputError(f"cannot read {what}: {describe(err)}", path, frame) from None


def check_md_frame(atoms: Atoms, velocities: np.ndarray | None, time: float | None, first: np.ndarray | None,
                   source: str, frame: int, float32_length: float | None = None,
                   resolution: float | None = None) -> None:
    """Raise :class:`InputError` (``source``, ``frame``) if an MD frame cannot be used: no atoms, atom count or
    elements (atomic numbers) not those of frame 0 (``first``), non-finite positions, cell, velocities (Å/fs)
    or time (fs); coordinates resolved worse than :data:`FLOAT32_STEP_LIMIT_A` (:data:`FLOAT32_STEP_LIMIT_FD_A`
    without velocities, which then come from position differences): with ``float32_length`` (Å per stored unit
    of a float32 reader) the float32 step at the largest coordinate, with ``resolution`` (Å) the step of the
    digits a text file wrote there (LAMMPS' default ``%g`` keeps 6 significant digits)."""
    from ase.data import chemical_symbols

    n = len(atoms)
    if n == 0:
        raise InputError("frame has no atoms", source, frame)
    first = atoms.numbers if first is None else first
    if n != len(first):
        raise InputError(f"{n} atoms instead of {len(first)} (as in frame 0)", source, frame)
    changed = np.flatnonzero(atoms.numbers != first)
    if len(changed):
        i = int(changed[0])
        raise InputError(f"atom {i} is {chemical_symbols[atoms.numbers[i]]} but was {chemical_symbols[first[i]]} "
                         "in frame 0: elements must not change", source, frame)
    check_frame(atoms, source, frame)
    if velocities is not None:
        if np.shape(velocities) != (n, 3):
            raise InputError(f"velocities have shape {np.shape(velocities)}, expected ({n}, 3)", source, frame)
        if not np.isfinite(velocities).all():
            bad = int(np.argwhere(~np.isfinite(velocities))[0, 0])
            raise InputError(f"non-finite velocities (NaN or inf), first at atom {bad}", source, frame)
    if time is not None and not np.isfinite(time):
        raise InputError(f"time is {time}", source, frame)
    if float32_length or resolution:
        largest = float(np.abs(atoms.positions).max())
        limit = FLOAT32_STEP_LIMIT_A if velocities is not None else FLOAT32_STEP_LIMIT_FD_A
        why = "" if velocities is not None else " for velocities from position differences"
        if float32_length:
            step = float(np.spacing(np.float32(largest / float32_length))) * float32_length
            if step > limit:
                raise InputError(f"coordinates reach {largest:.6g} Å, where float32 (this reader's precision) "
                                 f"resolves only {step:.2g} Å (limit {limit:g} Å{why}): write wrapped coordinates "
                                 "(x y z columns, not xu yu zu) or use a float64 format (extxyz, H5MD)", source, frame)
        if resolution and resolution > limit:
            raise InputError(f"coordinates reach {largest:.6g} Å but are written to {resolution:.2g} Å only (limit "
                             f"{limit:g} Å{why}): write more digits (LAMMPS: dump_modify ID format float %.10g) or "
                             "wrapped coordinates (x y z, not xu yu zu)", source, frame)


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
