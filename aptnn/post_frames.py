"""aptnn-post's input frames: velocities (from the file or central differences), atom groups from MDAnalysis
selections, and the temperature the spectrum uses. Units: positions Å, velocities Å/fs, times fs, temperatures K.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from aptnn import estimators
from aptnn.errors import InputError
from aptnn.estimators import central_difference
from aptnn.io.trajectory import FrameSource, MDFrame


def kinetic_temperature(frame: MDFrame) -> float:
    """Equipartition temperature (K) of one frame's velocities (Å/fs): :func:`aptnn.estimators.kinetic_temperature`."""
    return estimators.kinetic_temperature(frame.atoms.numbers, frame.velocities)


def selection_groups(first: MDFrame, selections: list[str]) -> dict[str, np.ndarray]:
    """Groups from MDAnalysis selection strings (``NAME=SELECTION`` or just SELECTION) on the first frame;
    atom names, types and elements are the element symbols, positions and box those of the frame."""
    import MDAnalysis as mda

    atoms = first.atoms
    u = mda.Universe.empty(len(atoms), trajectory=True)
    symbols = atoms.get_chemical_symbols()
    for attr in ("names", "types", "elements"):
        u.add_TopologyAttr(attr, symbols)
    u.atoms.positions = atoms.positions
    if atoms.pbc.any():
        u.dimensions = np.concatenate([atoms.cell.lengths(), atoms.cell.angles()])
    groups = {}
    for text in selections:
        name, _, sel = text.partition("=") if "=" in text else (text, "", text)
        try:
            idx = u.select_atoms(sel.strip()).indices
        except Exception as err:  # MDAnalysis raises several kinds for a bad selection
            raise InputError(f"bad group selection {sel!r}: {err}") from None
        mask = np.zeros(len(atoms), dtype=bool)
        mask[idx] = True
        if not mask.any():
            raise InputError(f"group selection {sel!r} matches no atom")
        groups[name.strip()] = mask
    return groups


def with_velocities(source: FrameSource, frames: Iterator[MDFrame], warn: bool = True) -> Iterator[MDFrame]:
    """Frames with velocities: from the file, or by central differences of positions (minimum image)."""
    first = next(frames, None)
    if first is None:
        raise InputError("trajectory has no frames", source.path)
    if first.velocities is not None:
        yield first
        yield from frames
        return
    if warn:
        warnings.warn(f"{source.path}: no velocities in the file; using central differences of positions (every "
                      "MD step needed; for velocity Verlet they equal the integrator's velocities exactly)",
                      stacklevel=2)
    prev, cur = first, next(frames, None)
    if cur is None:
        raise InputError("need at least 3 frames for finite-difference velocities", source.path)
    for k, nxt in enumerate(frames, start=1):
        if prev.time is None or nxt.time is None:
            raise InputError("finite-difference velocities need times: give --timestep", source.path, k)
        step = nxt.time - cur.time
        if not np.isclose(cur.time - prev.time, step, rtol=1e-6):
            raise InputError("frames are not consecutive with a constant step: finite differences impossible",
                             source.path, k)
        if None not in (prev.step, cur.step) and cur.step - prev.step != 1:
            raise InputError(f"frames are {cur.step - prev.step} MD steps apart (steps {prev.step}, {cur.step}): "
                             "central differences need every step (they would alias the O–H stretch); write "
                             "velocities into the trajectory, or every step", source.path, k)
        source.finite_difference_step_fs = step
        cell = cur.atoms.cell.array if cur.atoms.pbc.any() else None
        velocities = central_difference(prev.atoms.positions, nxt.atoms.positions, cell, 2 * step, cur.atoms.pbc)
        yield MDFrame(cur.atoms, velocities, cur.time, cur.step)
        prev, cur = cur, nxt


def check_temperature(kinetic: float, given: float | None, path: str, natoms: int = 10**9) -> float:
    """The temperature (K) to store: ``given``, else the kinetic one. Velocities in the wrong unit (a metal dump
    read as real: ×1000 in T's square root) are an error: a kinetic temperature outside 1–10⁵ K, or off the
    given one by more than ×10. Off by more than 30 % (or 4 standard deviations of one frame's kinetic
    temperature, √(2/3N), for small systems) is a warning."""
    hint = "are the velocity units right (--units; H5MD unit attributes)?"
    if given is not None and not (np.isfinite(given) and given > 0):
        raise InputError(f"temperature must be a positive number of K, not {given}")
    if not np.isfinite(kinetic):
        raise InputError("kinetic temperature of the first frame is not finite: NaN or inf velocities", path, 0)
    if kinetic == 0.0:  # velocities all zero (e.g. a minimised start): nothing to judge
        if given is None:
            raise InputError("all velocities of the first frame are zero: give --temperature (K)", path, 0)
        return given
    if given is None and not 1.0 <= kinetic <= 1e5:
        raise InputError(f"kinetic temperature of the first frame is {kinetic:.3g} K: {hint}", path, 0)
    if given is not None:
        ratio = kinetic / given
        if not 0.1 <= ratio <= 10:
            raise InputError(f"kinetic temperature of the first frame is {kinetic:.3g} K, but {given:g} K was "
                             f"given: {hint}", path, 0)
        if abs(ratio - 1.0) > max(0.3, 4.0 * np.sqrt(2.0 / (3.0 * natoms))):
            warnings.warn(f"{path}: kinetic temperature of the first frame is {kinetic:.0f} K, not {given:.0f} K: "
                          f"{hint}", stacklevel=3)
    return kinetic if given is None else given
