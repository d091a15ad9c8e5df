"""The dM/dt stream file (HDF5): the one on-disk format every producer writes and the spectrum reads.

Schema (format ``aptnn-dmdt``, version 1)::

    /dMdt    float64 (n_frames, n_series, 3)  e·Å/fs   chunked, resizable along frames; attr units
    /time    float64 (n_frames,)              fs       uniform spacing; attr units
    /series  strings (n_series,)                       e.g. total, bead0…, centroid, group:O, group:H
    /volume  float64 (n_frames,)              Å³       optional (a changing cell, NPT): each frame's volume;
                                                       then attr volume_source = frame-mean and readers use
                                                       their mean as volume_A3
    /dAdt    float64 (n_frames, n_series, 6)  e·Å²/(V·fs)  optional: dα/dt (polarisability derivative) per series,
                                                       Voigt order xx, yy, zz, yz, xz, xy (attrs units,
                                                       components); same series and chunking as dMdt (Raman)
    root attrs: format, format_version, dt_fs, temperature_K, volume_A3 (absent: open boundaries),
                natoms, estimator, model (name + sha256), source, aptnn_version

Only ``dMdt``, ``time`` and the series names (dataset, or attribute ``series`` on the root or on ``dMdt``)
are required to read a file, so files written by other programs work too. Writers use HDF5 SWMR mode and
flush every few seconds: a killed producer leaves a readable file holding every flushed frame, and
re-opening with ``resume=True`` continues it. This module reads; :mod:`aptnn.io.stream_writer` writes.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from aptnn.errors import InputError

FORMAT = "aptnn-dmdt"
FORMAT_VERSION = 1
CHECK_SIZE = 3   # numbers in a frame fingerprint (frame_check)
ROOT_ATTRS = ("dt_fs", "temperature_K", "volume_A3", "natoms", "estimator", "model", "source")


@dataclass
class StreamInfo:
    """Metadata of a stream file (units in the names)."""

    series: list[str]
    dt_fs: float | None = None
    temperature_K: float | None = None
    volume_A3: float | None = None
    natoms: int | None = None
    estimator: str | None = None
    model: str | None = None
    source: str | None = None
    extra: dict = field(default_factory=dict)
    has_dadt: bool = False   # the file holds /dAdt (dα/dt, e·Å²/(V·fs)): a Raman spectrum can be computed


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def _series_names(f: h5py.File, path: str) -> list[str]:
    if "series" in f:
        return _decode(f["series"][()])
    for holder in (f, f.get("dMdt")):
        if holder is not None and "series" in holder.attrs:
            return _decode(holder.attrs["series"])
    n = f["dMdt"].shape[1]
    if n == 1:
        return ["total"]
    raise InputError("no series names (dataset 'series' or attribute 'series')", path)


def read_info(path: str | os.PathLike) -> StreamInfo:
    """Read and check a stream file's metadata; raises :class:`InputError` naming the problem."""
    path = str(path)
    try:
        f = h5py.File(path, "r", swmr=True)
    except (OSError, RuntimeError) as err:  # h5py: RuntimeError for a damaged superblock
        raise InputError(f"not a readable HDF5 file ({err})", path) from None
    with f:
        _check_layout(f, path)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        info = StreamInfo(series=_series_names(f, path), has_dadt="dAdt" in f)
        for key in ROOT_ATTRS:
            if key in attrs:
                value = attrs[key]
                setattr(info, key, value.item() if isinstance(value, np.generic) else value)
        info.extra = {k: v for k, v in attrs.items() if k not in ROOT_ATTRS}
        if len(info.series) != f["dMdt"].shape[1]:
            raise InputError(f"{len(info.series)} series names for {f['dMdt'].shape[1]} series in 'dMdt'", path)
        if attrs.get("temperature_source") == "kinetic-mean" and "kinetic_temperature" in f:
            n = complete_frames(f)
            if n:  # the mean over the whole run, not the first frame's value
                info.temperature_K = float(np.mean(f["kinetic_temperature"][:n]))
        if attrs.get("volume_source") == "frame-mean" and "volume" in f:
            n = complete_frames(f)
            if n:  # a changing cell (NPT): the mean volume of the frames written
                info.volume_A3 = float(np.nanmean(f["volume"][:n]))
    return info


