"""The dM/dt stream file (HDF5): the one on-disk format every producer writes and the spectrum reads.

Schema (format ``aptnn-dmdt``, version 1)::

    /dMdt    float64 (n_frames, n_series, 3)  e·Å/fs   chunked, resizable along frames; attr units
    /time    float64 (n_frames,)              fs       uniform spacing; attr units
    /series  strings (n_series,)                       e.g. total, bead0…, centroid, group:O, group:H
    root attrs: format, format_version, dt_fs, temperature_K, volume_A3 (absent: open boundaries),
                natoms, estimator, model (name + sha256), source, aptnn_version

Only ``dMdt``, ``time`` and the series names (dataset, or attribute ``series`` on the root or on ``dMdt``)
are required to read a file, so files written by other programs work too. Writers use HDF5 SWMR mode and
flush every few seconds: a killed producer leaves a readable file holding every flushed frame, and
re-opening with ``resume=True`` continues it.
"""
from __future__ import annotations

import os
import time as _time
from dataclasses import dataclass, field

import h5py
import numpy as np

from aptnn import __version__, units
from aptnn.errors import InputError

FORMAT = "aptnn-dmdt"
FORMAT_VERSION = 1
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
    except OSError as err:
        raise InputError(f"not a readable HDF5 file ({err})", path) from None
    with f:
        _check_layout(f, path)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        info = StreamInfo(series=_series_names(f, path))
        for key in ROOT_ATTRS:
            if key in attrs:
                value = attrs[key]
                setattr(info, key, value.item() if isinstance(value, np.generic) else value)
        info.extra = {k: v for k, v in attrs.items() if k not in ROOT_ATTRS}
        if len(info.series) != f["dMdt"].shape[1]:
            raise InputError(f"{len(info.series)} series names for {f['dMdt'].shape[1]} series in 'dMdt'", path)
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


def is_stream_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is an HDF5 file with ``dMdt`` and ``time`` datasets."""
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return "dMdt" in f and "time" in f
    except OSError:
        return False


def n_frames(path: str | os.PathLike) -> int:
    """Number of complete frames (both ``dMdt`` and ``time`` written)."""
    with h5py.File(path, "r", swmr=True) as f:
        return int(min(f["dMdt"].shape[0], f["time"].shape[0]))


def read_chunks(path: str | os.PathLike, series: list[str] | None = None, chunk: int = 1 << 18,
                start: int = 0, stop: int | None = None):
    """Yield (time [fs], dMdt [e·Å/fs] with shape (n, n_selected, 3)) in chunks of ``chunk`` frames.

    Checks values as it goes: NaN/inf is an :class:`InputError` naming the frame.
    """
    path = str(path)
    info = read_info(path)
    idx = list(range(len(info.series))) if series is None else [info.series.index(s) for s in series]
    with h5py.File(path, "r", swmr=True) as f:
        end = min(f["dMdt"].shape[0], f["time"].shape[0])
        end = end if stop is None else min(stop, end)
        for s in range(start, end, chunk):
            e = min(s + chunk, end)
            block = f["dMdt"][s:e][:, idx, :].astype(np.float64)
            t = f["time"][s:e].astype(np.float64)
            bad = ~np.isfinite(block).all(axis=(1, 2)) | ~np.isfinite(t)
            if bad.any():
                raise InputError("NaN or inf in 'dMdt' or 'time'", path, s + int(np.argmax(bad)))
            yield t, block


def _rewrite_after_crash(path: str) -> None:
    """Copy the complete frames of a file whose writer was killed into a fresh file at the same path."""
    tmp = path + ".recover.part"
    with h5py.File(path, "r", swmr=True) as src, h5py.File(tmp, "w", libver="latest") as dst:
        n = int(min(src["dMdt"].shape[0], src["time"].shape[0]))
        for name in ("dMdt", "time"):
            d = src[name]
            out = dst.create_dataset(name, shape=(n,) + d.shape[1:], maxshape=(None,) + d.shape[1:],
                                     dtype=d.dtype, chunks=d.chunks)
            for s in range(0, n, 1 << 18):
                out[s:min(n, s + (1 << 18))] = d[s:min(n, s + (1 << 18))]
            out.attrs.update(dict(d.attrs))
        for name in src:
            if name not in ("dMdt", "time"):
                src.copy(src[name], dst, name)
        dst.attrs.update(dict(src.attrs))
    os.replace(tmp, path)


def read_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The producer state arrays of a stream file (empty if none)."""
    with h5py.File(path, "r", swmr=True) as f:
        return {k: v[()] for k, v in f["state"].items()} if "state" in f else {}


