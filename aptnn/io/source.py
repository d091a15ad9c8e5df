"""The reader contract shared by every MD trajectory format: :class:`MDFrame`, :class:`FrameSource` and the
format registry :data:`READERS` (the base module of the readers, as MDAnalysis' ``coordinates/base.py``).

Frames are in internal units: positions and cell in Å (positions may be unwrapped), velocities in Å/fs (None
when the file has none), time in fs (None when unknown), ``step`` the MD step number when the file records it.

A reader is a :class:`FrameSource` subclass that declares, as class attributes:

* ``format``: its name (``--format``); defining it registers the class in :data:`READERS`;
* ``extensions``: the name endings (lower case, compression suffix stripped) that detection accepts, and
  ``priority`` (lower is tried first); :meth:`FrameSource.detect` may look at the content too;
* ``units``: the native units of the file (``length``, ``time``, ``velocity``: names as in :mod:`aptnn.units`)
  that its frames are converted from; readers whose files say or imply their units (LAMMPS unit styles, H5MD
  ``unit`` attributes, i-PI comment lines) set ``self.units`` when opened;

and implements :meth:`FrameSource.open` (one signature for every format), ``_frames(start, stop)`` and
``_length()``. This module imports no format module: :mod:`aptnn.io.trajectory` imports them all.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar, Iterator

import numpy as np
from ase import Atoms

from aptnn.io.checks import check_md_frame, reading

#: format name → reader class, in registration order (filled when the format modules are imported)
READERS: dict[str, type[FrameSource]] = {}
#: the internal units every frame is delivered in, and the native units of a file already in them
NATIVE_UNITS = {"length": "angstrom", "time": "fs", "velocity": "angstrom/fs"}


@dataclass(frozen=True)
class Probe:
    """What format detection looks at: the path, its lower-case base name (``name``; ``plain`` without a
    .gz/.bz2/.xz suffix), its first bytes as stored (``raw``) and decompressed (``head``)."""

    path: str
    name: str
    plain: str
    raw: bytes
    head: bytes


@dataclass
class MDFrame:
    atoms: Atoms                      # positions Å, cell Å (rows), pbc
    velocities: np.ndarray | None     # (N, 3) Å/fs
    time: float | None                # fs
    step: int | None = None           # MD step number (LAMMPS ITEM: TIMESTEP, i-PI Step:, H5MD step)
    #: Å: coarsest step of the coordinates as written (text readers: the digits of the largest coordinate)
    resolution: float | None = None


class FrameSource:
    """Base class: validated frames, the atom count and (when cheap) the frame count.

    Subclasses declare ``format``, ``extensions``, ``priority`` and ``units`` (see the module docstring) and
    implement :meth:`open`, ``_frames(start, stop)`` (raw frames) and ``_length()``; this class checks every
    frame and turns library exceptions into :class:`InputError` naming the file and the frame index.
    """

    path: str
    format: str = "?"
    #: lower-case name endings (compression suffix stripped) that :meth:`detect` accepts
    extensions: ClassVar[tuple[str, ...]] = ()
    #: detection order: lower is asked first
    priority: ClassVar[int] = 50
    #: native units of the file (class default; an instance may set its own when the file declares them)
    units: dict[str, str] = NATIVE_UNITS
    #: Å per stored length unit when the reader delivers float32 coordinates (precision check), else None
    float32_length: float | None = None
    _first: np.ndarray | None = None  # atomic numbers of frame 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "format" in cls.__dict__:
            READERS[cls.format] = cls

    @classmethod
    def detect(cls, probe: Probe) -> str | None:
        """The format of the probed file if this reader recognises it (``cls.format``, or the name of a
        non-trajectory kind it knows), else None; by default from ``extensions``."""
        return cls.format if cls.extensions and probe.plain.endswith(cls.extensions) else None

    @classmethod
    def open(cls, path: str, lammps_units: str | None = None, types: list[str] | None = None,
             timestep: float | None = None) -> FrameSource:
        """The reader of ``path``: the options of :func:`aptnn.io.trajectory.open_trajectory` (``timestep`` in
        fs, or in the LAMMPS style's time unit for LAMMPS dumps); each format uses those that apply to it."""
        raise NotImplementedError

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
        check_md_frame(frame.atoms, frame.velocities, frame.time, self._first, self.path, k, self.float32_length,
                       frame.resolution)