def _check_layout(f: h5py.File, path: str) -> None:
    for name in ("dMdt", "time"):
        if name not in f:
            raise InputError(f"missing dataset '{name}' (not a dM/dt stream file?)", path)
    d, t = f["dMdt"], f["time"]
    if d.ndim != 3 or d.shape[2] != 3:
        raise InputError(f"dataset 'dMdt' has shape {d.shape}, expected (n_frames, n_series, 3)", path)
    if t.ndim != 1:
        raise InputError(f"dataset 'time' has shape {t.shape}, expected (n_frames,)", path)
    if "dAdt" in f:
        a = f["dAdt"]
        if a.ndim != 3 or a.shape[1] != d.shape[1] or a.shape[2] != 6:
            raise InputError(f"dataset 'dAdt' has shape {a.shape}, expected (n_frames, {d.shape[1]}, 6): the "
                             "series of 'dMdt', Voigt components xx, yy, zz, yz, xz, xy", path)


def is_stream_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is an HDF5 file with ``dMdt`` and ``time`` datasets."""
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return "dMdt" in f and "time" in f
    except (OSError, RuntimeError):
        return False


def complete_frames(f: h5py.File) -> int:
    """Frames that both ``dMdt`` and ``time`` (and ``check``, ``dAdt``, … where present) hold, and that a flush
    confirmed on disk (dataset ``flushed``, written by aptnn after each successful flush; absent in other programs'
    files)."""
    n = min(f["dMdt"].shape[0], f["time"].shape[0])
    for name in ("check", "kinetic_temperature", "volume", "dAdt"):
        if name in f:
            n = min(n, f[name].shape[0])
    if "flushed" in f:
        n = min(n, int(f["flushed"][0]))
    return int(n)


def n_frames(path: str | os.PathLike) -> int:
    """Number of complete frames (see :func:`complete_frames`)."""
    with h5py.File(path, "r", swmr=True) as f:
        return complete_frames(f)


#: per-frame, per-series datasets :func:`read_chunks` reads, with their unit
SERIES_DATASETS = {"dMdt": "e·Å/fs", "dAdt": "e·Å²/(V·fs)"}


def read_chunks(path: str | os.PathLike, series: list[str] | None = None, chunk: int = 1 << 18,
                start: int = 0, stop: int | None = None, dataset: str = "dMdt"):
    """Yield (time [fs], values) in chunks of ``chunk`` frames: ``dataset`` ``dMdt`` gives dM/dt [e·Å/fs] with
    shape (n, n_selected, 3), ``dAdt`` dα/dt [e·Å²/(V·fs)] with shape (n, n_selected, 6) (Voigt xx, yy, zz, yz, xz,
    xy; a file without it is an :class:`InputError`).

    Checks values as it goes: NaN/inf is an :class:`InputError` naming the frame.
    """
    path = str(path)
    if dataset not in SERIES_DATASETS:
        raise ValueError(f"unknown stream dataset {dataset!r}; choose from {', '.join(SERIES_DATASETS)}")
    info = read_info(path)
    if dataset == "dAdt" and not info.has_dadt:
        raise InputError("no dataset 'dAdt' (dα/dt): the stream was written without polarizability derivatives",
                         path)
    idx = list(range(len(info.series))) if series is None else [info.series.index(s) for s in series]
    with h5py.File(path, "r", swmr=True) as f:
        end = complete_frames(f)
        end = end if stop is None else min(stop, end)
        for s in range(start, end, chunk):
            e = min(s + chunk, end)
            block = f[dataset][s:e][:, idx, :].astype(np.float64)
            t = f["time"][s:e].astype(np.float64)
            bad = ~np.isfinite(block).all(axis=(1, 2)) | ~np.isfinite(t)
            if bad.any():
                raise InputError(f"NaN or inf in '{dataset}' or 'time'", path, s + int(np.argmax(bad)))
            yield t, block


def read_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The producer state arrays of a stream file (empty if none)."""
    with h5py.File(path, "r", swmr=True) as f:
        return {k: v[()] for k, v in f["state"].items()} if "state" in f else {}


