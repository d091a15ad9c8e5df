"""The one error path of every command (``aptnn …``, ``aptnn-post``, ``aptnn-ipi``): aptnn's own errors become one
line ``<prog>: error: …`` on stderr and exit status 2."""
from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, TypeVar

import click

from aptnn.errors import APTNNError

T = TypeVar("T")


def start() -> None:
    """Process setup of an entry point: warnings as one line each, malloc tuned for inference."""
    from aptnn.progress import setup_warnings
    from aptnn.runtime import tune_malloc

    setup_warnings()
    tune_malloc()


def fail(err: APTNNError, prog: str = "aptnn") -> NoReturn:
    """Print ``err`` as ``<prog>: error: …`` (a distributed failure only on rank 0: ``err.quiet`` elsewhere) and
    leave with status 2."""
    if not getattr(err, "quiet", False):
        click.echo(f"{prog}: error: {err}", err=True)
    leave(2)


def run_command(fn: Callable[[], T], prog: str = "aptnn") -> T:
    """Run a command body ``fn`` after :func:`start`; aptnn's own errors go through :func:`fail`."""
    start()
    try:
        return fn()
    except APTNNError as err:
        fail(err, prog)


def leave(code: int) -> NoReturn:
    """Exit with ``code``; after a failed HDF5 write (disk full) without releasing HDF5, which may crash."""
    stream = sys.modules.get("aptnn.io.stream_writer")
    if stream is not None and stream.writer_failed():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
