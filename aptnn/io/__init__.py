"""Readers and writers: every format yields ASE Atoms following :mod:`aptnn.frames` conventions."""
from aptnn.io.frames import read_frames, write_frames

__all__ = ["read_frames", "write_frames"]
