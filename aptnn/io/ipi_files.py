"""i-PI trajectory files: per-bead ``prefix.pos_<k>.xyz`` (and ``prefix.vel_<k>.xyz``), streamed frame by frame.

i-PI's own reader (``ipi.utils.io.iter_file_name``) parses the units written in each comment line
(``positions{angstrom}``, ``velocities{atomic_unit}``, ``cell{…}``) and returns atomic units, which are
converted here: bohr → Å, bohr/a.u. time → Å/fs; the cell matrix h has lattice vectors as columns. The
reader's native ``units`` are those the first comment lines declare (i-PI's default: atomic units); times are
``step`` × the i-PI time step given in fs.
"""
from __future__ import annotations

import glob
import itertools
import os
import re
from typing import Iterator

import numpy as np
from ase import Atoms

from aptnn import units
from aptnn.errors import InputError
from aptnn.io.checks import reading
from aptnn.io.source import FrameSource, MDFrame, Probe

_BEAD = re.compile(r"^(?P<prefix>.*)\.(?P<kind>pos|vel|xc|vc)_(?P<bead>\d+)\.(?P<ext>\w+)$")
_STEP = re.compile(r"Step:\s*(\d+)")
_UNIT = re.compile(r"\b(?:positions|velocities|x_centroid|v_centroid)\{(\w+)\}")
VEL_FACTOR = units.BOHR_TO_ANGSTROM / units.AU_TIME_TO_FS


def bead_files(path: str) -> tuple[list[str], list[str] | None]:
    """All bead position files of the run that ``path`` (any pos or vel bead file) belongs to, sorted by
    bead index, and the matching velocity files (None when absent)."""
    m = _BEAD.match(path)
    if not m:
        return [path], None
    prefix, ext = m.group("prefix"), m.group("ext")
    pos = sorted(glob.glob(f"{glob.escape(prefix)}.pos_*.{ext}"), key=lambda p: int(_BEAD.match(p).group("bead")))
    if not pos:
        raise InputError("no i-PI position files (prefix.pos_<k>.xyz) next to it", path)
    vel = [p.replace(".pos_", ".vel_") for p in pos]
    for k, p in enumerate(pos):
        if int(_BEAD.match(p).group("bead")) != k:
            raise InputError(f"bead files are not numbered 0…{len(pos) - 1}", p)
    return pos, vel if all(os.path.exists(v) for v in vel) else None


def _declared_unit(path: str) -> str:
    """The unit the first comment line of an i-PI xyz file declares (``positions{angstrom}`` → angstrom),
    i-PI's default ``atomic_unit`` when it names none or cannot be read (reading reports that)."""
    try:
        with open(path, errors="replace") as fh:
            fh.readline(100)
            m = _UNIT.search(fh.readline(2000))
    except OSError:
        return "atomic_unit"
    return m.group(1) if m else "atomic_unit"


class IPISource(FrameSource):
    """One bead (or a classical run) of i-PI xyz output; ``timestep_fs`` is the i-PI time step (fs)."""

    format = "ipi"
    priority = 30

    @classmethod
    def detect(cls, probe: Probe) -> str | None:
        """i-PI output from its name: ``prefix.pos_<k>.xyz``, ``prefix.vel_<k>.xyz``, ``prefix.pos.xyz``."""
        plain = probe.plain
        ipi = ".pos_" in plain or ".vel_" in plain or plain.endswith(".pos.xyz") or ".pos." in plain
        return cls.format if ipi else None

    @classmethod
    def open(cls, path: str, lammps_units: str | None = None, types: list[str] | None = None,
             timestep: float | None = None) -> IPISource:
        """``timestep``: the i-PI time step (fs)."""
        return cls(path, timestep_fs=timestep)

    def __init__(self, path: str, velocity_path: str | None = None, timestep_fs: float | None = None):
        self.path, self.velocity_path, self.timestep_fs = path, velocity_path, timestep_fs
        if velocity_path is None:
            guess = path.replace(".pos_", ".vel_").replace(".pos.", ".vel.")
            self.velocity_path = guess if guess != path and os.path.exists(guess) else None
        length = _declared_unit(path)
        velocity = _declared_unit(self.velocity_path) if self.velocity_path else "atomic_unit"
        self.units = {"length": "bohr" if length == "atomic_unit" else length, "time": "fs",
                      "velocity": "bohr/au" if velocity == "atomic_unit" else velocity}

    def _length(self) -> int:
        with open(self.path) as fh:
            first = fh.readline()
            natoms = int(first)
            return (2 + sum(1 for _ in fh)) // (natoms + 2)

    def _read(self, path: str) -> Iterator[dict]:
        """i-PI's frames of ``path``; its exceptions name the file and the frame index."""
        from ipi.utils.io import iter_file_name

        frames, k = iter_file_name(path), 0
        while True:
            with reading(path, "as i-PI xyz", k):
                frame = next(frames, None)
            if frame is None:
                break
            yield frame
            k += 1
        if k == 0:  # i-PI takes an unreadable atom-count line for the end of the file
            with open(path, "rb") as fh:
                first = fh.readline()[:40]
            raise InputError(f"no i-PI xyz frame: the first line {first!r} is not an atom count", path, 0)

    def _frames(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        return itertools.islice(self._all(), start, stop)

    def _all(self) -> Iterator[MDFrame]:
        vel_iter = self._read(self.velocity_path) if self.velocity_path else None
        for k, frame in enumerate(self._read(self.path)):
            names = [str(n) for n in frame["atoms"].names]
            pos = np.asarray(frame["atoms"].q).reshape(-1, 3) * units.BOHR_TO_ANGSTROM
            cell = np.asarray(frame["cell"].h).T * units.BOHR_TO_ANGSTROM
            pbc = bool(np.abs(cell).sum() > 0)
            with reading(self.path, "as i-PI xyz", k):
                atoms = Atoms(names, positions=pos, cell=cell if pbc else None, pbc=pbc)
            step_match = _STEP.search(frame.get("comment", ""))
            step = int(step_match.group(1)) if step_match else k
            v = None
            if vel_iter is not None:
                vframe = next(vel_iter, None)
                if vframe is None:
                    raise InputError(f"velocity file ends before frame {k} of {self.path}", self.velocity_path, k)
                v = np.asarray(vframe["atoms"].q).reshape(-1, 3) * VEL_FACTOR
                vstep = _STEP.search(vframe.get("comment", ""))
                if vstep and int(vstep.group(1)) != step:
                    raise InputError(f"velocity frame is step {vstep.group(1)}, position frame step {step}",
                                     self.velocity_path, k)
                if len(v) != len(pos):
                    raise InputError(f"{len(v)} velocities for {len(pos)} atoms of {self.path}", self.velocity_path, k)
            time = None if self.timestep_fs is None else step * self.timestep_fs
            yield MDFrame(atoms, v, time, step)
