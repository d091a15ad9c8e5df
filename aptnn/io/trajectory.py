"""MD trajectories in: one frame-source interface over extxyz/ASE, H5MD, LAMMPS dumps and i-PI files.

Every source yields :class:`MDFrame` objects in internal units: positions and cell in Å (positions may be
unwrapped), velocities in Å/fs (None when the file has none), time in fs (None when unknown).
"""
from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from ase import Atoms

from aptnn import units
from aptnn.errors import InputError

FORMATS = ("extxyz", "h5md", "lammpsdump", "ipi", "ase")


@dataclass
class MDFrame:
    atoms: Atoms                      # positions Å, cell Å (rows), pbc
    velocities: np.ndarray | None     # (N, 3) Å/fs
    time: float | None                # fs
    step: int | None = None


def detect_format(path: str) -> str:
    """Guess the trajectory format from the extension and, for HDF5, the content."""
    name = os.path.basename(path).lower()
    if name.endswith((".h5", ".h5md", ".hdf5")):
        import h5py

        with h5py.File(path, "r") as f:
            if "particles" in f:
                return "h5md"
            if "dMdt" in f:
                return "stream"
        raise InputError("HDF5 file is neither H5MD (/particles) nor a dM/dt stream (/dMdt)", path)
    if name.endswith((".lammpstrj", ".lammpsdump", ".dump")) or ".dump." in name:
        return "lammpsdump"
    if ".pos_" in name or ".vel_" in name or name.endswith(".pos.xyz") or ".pos." in name:
        return "ipi"
    if name.endswith((".extxyz", ".xyz")):
        return "extxyz"
    return "ase"


