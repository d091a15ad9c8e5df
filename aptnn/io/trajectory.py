"""MD trajectories in: one frame-source interface over extxyz/ASE, H5MD, LAMMPS dumps and i-PI files.

Every source yields :class:`MDFrame` objects in internal units: positions and cell in Å (positions may be
unwrapped), velocities in Å/fs (None when the file has none), time in fs (None when unknown).

Every frame is checked once, here (:func:`aptnn.io.frames.check_md_frame`): same atom count and elements as
frame 0, finite positions, velocities and cell, enough precision where the reader delivers float32. Any
exception of the underlying library becomes an :class:`InputError` naming the file and the frame.
"""
from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from aptnn import units
from aptnn.errors import InputError
from aptnn.io.frames import check_md_frame, reading

FORMATS = ("extxyz", "h5md", "lammpsdump", "ipi", "ase")
_COORDS = (("x", "y", "z"), ("xs", "ys", "zs"), ("xu", "yu", "zu"), ("xsu", "ysu", "zsu"))


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

        with reading(path, "as HDF5"), h5py.File(path, "r") as f:
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
    """Base class: validated frames, the atom count and (when cheap) the frame count.

    Subclasses implement ``_frames(start, stop)`` (raw frames) and ``_length()``; this class checks every
    frame and turns library exceptions into :class:`InputError` naming the file and the frame index.
    """

    path: str
    format: str = "?"
    #: Å per stored length unit when the reader delivers float32 coordinates (precision check), else None
    float32_length: float | None = None
    _first: np.ndarray | None = None  # atomic numbers of frame 0

    def __iter__(self) -> Iterator[MDFrame]:
        return self.iter_range(0, None)

    def iter_range(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        """Frames start … stop−1 (a shard of a distributed run); sources with random access seek to start."""
        frames = self._frames(start, stop)
        for k in itertools.count(start):
            with reading(self.path, f"as {self.format}", k):
                frame = next(frames, None)
            if frame is None:
                return
            if k == 0:
                self._first = frame.atoms.numbers.copy()
            elif self._first is None:
                with reading(self.path, f"as {self.format}", 0):
                    first = next(self._frames(0, 1), None)
                self._first = None if first is None else first.atoms.numbers.copy()
            self.check(frame, k)
            yield frame

    def __len__(self) -> int:
        with reading(self.path, f"as {self.format}"):
            return self._length()

    def _frames(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        raise NotImplementedError

    def _length(self) -> int:
        raise NotImplementedError

    def check(self, frame: MDFrame, k: int) -> None:
        """Raise :class:`InputError` (file, frame ``k``) if ``frame`` cannot be used."""
        check_md_frame(frame.atoms, frame.velocities, frame.time, self._first, self.path, k, self.float32_length)


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


class H5MDSource(FrameSource):
    """H5MD files (LAMMPS ``dump h5md``, MDAnalysis, GROMACS...) read directly with h5py.

    Uses ``/particles/<group>/{position,velocity,box/edges,species}``, honours ``unit`` attributes (nm, ps, …),
    and maps species (atomic numbers, element names, or LAMMPS types through ``types``) to elements.
    H5MD defines no default unit; LAMMPS writes none, in its unit style: datasets without a ``unit`` take those
    of ``lammps_units`` (default real: Å, fs, Å/fs), with a warning, and atoms closer than 0.5 Å in frame 0
    (lengths in nm read as Å) are refused.
    """

    format = "h5md"

    def __init__(self, path: str, group: str | None = None, types: list[str] | None = None,
                 timestep_fs: float | None = None, lammps_units: str = "real"):
        import h5py

        if lammps_units not in units.LAMMPS_UNITS:
            raise InputError(f"unknown LAMMPS units {lammps_units!r}; choose from {sorted(units.LAMMPS_UNITS)}",
                             path)
        self.path, self.types, self.timestep_fs, self.lammps_units = path, types, timestep_fs, lammps_units
        self.file = h5py.File(path, "r")
        particles = self.file["particles"]
        if not len(particles):
            raise InputError("H5MD file has no particle group under /particles", path)
        self.group = group or next(iter(particles))
        self.g = particles[self.group]
        if "position" not in self.g or "value" not in self.g["position"]:
            raise InputError(f"H5MD group /particles/{self.group} has no position/value", path)
        self.symbols = self._symbols()
        self._units()
        if self.float32_length is None and self.g["position"]["value"].dtype == np.float32:
            self.float32_length = self.fpos

    def _symbols(self, k: int = 0) -> list[str]:
        """Elements of frame ``k`` (time-dependent species) or of all frames (fixed species)."""
        if "species" not in self.g:
            raise InputError("H5MD file has no species: give --types", self.path)
        sp = self.g["species"]
        values = np.atleast_1d(sp["value"][k] if hasattr(sp, "keys") else sp[()])
        if values.dtype.kind in "SUO":
            return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
        names = [None] + list(self.types) if self.types else chemical_symbols
        if len(values) and (values.min() < 1 or values.max() >= len(names)):
            raise InputError(f"species {int(values.max())} but only {len(self.types)} --types given" if self.types
                             else f"species {int(values.max())} is not an atomic number: give --types", self.path,
                             k if k else None)
        return [names[int(t)] for t in values]

    def _length(self) -> int:
        return int(self.g["position"]["value"].shape[0])

    def _factor(self, parse, ds, default: float, missing: list[str]) -> float:
        """Conversion factor of dataset ``ds`` from its ``unit`` attribute; a bad unit names file and dataset."""
        u = ds.attrs.get("unit")
        u = u.decode() if isinstance(u, bytes) else u
        if not u:
            missing.append(ds.name)
            return default
        try:
            return parse(u)
        except InputError as err:
            raise InputError(f"{ds.name}: {err.problem}", self.path) from None

    def _units(self) -> None:
        """Factors to Å, Å/fs, fs of positions, box, velocities and times; warn about datasets without units."""
        flen, ftime, fvel = units.LAMMPS_UNITS[self.lammps_units]
        pos, missing = self.g["position"], []
        self.fpos = self._factor(units.parse_length, pos["value"], flen, missing)
        self.ftime = self._factor(units.parse_time, pos["time"], ftime, missing) if "time" in pos else ftime
        vel = self.g["velocity"] if "velocity" in self.g else None
        self.fvel = self._factor(units.parse_velocity, vel["value"], fvel, missing) if vel is not None else 1.0
        edges = self.g["box"]["edges"] if "box" in self.g and "edges" in self.g["box"] else None
        self.edges = edges
        self.fbox = 1.0 if edges is None else self._factor(
            units.parse_length, edges["value"] if hasattr(edges, "keys") else edges, self.fpos, missing)
        if pos["value"].name not in missing:
            return
        warnings.warn(f"{self.path}: no unit attribute on {', '.join(missing)}: read in LAMMPS '{self.lammps_units}' "
                      f"units ({flen:g} Å, {ftime:g} fs) as 'dump h5md' writes them; set --units or add unit "
                      "attributes (e.g. 'nm') if another program wrote the file", stacklevel=3)
        some = np.asarray(pos["value"][0][:256], dtype=float) * self.fpos if len(self) else np.zeros((0, 3))
        d = np.linalg.norm(some[:, None] - some[None], axis=-1) + 1e9 * np.eye(len(some))
        if len(some) > 1 and d.min() < 0.5:  # water read from nm as Å: O-H 0.096 Å
            raise InputError(f"atoms {d.min():.3g} Å apart in frame 0 if lengths are in LAMMPS '{self.lammps_units}' "
                             f"units ({flen:g} Å) as assumed: add unit attributes to the file (e.g. unit='nm' on "
                             "position/value) or set --units", self.path)

    def _cell(self, k: int) -> np.ndarray | None:
        if self.edges is None:
            return None
        e = self.edges["value"][k] if hasattr(self.edges, "keys") else self.edges[()]
        return (np.diag(e) if np.ndim(e) == 1 else np.asarray(e, dtype=float)) * self.fbox

    def _frames(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        pos = self.g["position"]
        vel = self.g["velocity"] if "velocity" in self.g else None
        times = pos["time"][()] if "time" in pos else None
        steps = pos["step"][()] if "step" in pos else None
        box = self.g["box"] if "box" in self.g else None
        pbc = True
        if box is not None and "boundary" in box.attrs:
            pbc = [b.decode() if isinstance(b, bytes) else str(b) for b in box.attrs["boundary"]]
            pbc = [b == "periodic" for b in pbc]
        species = self.g["species"]
        per_frame = hasattr(species, "keys") and species["value"].shape[0] > 1  # time-dependent species
        for k in range(start, len(self) if stop is None else min(stop, len(self))):
            cell = self._cell(k)
            symbols = self._symbols(k) if per_frame and k < species["value"].shape[0] else self.symbols
            atoms = Atoms(symbols, positions=pos["value"][k] * self.fpos, cell=cell,
                          pbc=pbc if cell is not None else False)
            v = vel["value"][k] * self.fvel if vel is not None else None
            step = int(np.atleast_1d(steps)[k]) if steps is not None and np.ndim(steps) else None
            if times is not None and np.ndim(times):
                time = float(times[k]) * self.ftime
            elif self.timestep_fs is not None:
                time = (step if step is not None else k) * self.timestep_fs
            else:
                time = None
            yield MDFrame(atoms, v, time, step)


class LAMMPSDumpSource(FrameSource):
    """LAMMPS text dumps through MDAnalysis (x y z before xs, xu, xsu columns; triclinic boxes).

    LAMMPS dumps do not record their unit style: ``lammps_units`` (real, metal, …) converts lengths,
    velocities (vx vy vz) and time (step × ``timestep`` in the run's time unit). Elements come from an
    ``element`` column or from ``types`` (type 1 → types[0], …); a type column is followed frame by frame.
    MDAnalysis reads coordinates as float32 (see :data:`FLOAT32_STEP_LIMIT_A`).
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
        self.float32_length = self.flen
        self.timestep_fs = None if timestep is None else timestep * self.ftime
        columns, self.elements = _dump_header(path)
        if self.elements is None and not types:
            raise InputError("dump has no element column: map atom types with --types (e.g. --types O H)", path)
        self.types = types
        self.has_type = "type" in columns
        with warnings.catch_warnings(), reading(path, "as a LAMMPS dump"):
            warnings.filterwarnings("ignore", message="No mass column")  # masses are not needed
            self.u = mda.Universe(path, format="LAMMPSDUMP", dt=(self.timestep_fs or 1000.0) / 1000.0,
                                  additional_columns=["type"] if self.has_type else None)
        self.symbol_of_type: dict[int, str] = {}

    def _length(self) -> int:
        return len(self.u.trajectory)

    def _symbols(self, ts) -> list[str]:
        """Elements of the atoms of timestep ``ts`` (ordered by id): from its type column when present."""
        if not self.has_type:
            return self.elements
        if not self.symbol_of_type:
            types = self.u.atoms.types.astype(int)
            if self.elements is not None:
                self.symbol_of_type = dict(zip(types.tolist(), self.elements))
            elif types.min() < 1 or types.max() > len(self.types):
                raise InputError(f"atom type {types.max() if types.min() >= 1 else types.min()} but "
                                 f"{len(self.types)} --types given (types count from 1)", self.path)
            else:
                self.symbol_of_type = {t: self.types[t - 1] for t in range(1, len(self.types) + 1)}
        types = ts.data["type"].astype(int)
        unknown = [t for t in np.unique(types).tolist() if t not in self.symbol_of_type]
        if unknown:
            raise InputError(f"atom type {unknown[0]} has no element (not in frame 0's element column, "
                             f"nor among {len(self.types or [])} --types)", self.path, ts.frame)
        return [self.symbol_of_type[t] for t in types.tolist()]

    def _frames(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        from ase.geometry import cellpar_to_cell

        for ts in self.u.trajectory[start:stop]:  # MDAnalysis seeks through its frame offsets
            # MDAnalysis applies no unit conversion to dumps: lengths are in the run's length unit
            cell = cellpar_to_cell(ts.dimensions) * self.flen
            atoms = Atoms(self._symbols(ts), positions=ts.positions.astype(float) * self.flen, cell=cell, pbc=True)
            v = ts.velocities.astype(float) * self.fvel if ts.has_velocities else None
            step = int(ts.data.get("step", ts.frame)) if hasattr(ts, "data") else ts.frame
            time = step * self.timestep_fs if self.timestep_fs is not None else None
            yield MDFrame(atoms, v, time, step)


def _dump_header(path: str) -> tuple[list[str], list[str] | None]:
    """Check frame 0 of a LAMMPS text dump; return its ATOMS columns (without a type column of labels) and its
    elements ordered by atom id (as MDAnalysis orders atoms), or None without an element column."""
    with open(path) as fh:
        head = [fh.readline() for _ in range(9)]
        if not head[0].startswith("ITEM: TIMESTEP"):
            raise InputError(f"not a LAMMPS text dump: first line is {head[0].strip()[:40]!r}, not "
                             "'ITEM: TIMESTEP'", path)
        if not head[8].startswith("ITEM: ATOMS") or not head[2].startswith("ITEM: NUMBER OF ATOMS"):
            raise InputError("not a LAMMPS text dump: no 'ITEM: NUMBER OF ATOMS' / 'ITEM: ATOMS' header "
                             "(truncated?)", path, 0)
        try:
            natoms = int(head[3])
        except ValueError:
            raise InputError(f"atom count {head[3].strip()!r} is not a number", path, 0) from None
        if natoms <= 0:
            raise InputError("frame has no atoms", path, 0)
        columns = head[8].split()[2:]
        if "id" not in columns:
            raise InputError(f"no 'id' column (ITEM: ATOMS {' '.join(columns)}): dump with 'id' so that atoms "
                             "keep their order", path, 0)
        if not any(all(c in columns for c in xyz) for xyz in _COORDS):
            raise InputError(f"no coordinate columns (x y z, xu yu zu, xs ys zs or xsu ysu zsu) in "
                             f"'ITEM: ATOMS {' '.join(columns)}'", path, 0)
        rows = [fh.readline().split() for _ in range(natoms)]
        if any(len(r) != len(columns) for r in rows):
            raise InputError(f"not {natoms} rows of {len(columns)} columns (truncated?)", path, 0)
        elements = None
        if "element" in columns:
            i_id, i_el = columns.index("id"), columns.index("element")
            elements = [r[i_el] for r in sorted(rows, key=lambda r: int(r[i_id]))]
        if "type" in columns and not all(r[columns.index("type")].isdigit() for r in rows):
            columns = [c for c in columns if c != "type"]  # type labels: elements from the element column only
        if elements is None and "type" not in columns:
            raise InputError("no numeric 'type' nor 'element' column: the atoms' elements are unknown", path, 0)
        return columns, elements


def open_run(path: str, format: str | None = None, lammps_units: str = "real", types: list[str] | None = None,
             timestep: float | None = None) -> list[FrameSource]:
    """Sources of one run: a single trajectory, or every bead of an i-PI PIMD run (``prefix.pos_<k>.xyz``)."""
    fmt = format or (detect_format(path) if os.path.exists(path) else None)
    if fmt == "ipi":
        from aptnn.io.ipi_files import IPISource, bead_files

        positions, velocities = bead_files(path)
        for p in positions:
            _check_not_empty(p)
        return [IPISource(p, v, timestep) for p, v in zip(positions, velocities or [None] * len(positions))]
    return [open_trajectory(path, format, lammps_units, types, timestep)]


def _check_not_empty(path: str) -> None:
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if os.path.isdir(path):
        raise InputError("is a directory, not a trajectory file", path)
    if os.path.getsize(path) == 0:
        raise InputError("file is empty", path)


def open_trajectory(path: str, format: str | None = None, lammps_units: str = "real",
                    types: list[str] | None = None, timestep: float | None = None) -> FrameSource:
    """Open ``path`` as a frame source; ``format`` overrides detection (extxyz, h5md, lammpsdump, ipi, ase).

    ``lammps_units`` (LAMMPS unit style) converts LAMMPS dumps and the datasets of H5MD files that carry no
    ``unit`` attribute (as LAMMPS' ``dump h5md`` writes them); ``timestep`` is in that style's time unit for
    LAMMPS dumps, in fs otherwise.
    """
    _check_not_empty(path)
    fmt = format or detect_format(path)
    with reading(path, f"as {fmt}"):
        if fmt == "h5md":
            return H5MDSource(path, types=types, timestep_fs=timestep, lammps_units=lammps_units)
        if fmt == "lammpsdump":
            return LAMMPSDumpSource(path, lammps_units, types, timestep)
        if fmt == "ipi":
            from aptnn.io.ipi_files import IPISource

            return IPISource(path, timestep_fs=timestep)
        if fmt in ("extxyz", "ase"):
            return ASESource(path, None if fmt == "ase" else "extxyz", timestep_fs=timestep)
    raise InputError(f"unknown trajectory format {fmt!r}; choose from {', '.join(FORMATS)}", path)
