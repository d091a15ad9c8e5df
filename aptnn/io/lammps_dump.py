"""LAMMPS text dumps (``dump custom``/``dump atom``), plain or compressed, read in float64 frame by frame.

Compression (gzip, bzip2, xz) is recognised from the file's first bytes, whatever its name. A frame is the
``ITEM:`` blocks LAMMPS writes: optional ``UNITS`` (``dump_modify units yes``, first frame) and ``TIME``
(``dump_modify time yes``), then ``TIMESTEP``, ``NUMBER OF ATOMS``, ``BOX BOUNDS`` (orthogonal, triclinic
``xy xz yz`` or general ``abc origin``) and ``ATOMS`` with its columns. Atoms are ordered by ``id``;
coordinates come from ``x y z``, else ``xu yu zu``, ``xs ys zs`` or ``xsu ysu zsu`` (scaled: fractions of
the box); velocities from ``vx vy vz``.

Units: a dump is in its run's LAMMPS unit style (:mod:`aptnn.io.lammps_units`): positions and box in its
length unit, velocities in its velocity unit, ``timestep`` in its time unit; frames are converted to Å,
Å/fs and fs. Time: ``step`` × ``timestep``, else the ``TIME`` item. The reader's native ``units`` are those
of the style, found when the dump is opened.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
from typing import IO, Iterator

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from aptnn import units
from aptnn.errors import InputError
from aptnn.io.lammps_units import native_units, resolve_style
from aptnn.io.source import FrameSource, MDFrame, Probe

#: magic bytes → (name, opener) of the compressions read
COMPRESSIONS = ((b"\x1f\x8b", "gzip", gzip.open), (b"BZh", "bzip2", bz2.open), (b"\xfd7zXZ\x00", "xz", lzma.open))
#: coordinate columns in order of preference (unscaled first: they keep the written digits)
COORDS = (("x", "y", "z"), ("xu", "yu", "zu"), ("xs", "ys", "zs"), ("xsu", "ysu", "zsu"))
_HEADER_ITEMS = ("UNITS", "TIME", "TIMESTEP", "NUMBER OF ATOMS")


def compression(path: str) -> tuple[str | None, object]:
    """(name, opener) of the compression of ``path`` from its magic bytes; (None, open) for a plain file."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, name, opener in COMPRESSIONS:
        if head.startswith(magic):
            return name, opener
    return None, open


def head_bytes(path: str, n: int = 512) -> bytes:
    """The first ``n`` bytes of ``path``, decompressed (empty if a compressed file is corrupt)."""
    name, opener = compression(path)
    try:
        with opener(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError, lzma.LZMAError):
        return b""


def open_text(path: str) -> IO[str]:
    """``path`` as text, decompressed; binary data is refused at once (an :class:`InputError` naming it)."""
    name, opener = compression(path)
    what = f"{name}-compressed " if name else ""
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4096)
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise InputError(f"cannot decompress this {what}file: {err}", path) from None
    try:
        if b"\x00" in head:
            raise UnicodeDecodeError("ascii", head, head.index(b"\x00"), head.index(b"\x00") + 1, "NUL byte")
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not merely a character cut at the end of the sample
            raise InputError(f"binary data in this {what}file, not a LAMMPS text dump (byte {err.start})",
                             path) from None
    return opener(path, "rt", encoding="utf-8", errors="replace")


class _Frame:
    """One frame as written: header items, box lines and the ATOMS table (strings, rows as in the file)."""

    def __init__(self, items: dict[str, str], box: tuple[list[str], list[str]], columns: list[str],
                 table: np.ndarray):
        self.items, self.box, self.columns, self.table = items, box, columns, table


