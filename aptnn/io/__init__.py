"""Readers and writers: every format yields ASE Atoms following :mod:`aptnn.keys` / :mod:`aptnn.labels` conventions."""
from aptnn.io.labelled import read_frames, write_frames

__all__ = ["read_frames", "write_frames"]