def read_time_chunks(path: str | os.PathLike, chunk: int = 1 << 20):
    """Yield the ``time`` dataset (fs) in chunks, up to the last complete frame; NaN is an error."""
    path = str(path)
    with h5py.File(path, "r", swmr=True) as f:
        end = min(f["dMdt"].shape[0], f["time"].shape[0])
        for s in range(0, end, chunk):
            t = f["time"][s:min(s + chunk, end)].astype(np.float64)
            if not np.isfinite(t).all():
                raise InputError("NaN or inf in 'time'", path, s + int(np.argmax(~np.isfinite(t))))
            yield t


class StreamWriter:
    """Append dM/dt frames to a stream file, flushing every ``flush_every`` seconds (SWMR mode).

    >>> with StreamWriter("run.dmdt.h5", ["total", "group:O"], dt_fs=0.5, temperature_K=300) as w:
    ...     w.append(time_fs, dmdt)   # (n,), (n, n_series, 3) in fs and e·Å/fs

    ``resume=True`` re-opens an existing file with the same series and dt and continues after its last
    complete frame (``w.n_frames``); without it an existing file is an error (nothing is overwritten
    by accident) unless ``overwrite=True``.
    """

    def __init__(self, path: str | os.PathLike, series: list[str], dt_fs: float | None = None,
                 temperature_K: float | None = None, volume_A3: float | None = None, natoms: int | None = None,
                 estimator: str | None = None, model: str | None = None, source: str | None = None,
                 resume: bool = False, overwrite: bool = False, flush_every: float | None = None, chunk: int = 4096,
                 state: dict[str, tuple[int, ...]] | None = None, **extra):
        self.path = str(path)
        self.series = list(series)
        if flush_every is None:  # seconds; APTNN_FLUSH_SECONDS overrides the default of 5
            flush_every = float(os.environ.get("APTNN_FLUSH_SECONDS", 5.0))
        self.flush_every = flush_every
        self._last_flush = _time.monotonic()
        exists = os.path.exists(self.path)
        if exists and resume:
            self._open_existing(dt_fs, source, model)
            return
        if exists and not overwrite:
            raise InputError("output exists: pass resume to continue it or overwrite to replace it", self.path)
        # built under a temporary name and moved into place once in SWMR mode: a reader never finds the path
        # holding a file it cannot open
        creating = self.path + ".creating.part"
        self.file = h5py.File(creating, "w", libver="latest")
        n = len(self.series)
        d = self.file.create_dataset("dMdt", shape=(0, n, 3), maxshape=(None, n, 3), dtype="f8",
                                     chunks=(chunk, n, 3))
        d.attrs["units"] = units.DIPOLE_DERIVATIVE
        d.attrs["convention"] = "dM/dt = sum_i P_i . v_i, P[xi,zeta] = dM_xi/dr_zeta"
        t = self.file.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(chunk,))
        t.attrs["units"] = units.TIME
        self.file.create_dataset("series", data=np.array(self.series, dtype=h5py.string_dtype()))
        for name, shape in (state or {}).items():  # producer state for restarts, overwritten in place
            self.file.create_dataset(f"state/{name}", shape=shape, dtype="f8", fillvalue=np.nan)
        attrs = dict(format=FORMAT, format_version=FORMAT_VERSION, aptnn_version=__version__, dt_fs=dt_fs,
                     temperature_K=temperature_K, volume_A3=volume_A3, natoms=natoms, estimator=estimator,
                     model=model, source=source, **extra)
        for key, value in attrs.items():
            if value is not None:
                self.file.attrs[key] = value
        self.file.swmr_mode = True
        os.replace(creating, self.path)
        self.n_frames = 0

    def _open_existing(self, dt_fs, source, model):
        info = read_info(self.path)
        for name, mine, theirs in (("source", source, info.source), ("model", model, info.model)):
            if mine is not None and theirs is not None and mine != theirs:
                raise InputError(f"cannot resume: file was written from {name} {theirs!r}, not {mine!r} "
                                 "(use overwrite, or another output)", self.path)
        if info.series != self.series:
            raise InputError(f"cannot resume: file has series {info.series}, not {self.series}", self.path)
        if dt_fs is not None and info.dt_fs is not None and not np.isclose(info.dt_fs, dt_fs):
            raise InputError(f"cannot resume: file has dt {info.dt_fs} fs, not {dt_fs} fs", self.path)
        try:
            self.file = h5py.File(self.path, "a", libver="latest")
        except OSError as err:
            if "consistency flags" not in str(err):
                raise InputError(f"cannot re-open for appending ({err})", self.path) from None
            _rewrite_after_crash(self.path)  # a killed writer left the SWMR flag set
            self.file = h5py.File(self.path, "a", libver="latest")
        self.n_frames = int(min(self.file["dMdt"].shape[0], self.file["time"].shape[0]))
        self.file["dMdt"].resize(self.n_frames, axis=0)  # drop a half-written last chunk
        self.file["time"].resize(self.n_frames, axis=0)
        self.file.swmr_mode = True

    def append(self, time_fs, dmdt) -> None:
        """Append frames: ``time_fs`` (n,) in fs, ``dmdt`` (n, n_series, 3) in e·Å/fs."""
        time_fs = np.atleast_1d(np.asarray(time_fs, dtype=np.float64))
        dmdt = np.asarray(dmdt, dtype=np.float64).reshape(len(time_fs), len(self.series), 3)
        n0, n1 = self.n_frames, self.n_frames + len(time_fs)
        self.file["dMdt"].resize(n1, axis=0)
        self.file["dMdt"][n0:n1] = dmdt
        self.file["time"].resize(n1, axis=0)
        self.file["time"][n0:n1] = time_fs
        self.n_frames = n1
        if _time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def set_state(self, name: str, value) -> None:
        """Overwrite the producer state array ``state/<name>`` (created with ``state=`` at file creation)."""
        self.file[f"state/{name}"][...] = value

    def flush(self) -> None:
        self.file.flush()
        self._last_flush = _time.monotonic()

    def close(self) -> None:
        if getattr(self, "file", None) is not None and self.file.id.valid:
            self.file.flush()
            self.file.close()

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge_streams(parts: list[str | os.PathLike], output: str | os.PathLike, chunk: int = 1 << 18) -> str:
    """Concatenate consecutive stream files of one run (shards of a distributed run) into ``output``.

    The parts must have the same series and time step and follow each other in time; the metadata of the
    first part (which starts the run) is kept. Written to a temporary name and renamed when complete.
    """
    parts, output = [str(p) for p in parts], str(output)
    if not parts:
        raise InputError("nothing to merge", output)
    infos = [read_info(p) for p in parts]
    lengths = [n_frames(p) for p in parts]
    prev_end = None
    for path, info, n in zip(parts, infos, lengths):
        if info.series != infos[0].series:
            raise InputError(f"series {info.series} differ from {infos[0].series} of {parts[0]}", path)
        if n == 0:
            raise InputError("part holds no frames", path)
        with h5py.File(path, "r", swmr=True) as f:
            t0, t1 = float(f["time"][0]), float(f["time"][n - 1])
        if prev_end is not None:
            dt = infos[0].dt_fs
            if dt is None or not np.isclose(t0 - prev_end, dt, rtol=1e-6, atol=1e-9):
                raise InputError(f"does not continue the previous part (starts at {t0} fs, previous ended at "
                                 f"{prev_end} fs, dt {dt} fs)", path)
        prev_end = t1
    tmp = output + ".merge.part"
    total = sum(lengths)
    with h5py.File(parts[0], "r", swmr=True) as first, h5py.File(tmp, "w", libver="latest") as dst:
        for name in ("dMdt", "time"):
            d = first[name]
            out = dst.create_dataset(name, shape=(total,) + d.shape[1:], maxshape=(None,) + d.shape[1:],
                                     dtype=d.dtype, chunks=d.chunks)
            out.attrs.update(dict(d.attrs))
        for name in first:
            if name not in ("dMdt", "time"):
                first.copy(first[name], dst, name)
        dst.attrs.update(dict(first.attrs))
        offset = 0
        for path, n in zip(parts, lengths):
            with h5py.File(path, "r", swmr=True) as src:
                for s in range(0, n, chunk):
                    e = min(n, s + chunk)
                    dst["dMdt"][offset + s:offset + e] = src["dMdt"][s:e]
                    dst["time"][offset + s:offset + e] = src["time"][s:e]
            offset += n
    os.replace(tmp, output)
    return output