def read_frame(fh: IO[str], path: str, k: int, parse: bool = True) -> _Frame | None:
    """Frame ``k`` from the current position of ``fh`` (None at the end of the file); ``parse=False`` skips
    its rows (seeking to a later frame). Raises :class:`InputError` naming the file, the frame and the line."""
    line, items, box = fh.readline(), {}, None
    if not line:
        return None
    while True:
        if not line.startswith("ITEM:"):
            raise InputError(f"expected an 'ITEM:' line, found {line.strip()[:60]!r} (wrong atom count or a cut "
                             "frame?)", path, k)
        item = line[5:].strip()
        if item.startswith("ATOMS"):
            break
        if item.startswith("BOX BOUNDS"):
            box = (item.split()[2:], [fh.readline() for _ in range(3)])
        elif item in _HEADER_ITEMS:
            items[item] = fh.readline().strip()
        else:
            raise InputError(f"unexpected 'ITEM: {item[:40]}': not a per-atom dump (dump custom or atom)", path, k)
        line = fh.readline()
        if not line:
            raise InputError("the file ends inside a frame header (truncated?)", path, k)
    missing = [i for i in ("TIMESTEP", "NUMBER OF ATOMS") if i not in items] + (["BOX BOUNDS"] if box is None else [])
    if missing:
        raise InputError(f"frame header lacks ITEM: {', '.join(missing)}", path, k)
    try:
        n = int(items["NUMBER OF ATOMS"])
        int(items["TIMESTEP"])
    except ValueError:
        raise InputError(f"timestep {items['TIMESTEP']!r} or atom count {items['NUMBER OF ATOMS']!r} is not a "
                         "whole number", path, k) from None
    if n < 0:
        raise InputError(f"atom count {n} is negative", path, k)
    columns = item.split()[1:]
    rows = [fh.readline() for _ in range(n)]
    if n > 0 and not rows[-1]:
        got = sum(1 for r in rows if r)
        raise InputError(f"the file ends after {got} of {n} atom rows (truncated?)", path, k)
    if not parse:
        return _Frame(items, box, columns, np.empty((0, len(columns)), dtype=str))
    tokens = "".join(rows).split()
    if len(tokens) != n * len(columns):
        bad = next(i for i, r in enumerate(rows) if len(r.split()) != len(columns))
        raise InputError(f"atom row {bad + 1} has {len(rows[bad].split())} values for the {len(columns)} columns "
                         f"'{' '.join(columns)}'", path, k)
    return _Frame(items, box, columns, np.array(tokens, dtype=str).reshape(n, len(columns)))


def _numbers(frame: _Frame, names: list[str], path: str, k: int, kind=np.float64) -> np.ndarray:
    """Columns ``names`` as numbers; a value that is not one is named with its column and atom row."""
    idx = [frame.columns.index(c) for c in names]
    try:
        return frame.table[:, idx].astype(kind)
    except ValueError:
        for j, c in zip(idx, names):
            for i, v in enumerate(frame.table[:, j]):
                try:
                    kind(v)
                except ValueError:
                    raise InputError(f"column '{c}' of atom row {i + 1} is {str(v)!r}, not a number", path, k) from None
        raise


def significant_digits(tokens: np.ndarray) -> int | None:
    """Significant digits a text file writes its numbers with: the most among ``tokens`` ('15.6992' → 6,
    '-1.23456e-05' → 6; LAMMPS' default ``%g`` writes 6 and drops trailing zeros: '15.69' → 4), when at least
    half the tokens have that many (a fixed format); None for short exact numbers (a lattice: '1.8075', '0')."""
    digits = [len(str(t).lower().partition("e")[0].lstrip("+-").replace(".", "").lstrip("0")) for t in tokens.flat]
    if not digits:
        return None
    most = max(digits)
    return most if 2 * digits.count(most) >= len(digits) else None


