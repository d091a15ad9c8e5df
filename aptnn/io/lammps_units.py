"""Which LAMMPS unit style a file is in: ``--units``, the dump's own ``ITEM: UNITS`` (``dump_modify units yes``),
or the run's files next to it: a LAMMPS log (``log.lammps``: the ``units`` command it echoes) or a data file
written by ``write_data`` (first line ``… units = real``).

LAMMPS text dumps and ``dump h5md`` files do not otherwise record the style, and reading a ``metal`` run as
``real`` makes velocities 1000× too large: the style is never guessed. A style found next to the file is
announced in a one-line warning naming the file it came from.
"""
from __future__ import annotations

import os
import re
import warnings

from aptnn import units
from aptnn.errors import InputError

_UNITS_COMMAND = re.compile(r"^\s*units\s+(\w+)\s*(?:#.*)?$")
_DATA_HEADER = re.compile(r"\bunits\s*=\s*(\w+)")
#: lines of a log read for ``units`` commands (they come before the box is made; thermo output follows)
LOG_LINES = 20000
MAX_CANDIDATES = 16


def check_style(style: str, path: str, origin: str = "--units") -> str:
    """``style`` if aptnn converts it, else an :class:`InputError` naming ``path`` and listing the styles."""
    if style in units.LAMMPS_UNITS:
        return style
    if style == "lj":
        raise InputError(f"LAMMPS units 'lj' ({origin}) are reduced units: they have no conversion to Å and fs; "
                         f"rerun in one of {units.lammps_styles()}", path)
    raise InputError(f"unknown LAMMPS units {style!r} ({origin}); choose from {units.lammps_styles()}", path)


def _log_style(path: str) -> set[str]:
    """Unit styles of the ``units`` commands of a LAMMPS log (empty if it is none)."""
    found = set()
    with open(path, errors="replace") as fh:
        if not fh.readline().startswith("LAMMPS ("):
            return found
        for k, line in enumerate(fh):
            m = _UNITS_COMMAND.match(line)
            if m:
                found.add(m.group(1))
            if k > LOG_LINES:
                break
    return found


def _data_style(path: str) -> set[str]:
    """The style a ``write_data`` file names in its first line (empty for hand-written data files)."""
    with open(path, errors="replace") as fh:
        m = _DATA_HEADER.search(fh.readline(300))
    return {m.group(1)} if m else set()


def styles_next_to(path: str) -> dict[str, set[str]]:
    """{file name: unit styles} of the LAMMPS logs (``log.lammps``, ``log.*``, ``*.log``) and ``write_data``
    files (``*.data``, ``data.*``) in the folder of ``path`` that name one."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    logs = [n for n in names if n == "log.lammps" or n.startswith("log.") or n.endswith(".log")]
    data = [n for n in names if n.endswith(".data") or n.startswith("data.")]
    found = {}
    for name, read in [(n, _log_style) for n in logs[:MAX_CANDIDATES]] + [(n, _data_style) for n in
                                                                          data[:MAX_CANDIDATES]]:
        full = os.path.join(folder, name)
        if not os.path.isfile(full):
            continue
        try:
            styles = read(full)
        except OSError:
            continue
        if styles:
            found[name] = styles
    return found


def resolve_style(path: str, given: str | None, declared: str | None = None, required: bool = True) -> str | None:
    """The LAMMPS unit style of ``path``: ``declared`` by the file (``ITEM: UNITS``), ``given`` (--units; an
    error if the file declares another), else the one style named by the run's log or data files next to it
    (announced in a warning). Without any: an :class:`InputError` listing the styles if ``required``, else None.
    """
    if declared is not None:
        check_style(declared, path, "the dump's ITEM: UNITS")
        if given is not None and given != declared:
            raise InputError(f"--units {given}, but the dump says ITEM: UNITS {declared}: drop --units or fix it",
                             path)
        return declared
    found = styles_next_to(path)
    if given is not None:
        check_style(given, path)
        others = {name: s for name, s in found.items() if s != {given}}
        if others:
            name, styles = next(iter(others.items()))
            warnings.warn(f"{path}: read in LAMMPS '{given}' units as --units says, but {name} next to it names "
                          f"'units {' '.join(sorted(styles))}'", stacklevel=3)
        return given
    styles = set().union(*found.values()) if found else set()
    if len(styles) == 1:
        style = styles.pop()
        check_style(style, path, f"from {', '.join(found)}")
        warnings.warn(f"{path}: LAMMPS units '{style}' ({', '.join(units.LAMMPS_UNIT_NAMES[style])}) from "
                      f"{', '.join(found)} next to it; --units overrides", stacklevel=3)
        return style
    if len(styles) > 1:
        said = "; ".join(f"{name}: {' '.join(sorted(s))}" for name, s in found.items())
        raise InputError(f"the run's files next to it name different LAMMPS units ({said}): give --units", path)
    if not required:
        return None
    raise InputError("LAMMPS dumps do not record their unit style: give --units, one of "
                     f"{units.lammps_styles()} (or keep the run's log.lammps next to the dump, or write it with "
                     "'dump_modify ID units yes')", path)


def native_units(style: str) -> dict[str, str]:
    """The native units of a LAMMPS unit style as a reader declares them (``units``): length, time, velocity
    (``real`` → angstrom, fs, angstrom/fs; ``metal`` → angstrom, ps, angstrom/ps; …)."""
    length, time, velocity = (u.replace("Å", "angstrom") for u in units.LAMMPS_UNIT_NAMES[style])
    return {"length": length, "time": time, "velocity": velocity}
