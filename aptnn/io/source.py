"""The frame-source interface shared by every MD trajectory reader: :class:`MDFrame` and :class:`FrameSource`.

Frames are in internal units: positions and cell in Å (positions may be unwrapped), velocities in Å/fs (None
when the file has none), time in fs (None when unknown), ``step`` the MD step number when the file records it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from ase import Atoms

from aptnn.io.frames import check_md_frame, reading


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
        check_md_frame(frame.atoms, frame.velocities, frame.time, self._first, self.path, k, self.float32_length,
                       frame.resolution)
