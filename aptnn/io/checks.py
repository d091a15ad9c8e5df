"""Checks shared by every reader: library failures turned into one error naming file and frame, and the
validation of each MD frame (atoms, elements, finite values, coordinate precision)."""
from __future__ import annotations

import contextlib

import numpy as np
from ase import Atoms

from aptnn.errors import APTNNError, InputError
from aptnn.labels import check_frame

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
