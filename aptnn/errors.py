"""Every exception aptnn raises on purpose, all derived from :class:`APTNNError`: one clear message naming the
file, the frame and the problem. The command line turns any of them into one line `<prog>: error: …` and exit
status 2 (:func:`aptnn.cli.errors.fail`)."""
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


class ProtocolError(APTNNError):
    """No i-PI server, or i-PI broke the protocol; the message names the address or the message."""


class ClientError(APTNNError):
    """``aptnn-ipi`` cannot go on (a stream that does not fit the run, a worker that failed)."""


class LabelError(APTNNError):
    """A reference calculation (``aptnn label``) failed or cannot be set up."""


class BackendMissing(LabelError):
    """The electronic-structure package or binary of a backend is not installed (the message says how to get it)."""


class DistributedError(APTNNError):
    """One or more ranks failed; the message lists each failed rank and its error. Raised on every rank;
    ``quiet`` is True except on rank 0, so that the command line prints it once."""

    quiet: bool = False
