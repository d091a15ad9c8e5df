"""Whole-file operations on stream files: recovery after a killed writer, and merging consecutive parts.

Both copy frames into a new file under a temporary name and rename it into place when complete, so a crash
in the middle never leaves a half-written output. Both hold the output's lock (:mod:`aptnn.io.lock`).
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from aptnn.errors import InputError
from aptnn.io.lock import OutputLock
from aptnn.io.stream import complete_frames, model_digest, n_frames, read_info

# datasets with one row per frame; the rest is copied as is
FRAME_DATASETS = ("dMdt", "time", "check", "kinetic_temperature", "volume", "dAdt")


def _copy_layout(src: h5py.File, dst: h5py.File, total: int) -> None:
    """Create the per-frame datasets of ``src`` with ``total`` rows in ``dst``; copy everything else."""
    for name in FRAME_DATASETS:
        if name in src:
            d = src[name]
            out = dst.create_dataset(name, shape=(total,) + d.shape[1:], maxshape=(None,) + d.shape[1:],
                                     dtype=d.dtype, chunks=d.chunks)
            out.attrs.update(dict(d.attrs))
    for name in src:
        if name not in FRAME_DATASETS and name != "flushed":
            src.copy(src[name], dst, name)
    dst.create_dataset("flushed", data=np.array([total], dtype=np.int64))
    dst.attrs.update(dict(src.attrs))


def _copy_frames(src: h5py.File, dst: h5py.File, n: int, offset: int = 0, chunk: int = 1 << 18) -> None:
    for name in FRAME_DATASETS:
        if name in src and name in dst:
            for s in range(0, n, chunk):
                e = min(n, s + chunk)
                dst[name][offset + s:offset + e] = src[name][s:e]


def rewrite_after_crash(path: str, n: int) -> None:
    """Copy the first ``n`` (intact) frames of a file whose writer was killed into a fresh file at ``path``.
    The caller holds the lock of ``path``."""
    tmp = path + ".recover.part"
    with h5py.File(path, "r", swmr=True) as src, h5py.File(tmp, "w", libver="latest") as dst:
        _copy_layout(src, dst, n)
        _copy_frames(src, dst, n)
    os.replace(tmp, path)


def merge_streams(parts: list[str | os.PathLike], output: str | os.PathLike, chunk: int = 1 << 18) -> str:
    """Concatenate consecutive stream files of one run (shards of a distributed run) into ``output``.

    The parts must have the same series, time step, source and model, and follow each other in time; the
    metadata of the first part (which starts the run) is kept. Written to a temporary name and renamed when
    complete.
    """
    parts, output = [str(p) for p in parts], str(output)
    if not parts:
        raise InputError("nothing to merge", output)
    infos = [read_info(p) for p in parts]
    lengths = [n_frames(p) for p in parts]
    first = infos[0]
    prev_end = None
    for path, info, n in zip(parts, infos, lengths):
        if info.series != first.series:
            raise InputError(f"series {info.series} differ from {first.series} of {parts[0]}", path)
        if model_digest(info.model) != model_digest(first.model):
            raise InputError(f"written with model {info.model!r}, but {parts[0]} with {first.model!r}: parts of "
                             "different models cannot be merged", path)
        if info.source != first.source:
            raise InputError(f"written from {info.source!r}, but {parts[0]} from {first.source!r}", path)
        if info.has_dadt != first.has_dadt:
            raise InputError(f"{'has' if info.has_dadt else 'has no'} polarizability derivatives (dAdt), but "
                             f"{parts[0]} {'has' if first.has_dadt else 'has none'}: parts cannot be merged", path)
        if n == 0:
            raise InputError("part holds no frames", path)
        with h5py.File(path, "r", swmr=True) as f:
            t0, t1 = float(f["time"][0]), float(f["time"][n - 1])
        if prev_end is not None:
            dt = first.dt_fs
            if dt is None or not np.isclose(t0 - prev_end, dt, rtol=1e-6, atol=1e-9):
                raise InputError(f"does not continue the previous part (starts at {t0} fs, previous ended at "
                                 f"{prev_end} fs, dt {dt} fs)", path)
        prev_end = t1
    tmp = output + ".merge.part"
    total = sum(lengths)
    with OutputLock(output):
        with h5py.File(parts[0], "r", swmr=True) as src, h5py.File(tmp, "w", libver="latest") as dst:
            _copy_layout(src, dst, total)
            offset = 0
            for path, n in zip(parts, lengths):
                with h5py.File(path, "r", swmr=True) as part:
                    if complete_frames(part) < n:
                        raise InputError("changed while merging", path)
                    _copy_frames(part, dst, n, offset, chunk)
                offset += n
        os.replace(tmp, output)
    return output