def box_of(flags_lines: tuple[list[str], list[str]], path: str, k: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(cell rows, origin, pbc) of ITEM: BOX BOUNDS, in the dump's length unit."""
    flags, lines = flags_lines
    try:
        values = np.array([[float(v) for v in ln.split()] for ln in lines])
    except ValueError:
        raise InputError(f"box bounds {[ln.strip() for ln in lines]} are not numbers", path, k) from None
    if "abc" in flags:  # general triclinic: a, b, c vectors and the origin as 4th column
        if values.shape != (3, 4):
            raise InputError("'BOX BOUNDS abc origin' needs 3 rows of 4 numbers", path, k)
        cell, origin = values[:, :3], values[:, 3]
    elif "xy" in flags:
        if values.shape != (3, 3):
            raise InputError("triclinic 'BOX BOUNDS xy xz yz' needs 3 rows of 3 numbers", path, k)
        (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo, zhi, yz) = values
        xlo, xhi = xlo_b - min(0.0, xy, xz, xy + xz), xhi_b - max(0.0, xy, xz, xy + xz)
        ylo, yhi = ylo_b - min(0.0, yz), yhi_b - max(0.0, yz)
        cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
        origin = np.array([xlo, ylo, zlo])
    else:
        if values.shape != (3, 2):
            raise InputError("'BOX BOUNDS' needs 3 rows of 'lo hi'", path, k)
        cell, origin = np.diag(values[:, 1] - values[:, 0]), values[:, 0]
    pbc = [f == "pp" for f in flags[-3:]] if len(flags) >= 3 else [True] * 3  # pp, else f/s/m: not periodic
    return cell, origin, pbc


class LAMMPSDumpSource(FrameSource):
    """LAMMPS text dumps, plain or gzip/bzip2/xz-compressed, read in float64 (see the module docstring).

    ``lammps_units``: the run's unit style (real, metal, …); None takes the dump's ``ITEM: UNITS`` or the style
    of the run's log/data file next to it, else is an error. ``timestep`` is in that style's time unit.
    Elements come from an ``element`` column, else from ``types`` (type 1 → types[0], …) through a numeric
    ``type`` column. Frame 0 is read and checked when the source is made.
    """

    format = "lammpsdump"
    extensions = (".lammpstrj", ".lammpsdump", ".dump")
    priority = 20

    @classmethod
    def detect(cls, probe: Probe) -> str | None:
        """A dump from its (decompressed) content, ``ITEM:``, else from its name (``*.dump``, ``dump.*``, …)."""
        plain = probe.plain
        if probe.head.startswith(b"ITEM:") or plain.endswith(cls.extensions) or ".dump." in plain or \
                plain.startswith("dump."):
            return cls.format
        return None

    @classmethod
    def open(cls, path: str, lammps_units: str | None = None, types: list[str] | None = None,
             timestep: float | None = None) -> LAMMPSDumpSource:
        """``timestep`` in the style's time unit."""
        return cls(path, lammps_units, types, timestep)

    def __init__(self, path: str, lammps_units: str | None = None, types: list[str] | None = None,
                 timestep: float | None = None):
        self.path, self.types = path, list(types) if types else None
        for t in self.types or []:
            if t not in atomic_numbers:
                raise InputError(f"--types {' '.join(self.types)}: {t!r} is not an element symbol", path)
        self.compression = compression(path)[0]
        with open_text(path) as fh:
            first = fh.readline()
            if not first.startswith("ITEM:"):
                raise InputError(f"not a LAMMPS text dump: the first line is {first.strip()[:40]!r}, not "
                                 "'ITEM: TIMESTEP'", path)
            fh.seek(0)
            frame = read_frame(fh, path, 0)
        self.columns = frame.columns
        if "id" not in self.columns:
            raise InputError(f"no 'id' column (ITEM: ATOMS {' '.join(self.columns)}): dump with 'id' so that atoms "
                             "keep their order", path, 0)
        self.coords = next((c for c in COORDS if all(x in self.columns for x in c)), None)
        if self.coords is None:
            raise InputError(f"no coordinate columns (x y z, xu yu zu, xs ys zs or xsu ysu zsu) in "
                             f"'ITEM: ATOMS {' '.join(self.columns)}'", path, 0)
        self.scaled = self.coords[0].startswith("xs")
        self.velocities = ("vx", "vy", "vz") if all(v in self.columns for v in ("vx", "vy", "vz")) else None
        self._elements_setup(frame)  # checks in the order a user fixes them: format, columns, elements, units
        self.style = resolve_style(path, lammps_units, frame.items.get("UNITS"))
        self.flen, self.ftime, self.fvel = units.LAMMPS_UNITS[self.style]
        self.units = native_units(self.style)
        self.timestep_fs = None if timestep is None else timestep * self.ftime
        self._n: int | None = None
        self.digits: int | None = -1  # significant digits of the coordinates as written (None: unknown)

    def _elements_setup(self, frame: _Frame) -> None:
        """How atoms get elements: the element column, else numeric types through --types; checked on frame 0."""
        cols, path = self.columns, self.path
        numeric_type = "type" in cols and all(v.lstrip("-").isdigit() for v in frame.table[:, cols.index("type")])
        self.by_element = "element" in cols
        if not self.by_element and not numeric_type:
            labels = " (its values are type labels)" if "type" in cols else ""
            raise InputError(f"no 'element' column and no numeric 'type' column{labels} in 'ITEM: ATOMS "
                             f"{' '.join(cols)}': the atoms' elements are unknown; dump 'element' (dump_modify ID "
                             "element O H …) or 'type' with --types", path, 0)
        if not self.by_element and not self.types:
            raise InputError("dump has no element column: map atom types with --types (e.g. --types O H for "
                             "types 1, 2)", path)
        if self.by_element and numeric_type and self.types:  # both: they must agree
            types = _numbers(frame, ["type"], path, 0, int)[:, 0]
            for t, el in dict(zip(types.tolist(), frame.table[:, cols.index("element")])).items():
                if not 1 <= t <= len(self.types) or self.types[t - 1] != el:
                    given = self.types[t - 1] if 1 <= t <= len(self.types) else "nothing"
                    raise InputError(f"type {t} is {el} in the element column but --types gives it {given}", path, 0)
        self._elements(frame, 0)

    def _elements(self, frame: _Frame, k: int) -> np.ndarray:
        """Atomic numbers of the rows of ``frame`` (file order)."""
        if self.by_element:
            names, inverse = np.unique(frame.table[:, self.columns.index("element")], return_inverse=True)
            bad = [str(s) for s in names if s not in atomic_numbers]
            if bad:
                raise InputError(f"element column holds {bad[0]!r}, not an element symbol", self.path, k)
            return np.array([atomic_numbers[s] for s in names], dtype=int)[inverse.reshape(-1)]
        types = _numbers(frame, ["type"], self.path, k, int)[:, 0]
        if len(types) and (types.min() < 1 or types.max() > len(self.types)):
            t = int(types.min() if types.min() < 1 else types.max())
            raise InputError(f"atom type {t} but {len(self.types)} --types given ({' '.join(self.types)}; types "
                             "count from 1)", self.path, k)
        lookup = np.array([0] + [atomic_numbers[s] for s in self.types])
        return lookup[types]

    def _length(self) -> int:
        """Number of frames: the ``ITEM: TIMESTEP`` lines, counted in decompressed chunks."""
        if self._n is None:
            pattern, count, tail = b"ITEM: TIMESTEP", 0, b""
            with compression(self.path)[1](self.path, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    buffer = tail + chunk
                    count += buffer.count(pattern)
                    tail = buffer[-(len(pattern) - 1):]
            self._n = count
        return self._n

    def _frames(self, start: int, stop: int | None) -> Iterator[MDFrame]:
        previous = None
        with open_text(self.path) as fh:
            for k in range(start):  # sequential: compressed streams cannot seek cheaply
                if read_frame(fh, self.path, k, parse=False) is None:
                    return
            k = start
            while stop is None or k < stop:
                raw = read_frame(fh, self.path, k)
                if raw is None:
                    return
                frame = self._convert(raw, k)
                if previous is not None and frame.step <= previous:
                    raise InputError(f"step {frame.step} follows step {previous}: steps must increase (two runs "
                                     "appended to one dump? a restarted run writes its first step again)",
                                     self.path, k)
                previous = frame.step
                yield frame
                k += 1

    def _convert(self, raw: _Frame, k: int) -> MDFrame:
        """Frame ``k`` in Å, Å/fs and fs, atoms ordered by id."""
        path = self.path
        if raw.columns != self.columns:
            raise InputError(f"columns 'ITEM: ATOMS {' '.join(raw.columns)}' differ from frame 0's "
                             f"'{' '.join(self.columns)}'", path, k)
        if "UNITS" in raw.items and raw.items["UNITS"] != self.style:
            raise InputError(f"ITEM: UNITS {raw.items['UNITS']}, but {self.style} before", path, k)
        ids = _numbers(raw, ["id"], path, k, np.int64)[:, 0]
        order = np.argsort(ids, kind="stable")
        if len(ids) > 1 and np.any(np.diff(ids[order]) == 0):
            raise InputError(f"atom id {int(ids[order][np.flatnonzero(np.diff(ids[order]) == 0)[0]])} appears twice",
                             path, k)
        cell, origin, pbc = box_of(raw.box, path, k)
        xyz = _numbers(raw, list(self.coords), path, k)[order]
        resolution = None
        largest = float(np.abs(xyz).max()) if len(xyz) else 0.0
        if self.digits == -1:  # digits of the file's numbers, from the first 4096 rows of the first frame read
            self.digits = significant_digits(raw.table[:4096, [self.columns.index(c) for c in self.coords]])
        if largest > 0 and self.digits:  # the step of the last written digit at the largest coordinate
            resolution = 10.0 ** (np.floor(np.log10(largest)) - self.digits + 1) * self.flen
            if self.scaled:
                resolution *= float(np.abs(cell).max())
        if self.scaled:
            xyz = origin + xyz @ cell
        atoms = Atoms(numbers=self._elements(raw, k)[order], positions=xyz * self.flen, cell=cell * self.flen,
                      pbc=pbc)
        v = _numbers(raw, list(self.velocities), path, k)[order] * self.fvel if self.velocities else None
        step = int(raw.items["TIMESTEP"])
        if self.timestep_fs is not None:
            time = step * self.timestep_fs
        elif "TIME" in raw.items:
            try:
                time = float(raw.items["TIME"]) * self.ftime
            except ValueError:
                raise InputError(f"ITEM: TIME {raw.items['TIME']!r} is not a number", path, k) from None
        else:
            time = None
        return MDFrame(atoms, v, time, step, resolution)