def read_time_chunks(path: str | os.PathLike, chunk: int = 1 << 20):
    """Yield the ``time`` dataset (fs) in chunks, up to the last complete frame; NaN is an error."""
    path = str(path)
    with h5py.File(path, "r", swmr=True) as f:
        end = complete_frames(f)
        for s in range(0, end, chunk):
            t = f["time"][s:min(s + chunk, end)].astype(np.float64)
            if not np.isfinite(t).all():
                raise InputError("NaN or inf in 'time'", path, s + int(np.argmax(~np.isfinite(t))))
            yield t


@functools.lru_cache(maxsize=8)
def _check_weights(size: int) -> np.ndarray:
    return np.random.default_rng(size).uniform(-1.0, 1.0, (CHECK_SIZE, size)) / np.sqrt(size)


def frame_check(positions) -> np.ndarray:
    """Fingerprint (CHECK_SIZE,) in Å of a frame's positions (any shape, e.g. (beads, N, 3)): projections of the
    flattened coordinates on fixed pseudo-random weights. Equal positions give equal values; positions one MD
    step apart differ by ~10⁻³ Å, text round trips (restart files) by ~10⁻¹² Å."""
    flat = np.asarray(positions, dtype=np.float64).ravel()
    return _check_weights(flat.size) @ flat


def read_checks(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Stored input fingerprints (n, CHECK_SIZE) Å of complete frames start…stop−1 (empty without ``check``)."""
    with h5py.File(path, "r", swmr=True) as f:
        if "check" not in f:
            return np.zeros((0, CHECK_SIZE))
        end = complete_frames(f) if stop is None else min(stop, complete_frames(f))
        return f["check"][start:end].astype(np.float64)


def model_digest(label: str | None) -> str | None:
    """The sha256 part of a model label ``name sha256:<hex>`` (the whole label when it has none)."""
    if label is None:
        return None
    return label.rsplit("sha256:", 1)[-1] if "sha256:" in label else label


def intact_frames(f: h5py.File, dt_fs: float | None, tail: int = 1 << 16,
                  chunk: int = 1 << 20) -> tuple[int, int]:
    """(frames to keep, frames dropped) of a file being resumed: the complete frames (:func:`complete_frames`)
    up to the first break of the uniform time spacing or the first non-finite value in the last ``tail``
    frames. A write that failed half-way leaves zeros or garbage there. Times are read ``chunk`` at a time."""
    n = complete_frames(f)
    rows = max(f["dMdt"].shape[0], n)
    if n == 0:
        return 0, rows
    step = dt_fs if dt_fs else (float(f["time"][1] - f["time"][0]) if n > 1 else None)
    keep, last = n, None
    for s in range(0, n, chunk):
        t = f["time"][s:min(n, s + chunk)].astype(np.float64)
        good = np.isfinite(t)
        if step is not None:
            previous = np.concatenate([[last], t[:-1]]) if last is not None else np.concatenate([[np.nan], t[:-1]])
            steps_ok = np.isclose(t - previous, step, rtol=1e-6, atol=1e-9 * max(abs(step), 1.0))
            steps_ok[0] |= last is None  # the very first frame has no predecessor
            good &= steps_ok
        if not good.all():
            keep = s + int(np.argmin(good))
            break
        last = t[-1]
    start = max(0, min(keep, n) - tail)
    finite = np.isfinite(f["dMdt"][start:keep]).all(axis=(1, 2))
    if "dAdt" in f:
        finite &= np.isfinite(f["dAdt"][start:keep]).all(axis=(1, 2))
    if not finite.all():
        keep = start + int(np.argmin(finite))
    return keep, rows - keep
