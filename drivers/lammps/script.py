"""A LAMMPS input script as a list of commands, so that ``aptnn-lammps`` can run it command by command.

LAMMPS' own reader does the work (variables, ``if``, ``print`` …); this module only splits the text the way
LAMMPS does: ``#`` starts a comment outside quotes, a trailing ``&`` continues a line, triple quotes span
lines. ``include`` files with a literal name are read in place (their commands are the script's commands, so
a ``minimize`` or ``run`` inside them is seen). Loops (``label``/``jump``/``next``) cannot run command by
command: the part of the top-level script from the first ``label`` or ``jump`` on is handed to LAMMPS as one
file (see :class:`Script`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from aptnn.errors import InputError

#: commands that make LAMMPS read the rest of a file on its own
LOOP_COMMANDS = ("label", "jump")
INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Command:
    text: str          # the command as LAMMPS gets it (continuations joined, comment removed)
    origin: str        # "file:line" of its first line, for messages
    top_line: int      # the line of the top-level script after which the command ends (0-based, exclusive)

    @property
    def word(self) -> str:
        return self.text.split(None, 1)[0].lower() if self.text.strip() else ""


@dataclass
class Script:
    """``commands`` run one by one; ``rest`` (the top-level script from its first loop command on) runs as one
    file after them, or is empty."""

    path: str
    commands: list[Command] = field(default_factory=list)
    rest: str = ""
    rest_origin: str = ""


def _strip_comment(line: str) -> str:
    quote = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:k]
    return line


def _logical_lines(lines: list[str]):
    """(text, first line index, last line index + 1) of each command of ``lines``."""
    k = 0
    while k < len(lines):
        start, text = k, ""
        while True:
            line = lines[k].rstrip("\n")
            k += 1
            if '"""' in text + line and (text + line).count('"""') % 2 == 1 and k < len(lines):
                text += line + "\n"   # inside a triple-quoted block: keep reading
                continue
            stripped = _strip_comment(line).rstrip()
            if stripped.endswith("&") and k < len(lines):
                text += stripped[:-1] + " "
                continue
            text += stripped if '"""' not in text + line else line
            break
        yield text.strip(), start, k


def _read(path: str, origin: str) -> list[str]:
    try:
        with open(path, errors="replace") as fh:
            return fh.readlines()
    except OSError as err:
        raise InputError(f"cannot read the LAMMPS input ({err.strerror}){origin}", path) from None


def _expand(path: str, top_line: int | None, depth: int, out: list[Command]) -> int | None:
    """Append the commands of ``path`` to ``out`` (includes in place); the top-level line index of the first
    loop command of the top-level file, else None."""
    if depth > INCLUDE_DEPTH:
        raise InputError(f"include files nested more than {INCLUDE_DEPTH} deep", path)
    lines = _read(path, "")
    for text, first, end in _logical_lines(lines):
        if not text:
            continue
        cmd = Command(text, f"{path}:{first + 1}", end if top_line is None else top_line)
        word = cmd.word
        if word in LOOP_COMMANDS:
            if top_line is None:
                return first
            raise InputError(f"line {first + 1}: '{word}' inside an included file is not supported by aptnn-lammps "
                             "(loops run only in the top-level input)", path)
        parts = text.split()
        if word == "include" and len(parts) == 2 and "$" not in parts[1] and "v_" not in parts[1]:
            name = parts[1].strip("'\"")
            if not os.path.exists(name):
                raise InputError(f"line {first + 1}: include file {name!r} not found (relative to the working "
                                 f"folder {os.getcwd()}, as for LAMMPS)", path)
            _expand(name, end if top_line is None else top_line, depth + 1, out)
            continue
        out.append(cmd)
    return None


def read_script(path: str) -> Script:
    """Split the LAMMPS input ``path`` (see the module docstring)."""
    script = Script(path)
    loop_line = _expand(path, None, 0, script.commands)
    if loop_line is not None:
        lines = _read(path, "")
        script.rest = "".join(lines[loop_line:])
        script.rest_origin = f"{path}:{loop_line + 1}"
        if re.search(r"^\s*minimize\b", script.rest, re.MULTILINE):
            raise InputError(f"line {loop_line + 1} on: a 'minimize' after a loop command (label/jump): aptnn-lammps "
                             "runs that part through LAMMPS' own reader, where minimizer steps would be streamed as "
                             "MD steps; minimize before the first label, or in a separate input", path)
    return script
