"""MD trajectories in: one frame-source interface over extxyz/ASE, H5MD, LAMMPS dumps and i-PI files.

Every source yields :class:`MDFrame` objects in internal units: positions and cell in Å (positions may be
unwrapped), velocities in Å/fs (None when the file has none), time in fs (None when unknown), the MD step
when the file records it.

Every frame is checked once, at the reader (:func:`aptnn.io.labelled.check_md_frame`): same atom count and elements
as frame 0, finite positions, velocities and cell, enough precision of the coordinates. Any exception of the
underlying library becomes an :class:`InputError` naming the file and the frame. The format is detected from
the content (HDF5 and LAMMPS dumps, compressed or not) and the name; files aptnn cannot use (DCD, XTC,
topologies…) are refused when opened, with the list of formats it reads.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from aptnn import units
from aptnn.errors import InputError
from aptnn.io.checks import reading
from aptnn.io.h5md import H5MDSource
from aptnn.io.ipi_files import IPISource, bead_files
from aptnn.io.lammps_dump import COMPRESSIONS, LAMMPSDumpSource, head_bytes
from aptnn.io.source import READERS, FrameSource, MDFrame, Probe

__all__ = ["FORMATS", "READERS", "ASEFileSource", "ASESource", "FrameSource", "H5MDSource", "IPISource",
           "LAMMPSDumpSource", "MDFrame", "detect_format", "open_run", "open_trajectory"]

SUPPORTED = ("LAMMPS text dumps (.lammpstrj, .dump; plain, gzip, bzip2 or xz), H5MD (.h5, .h5md), extxyz (.extxyz, "
             ".xyz), i-PI output (prefix.pos_<k>.xyz), ASE trajectories (.traj) and VASP XDATCAR/vasprun.xml")
#: name endings ASE reads into usable MD frames (positions; .traj also momenta)
ASE_NAMES = (".traj", "xdatcar", "vasprun.xml")
#: name endings of formats refused when detected, with the reason
REFUSED = {
    (".dcd", ".xtc", ".trr", ".trj", ".nc", ".ncdf", ".mdcrd", ".crd", ".binpos", ".tng"):
        "a binary or coordinate-only trajectory without elements (and mostly without velocities)",
    (".gro", ".pdb", ".pqr", ".mol2", ".cif", ".psf", ".tpr", ".top", ".itp", ".prmtop", ".parm7", ".data", ".lmp",
     ".restart", ".rst", ".rst7", ".inpcrd"):
        "a topology, structure or restart file, not an MD trajectory",
}


def _strip_compression(name: str) -> str:
    for ext in (".gz", ".bz2", ".xz"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def detect_format(path: str) -> str:
    """The trajectory format of ``path``: the registered readers (:data:`READERS`), in order of ``priority``,
    look at its content (HDF5, LAMMPS dump) and name; formats aptnn cannot use are an :class:`InputError`
    listing those it reads."""
    with reading(path, "the start of the file"):
        head = head_bytes(path)
        with open(path, "rb") as fh:
            raw = fh.read(8)
    name = os.path.basename(path).lower()
    plain = _strip_compression(name)
    probe = Probe(path, name, plain, raw, head)
    for reader in sorted(READERS.values(), key=lambda r: r.priority):
        found = reader.detect(probe)
        if found:
            return found
    for endings, why in REFUSED.items():
        if plain.endswith(endings):
            ext = next(e for e in endings if plain.endswith(e))
            raise InputError(f"{ext} files are {why}: aptnn-post reads {SUPPORTED}; convert it (e.g. with "
                             "MDAnalysis to H5MD, or with ASE to extxyz), or force ASE's reader with --format ase",
                             path)
    compressed = next((c for m, c, _ in COMPRESSIONS if raw.startswith(m)), None)
    what = f"{compressed}-compressed file of unknown content" if compressed else "unknown file type"
    raise InputError(f"{what} ({os.path.splitext(plain)[1] or 'no extension'}): aptnn-post reads {SUPPORTED}; "
                     "give --format to read it as one of them", path)


class ASESource(FrameSource):
    """extxyz and any ASE-readable trajectory. Velocities from a ``velocities``/``vel``/``velo`` array (in
    Å/fs × ``velocity_factor``) or from ASE momenta (converted from ASE units); time from ``info['time']``
    (fs) or ``step`` × ``timestep``. Native units: Å, fs, Å/fs."""

    format = "extxyz"
    extensions = (".extxyz", ".xyz")
    priority = 40
    VELOCITY_KEYS = ("velocities", "velocity", "vel", "velo")

    @classmethod
    def open(cls, path: str, lammps_units: str | None = None, types: list[str] | None = None,
             timestep: float | None = None) -> ASESource:
        """``timestep`` (fs) gives times to frames without ``info['time']``."""
        return cls(path, cls.format, timestep_fs=timestep)

    def __init__(self, path: str, format: str | None = None, timestep_fs: float | None = None,
                 velocity_factor: float = 1.0):
        import ase.io

        self.path, self.format = path, format or type(self).format
        self.timestep_fs, self.velocity_factor = timestep_fs, velocity_factor
        self._read = lambda index: ase.io.iread(path, index=index, format=None if format == "ase" else format)
        self._n: int | None = None

    def _length(self) -> int:
        if self._n is None:
            frames, n = self._read(":"), 0
            while True:
                with reading(self.path, f"as {self.format}", n):
                    if next(frames, None) is None:
                        break
                n += 1
            self._n = n
        return self._n

    def _frames(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        index = f"{start}:{'' if stop is None else stop}"
        for k, atoms in enumerate(self._read(index), start=start):
            v = None
            for key in self.VELOCITY_KEYS:
                if key in atoms.arrays:
                    v = np.asarray(atoms.arrays[key], dtype=float) * self.velocity_factor
                    break
            if v is None and "momenta" in atoms.arrays:
                v = atoms.get_velocities() / units.ASE_TIME_TO_FS
            time = atoms.info.get("time")
            step = atoms.info.get("step")
            if time is None and self.timestep_fs is not None:
                time = (step if step is not None else k) * self.timestep_fs
            yield MDFrame(atoms, v, None if time is None else float(time), step)


class ASEFileSource(ASESource):
    """Any trajectory ASE reads with its own format detection (``--format ase``: .traj, XDATCAR, vasprun.xml)."""

    format = "ase"
    extensions = ASE_NAMES
    priority = 50

    @classmethod
    def detect(cls, probe: Probe) -> str | None:
        return cls.format if probe.plain.endswith(ASE_NAMES) else None


#: the registered format names, in order of detection
FORMATS = tuple(sorted(READERS, key=lambda f: READERS[f].priority))


def open_run(path: str, format: str | None = None, lammps_units: str | None = None, types: list[str] | None = None,
             timestep: float | None = None) -> list[FrameSource]:
    """Sources of one run: a single trajectory, or every bead of an i-PI PIMD run (``prefix.pos_<k>.xyz``)."""
    fmt = format or (detect_format(path) if os.path.exists(path) and not os.path.isdir(path) else None)
    if fmt == "ipi":
        positions, velocities = bead_files(path)
        for p in positions:
            _check_not_empty(p)
        return [IPISource(p, v, timestep) for p, v in zip(positions, velocities or [None] * len(positions))]
    return [open_trajectory(path, fmt, lammps_units, types, timestep)]


def _check_not_empty(path: str) -> None:
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if os.path.isdir(path):
        raise InputError("is a directory, not a trajectory file", path)
    if os.path.getsize(path) == 0:
        raise InputError("file is empty", path)


def open_trajectory(path: str, format: str | None = None, lammps_units: str | None = None,
                    types: list[str] | None = None, timestep: float | None = None) -> FrameSource:
    """Open ``path`` as a frame source; ``format`` overrides detection (extxyz, h5md, lammpsdump, ipi, ase).

    ``lammps_units`` (LAMMPS unit style: real, metal, si, cgs, electron, micro, nano) converts LAMMPS dumps,
    where it is required unless the dump declares it (``ITEM: UNITS``) or the run's log.lammps / write_data
    file lies next to it, and the datasets of H5MD files that carry no ``unit`` attribute (as LAMMPS' ``dump
    h5md`` writes them; default real). ``timestep`` is in that style's time unit for LAMMPS dumps, in fs
    otherwise. A LAMMPS dump's frame 0 is read and checked here.
    """
    _check_not_empty(path)
    fmt = format or detect_format(path)
    reader = READERS.get(fmt)
    if reader is not None:
        with reading(path, f"as {fmt}"):
            return reader.open(path, lammps_units=lammps_units, types=types, timestep=timestep)
    raise InputError(f"unknown trajectory format {fmt!r}; choose from {', '.join(FORMATS)}", path)
