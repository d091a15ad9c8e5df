"""H5MD files (LAMMPS ``dump h5md``, MDAnalysis, GROMACS...) read directly with h5py, frame by frame.

Frames in Å, Å/fs and fs (:class:`aptnn.io.source.MDFrame`); datasets without a ``unit`` attribute are in
the LAMMPS unit style of the run (``--units``, or the run's log.lammps next to the file, else real). The native
units (``units``) are derived when the file is opened: the ``unit`` attributes of position/value,
position/time and velocity/value, else those of that style.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from aptnn import units
from aptnn.errors import InputError
from aptnn.io.checks import reading
from aptnn.io.lammps_units import check_style, native_units, resolve_style
from aptnn.io.source import FrameSource, MDFrame, Probe

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class H5MDSource(FrameSource):
    """H5MD files (LAMMPS ``dump h5md``, MDAnalysis, GROMACS...) read directly with h5py.

    Uses ``/particles/<group>/{position,velocity,box/edges,species}``, honours ``unit`` attributes (nm, ps, …),
    and maps species (atomic numbers, element names, or LAMMPS types through ``types``) to elements.
    H5MD defines no default unit; LAMMPS writes none, in its unit style: datasets without a ``unit`` take those
    of ``lammps_units`` (None: the style of the run's log/data file next to the file, else real: Å, fs, Å/fs),
    with a warning, and atoms closer than 0.5 Å in frame 0 (lengths in nm read as Å) are refused.
    """

    format = "h5md"
    extensions = (".h5", ".h5md", ".hdf5")
    priority = 10

    @classmethod
    def detect(cls, probe: Probe) -> str | None:
        """HDF5 (magic bytes or name): ``h5md`` with /particles, ``stream`` for a dM/dt stream (/dMdt), else an
        :class:`InputError`."""
        if not (probe.raw.startswith(HDF5_MAGIC) or probe.name.endswith(cls.extensions)):
            return None
        import h5py

        with reading(probe.path, "as HDF5"), h5py.File(probe.path, "r") as f:
            if "particles" in f:
                return "h5md"
            if "dMdt" in f:
                return "stream"
        raise InputError("HDF5 file is neither H5MD (/particles) nor a dM/dt stream (/dMdt)", probe.path)

    @classmethod
    def open(cls, path: str, lammps_units: str | None = None, types: list[str] | None = None,
             timestep: float | None = None) -> H5MDSource:
        """``timestep`` (fs) gives times when the file has none; ``lammps_units`` the units of datasets without
        a ``unit`` attribute."""
        return cls(path, types=types, timestep_fs=timestep, lammps_units=lammps_units)

    def __init__(self, path: str, group: str | None = None, types: list[str] | None = None,
                 timestep_fs: float | None = None, lammps_units: str | None = None):
        import h5py

        if lammps_units is not None:
            check_style(lammps_units, path)
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

    def _factor(self, parse, ds, default: float, missing: list[str], kind: str | None = None) -> float:
        """Conversion factor of dataset ``ds`` from its ``unit`` attribute (recorded in ``self.units[kind]``);
        a bad unit names file and dataset."""
        u = ds.attrs.get("unit")
        u = u.decode() if isinstance(u, bytes) else u
        if not u:
            missing.append(ds.name)
            return default
        if kind:
            self.units[kind] = str(u)
        try:
            return parse(u)
        except InputError as err:
            raise InputError(f"{ds.name}: {err.problem}", self.path) from None

    def _units(self) -> None:
        """Factors to Å, Å/fs, fs of positions, box, velocities and times; warn about datasets without units."""
        if self.lammps_units is None and "unit" not in self.g["position"]["value"].attrs:
            self.lammps_units = resolve_style(self.path, None, required=False)
        self.lammps_units = self.lammps_units or "real"
        flen, ftime, fvel = units.LAMMPS_UNITS[self.lammps_units]
        self.units = native_units(self.lammps_units)
        pos, missing = self.g["position"], []
        self.fpos = self._factor(units.parse_length, pos["value"], flen, missing, "length")
        self.ftime = self._factor(units.parse_time, pos["time"], ftime, missing, "time") if "time" in pos else ftime
        vel = self.g["velocity"] if "velocity" in self.g else None
        self.fvel = (self._factor(units.parse_velocity, vel["value"], fvel, missing, "velocity") if vel is not None
                     else 1.0)
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
