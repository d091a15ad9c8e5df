"""Exceptions raised on purpose: one clear message naming the file, the frame and the problem."""
from __future__ import annotations


class APTNNError(Exception):
    """Base class for every error aptnn raises on purpose."""


class LocatedError(APTNNError, ValueError):
    """An error about a file (and a frame of it): the message names the file, the frame and the problem."""

    def __init__(self, problem: str, source: str | None = None, frame: int | None = None):
        where = []
        if source is not None:
            where.append(str(source))
        if frame is not None:
            where.append(f"frame {frame}")
        self.problem = problem
        self.source = source
        self.frame = frame
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


class InputError(LocatedError):
    """A file or frame that cannot be used; the message names the file, the frame and the problem."""


class OutputError(LocatedError):
    """An output that cannot be written or continued (disk full, quota, another writer holds it, a resume that
    would mix data); names the file."""


class CheckpointError(APTNNError, ValueError):
    """A model file that is not an aptnn checkpoint, or one this version cannot use."""
