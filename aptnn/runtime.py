"""Process-level settings that make CPU inference fast without an LD_PRELOAD.

glibc's malloc hands large blocks (≥128 kB by default, adaptively more) back to the operating system on
``free`` and faults them in again on the next call; the per-edge arrays of the network are exactly such
blocks, so every model call paid ~20 000 page faults per 384-atom frame. Raising the mmap and trim
thresholds keeps freed blocks in the heap for reuse. Applied once by the entry points (the command-line
commands, ``aptnn-ipi``, :func:`aptnn.load_model`), never by importing aptnn; set ``APTNN_MALLOC_TUNING=0`` to
leave malloc alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 2**20   # blocks below this come from the heap and are reused
TRIM_THRESHOLD_BYTES = 1024 * 2**20  # free heap kept before returning memory to the OS

_applied: bool | None = None  # None: tune_malloc() never called in this process


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds (once); returns True when applied (glibc only)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("APTNN_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied
