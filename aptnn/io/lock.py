"""One writer per output file: an exclusive OS lock (``fcntl.flock``) on ``<output>.lock``, held for the run.

The lock file holds the owner's pid, host, start time and command line, so a second writer can say who holds
the output. The kernel drops the lock when its holder dies (even by SIGKILL), so a stale lock file never
blocks a later run: a file left with HDF5's SWMR flag is recovered only by a writer that holds the lock,
i.e. only when no live writer is using it.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time

from aptnn.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None


def lock_path(output: str | os.PathLike) -> str:
    return f"{output}.lock"


def _owner() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]}


def _describe(path: str) -> str:
    try:
        with open(path) as fh:
            owner = json.load(fh)
        return (f"pid {owner['pid']} on {owner['host']}, since {owner['since']}: {owner['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


class OutputLock:
    """Exclusive lock of one output path for this process; :meth:`release` (or process death) frees it."""

    def __init__(self, output: str | os.PathLike):
        self.output, self.path = str(output), lock_path(output)
        self.fd: int | None = None
        if fcntl is None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(f"is being written by another process ({_describe(self.path)}); wait for it "
                                  "to finish or choose another output", self.output) from None
            # the previous holder may have unlinked the file between our open and flock: lock the file on disk
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_owner()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked: a waiting writer re-checks the inode
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