class FrameSource:
    """Base class: iterate frames, know the atom count and (when cheap) the frame count."""

    path: str
    format: str = "?"

    def __iter__(self) -> Iterator[MDFrame]:
        return self.iter_range(0, None)

    def iter_range(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        """Frames start … stop−1 (a shard of a distributed run); sources with random access seek to start."""
        return itertools.islice(iter(self), start, stop)

    def __len__(self) -> int:
        raise NotImplementedError


class ASESource(FrameSource):
    """extxyz and any ASE-readable trajectory. Velocities from a ``velocities``/``vel``/``velo`` array (in
    ``velocity_unit``, default Å/fs) or from ASE momenta (converted from ASE units); time from ``info['time']``
    (fs) or ``step`` × ``timestep``."""

    VELOCITY_KEYS = ("velocities", "velocity", "vel", "velo")

    def __init__(self, path: str, format: str | None = None, timestep_fs: float | None = None,
                 velocity_factor: float = 1.0):
        import ase.io

        self.path, self.format = path, format or "extxyz"
        self.timestep_fs, self.velocity_factor = timestep_fs, velocity_factor
        self._read = lambda index: ase.io.iread(path, index=index, format=None if format == "ase" else format)
        self._n: int | None = None

    def __len__(self) -> int:
        if self._n is None:
            self._n = sum(1 for _ in self._read(":"))
        return self._n

    def iter_range(self, start: int, stop: int | None) -> Iterator[MDFrame]:
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


class H5MDSource(FrameSource):
    """H5MD files (LAMMPS ``dump h5md``, MDAnalysis, GROMACS...) read directly with h5py.

    Uses ``/particles/<group>/{position,velocity,box/edges,species}``, honours ``unit`` attributes (nm, ps, …),
    and maps species (atomic numbers, element names, or LAMMPS types through ``types``) to elements.
    """

    format = "h5md"

    def __init__(self, path: str, group: str | None = None, types: list[str] | None = None,
                 timestep_fs: float | None = None):
        import h5py

        self.path, self.types, self.timestep_fs = path, types, timestep_fs
        self.file = h5py.File(path, "r")
        particles = self.file["particles"]
        self.group = group or next(iter(particles))
        self.g = particles[self.group]
        if "position" not in self.g:
            raise InputError(f"H5MD group /particles/{self.group} has no position", path)
        self.symbols = self._symbols()

    def _symbols(self) -> list[str]:
        from ase.data import chemical_symbols

        if "species" not in self.g:
            raise InputError("H5MD file has no species: give --types", self.path)
        sp = self.g["species"]
        values = sp["value"][0] if isinstance(sp, type(self.g)) else sp[()]
        values = np.atleast_1d(values)
        if values.dtype.kind in "SUO":
            return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
        if self.types:
            try:
                return [self.types[int(t) - 1] for t in values]
            except IndexError:
                raise InputError(f"atom type {int(values.max())} but only {len(self.types)} --types given",
                                 self.path) from None
        return [chemical_symbols[int(z)] for z in values]

    def __len__(self) -> int:
        return int(self.g["position"]["value"].shape[0])

    def _unit(self, ds) -> str | None:
        u = ds.attrs.get("unit")
        return u.decode() if isinstance(u, bytes) else u

    def _factor(self, parse, ds) -> float:
        """Conversion factor of dataset ``ds`` from its ``unit`` attribute; a bad unit names file and dataset."""
        try:
            return parse(self._unit(ds))
        except InputError as err:
            raise InputError(f"{ds.name}: {err.problem}", self.path) from None

    def iter_range(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        pos = self.g["position"]
        fpos = self._factor(units.parse_length, pos["value"])
        vel = self.g["velocity"] if "velocity" in self.g else None
        fvel = self._factor(units.parse_velocity, vel["value"]) if vel is not None else 1.0
        box = self.g["box"] if "box" in self.g else None
        times = pos["time"][()] if "time" in pos else None
        ftime = self._factor(units.parse_time, pos["time"]) if "time" in pos else 1.0
        steps = pos["step"][()] if "step" in pos else None
        edges = box["edges"] if box is not None and "edges" in box else None
        pbc = True
        if box is not None and "boundary" in box.attrs:
            pbc = [b.decode() if isinstance(b, bytes) else str(b) for b in box.attrs["boundary"]]
            pbc = [b == "periodic" for b in pbc]
        fbox = self._factor(units.parse_length, edges["value"] if hasattr(edges, "keys") else edges) \
            if edges is not None else 1.0
        for k in range(start, len(self) if stop is None else min(stop, len(self))):
            cell = None
            if edges is not None:
                e = edges["value"][k] if hasattr(edges, "keys") else edges[()]
                cell = (np.diag(e) if np.ndim(e) == 1 else np.asarray(e)) * fbox
            atoms = Atoms(self.symbols, positions=pos["value"][k] * fpos, cell=cell,
                          pbc=pbc if cell is not None else False)
            v = vel["value"][k] * fvel if vel is not None else None
            step = int(np.atleast_1d(steps)[k]) if steps is not None and np.ndim(steps) else None
            if times is not None and np.ndim(times):
                time = float(times[k]) * ftime
            elif self.timestep_fs is not None:
                time = (step if step is not None else k) * self.timestep_fs
            else:
                time = None
            yield MDFrame(atoms, v, time, step)


class LAMMPSDumpSource(FrameSource):
    """LAMMPS text dumps through MDAnalysis (unwrapped coordinates when present, triclinic boxes).

    LAMMPS dumps do not record their unit style: ``lammps_units`` (real, metal, …) converts lengths,
    velocities (vx vy vz) and time (step × ``timestep`` in the run's time unit). Elements come from an
    ``element`` column or from ``types`` (type 1 → types[0], …).
    """

    format = "lammpsdump"

    def __init__(self, path: str, lammps_units: str = "real", types: list[str] | None = None,
                 timestep: float | None = None):
        import MDAnalysis as mda

        if lammps_units not in units.LAMMPS_UNITS:
            raise InputError(f"unknown LAMMPS units {lammps_units!r}; choose from {sorted(units.LAMMPS_UNITS)}",
                             path)
        self.path = path
        self.flen, self.ftime, self.fvel = units.LAMMPS_UNITS[lammps_units]
        self.timestep_fs = None if timestep is None else timestep * self.ftime
        with warnings.catch_warnings():  # masses are not needed (MDAnalysis warns it guesses them)
            warnings.filterwarnings("ignore", message="No mass column")
            self.u = mda.Universe(path, format="LAMMPSDUMP", dt=(self.timestep_fs or 1000.0) / 1000.0)
        self.elements = _dump_elements(path)
        if self.elements is None and not types:
            raise InputError("dump has no element column: map atom types with --types (e.g. --types O H)", path)
        self.types = types

    def __len__(self) -> int:
        return len(self.u.trajectory)

    def _symbols(self) -> list[str]:
        if self.elements is not None:
            return self.elements
        types = self.u.atoms.types.astype(int)
        if types.max() > len(self.types):
            raise InputError(f"atom type {types.max()} but only {len(self.types)} --types given", self.path)
        return [self.types[t - 1] for t in types]

    def iter_range(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        from ase.geometry import cellpar_to_cell

        symbols = self._symbols()
        for ts in self.u.trajectory[start:stop]:  # MDAnalysis seeks through its frame offsets
            # MDAnalysis applies no unit conversion to dumps: lengths are in the run's length unit
            cell = cellpar_to_cell(ts.dimensions) * self.flen
            atoms = Atoms(symbols, positions=ts.positions.astype(float) * self.flen, cell=cell, pbc=True)
            v = ts.velocities.astype(float) * self.fvel if ts.has_velocities else None
            step = int(ts.data.get("step", ts.frame)) if hasattr(ts, "data") else ts.frame
            time = step * self.timestep_fs if self.timestep_fs is not None else None
            yield MDFrame(atoms, v, time, step)


def _dump_elements(path: str) -> list[str] | None:
    """Elements of the first frame ordered by atom id (as MDAnalysis orders atoms), or None without a column."""
    with open(path) as fh:
        natoms = None
        for line in fh:
            if line.startswith("ITEM: NUMBER OF ATOMS"):
                natoms = int(next(fh))
            elif line.startswith("ITEM: ATOMS"):
                columns = line.split()[2:]
                if "element" not in columns or natoms is None:
                    return None
                i_id, i_el = columns.index("id"), columns.index("element")
                rows = [next(fh).split() for _ in range(natoms)]
                return [r[i_el] for r in sorted(rows, key=lambda r: int(r[i_id]))]
    return None


def open_run(path: str, format: str | None = None, lammps_units: str = "real", types: list[str] | None = None,
             timestep: float | None = None) -> list[FrameSource]:
    """Sources of one run: a single trajectory, or every bead of an i-PI PIMD run (``prefix.pos_<k>.xyz``)."""
    fmt = format or (detect_format(path) if os.path.exists(path) else None)
    if fmt == "ipi":
        from aptnn.io.ipi_files import IPISource, bead_files

        positions, velocities = bead_files(path)
        return [IPISource(p, v, timestep) for p, v in zip(positions, velocities or [None] * len(positions))]
    return [open_trajectory(path, format, lammps_units, types, timestep)]


def open_trajectory(path: str, format: str | None = None, lammps_units: str = "real",
                    types: list[str] | None = None, timestep: float | None = None) -> FrameSource:
    """Open ``path`` as a frame source; ``format`` overrides detection (extxyz, h5md, lammpsdump, ipi, ase)."""
    if not os.path.exists(path):
        raise InputError("no such file", path)
    fmt = format or detect_format(path)
    if fmt == "h5md":
        return H5MDSource(path, types=types, timestep_fs=timestep)
    if fmt == "lammpsdump":
        return LAMMPSDumpSource(path, lammps_units, types, timestep)
    if fmt == "ipi":
        from aptnn.io.ipi_files import IPISource

        return IPISource(path, timestep_fs=timestep)
    if fmt in ("extxyz", "ase"):
        return ASESource(path, None if fmt == "ase" else "extxyz", timestep_fs=timestep)
    raise InputError(f"unknown trajectory format {fmt!r}; choose from {', '.join(FORMATS)}", path)
