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

import contextlib
import functools
import os
import time as _time
import warnings
from dataclasses import dataclass, field

import h5py
import numpy as np

from aptnn import __version__, units
from aptnn.errors import InputError, OutputError
from aptnn.io.lock import OutputLock

FORMAT = "aptnn-dmdt"
FORMAT_VERSION = 1
MIN_FREE_BYTES = 16 * 2**20   # a writer stops cleanly when its file system has less free space
_FAILED: list = []           # writers whose HDF5 file failed (kept alive, never closed)
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
        info = StreamInfo(series=_series_names(f, path))
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
    except (OSError, RuntimeError):
        return False


def complete_frames(f: h5py.File) -> int:
    """Frames that both ``dMdt`` and ``time`` (and ``check``) hold, and that a flush confirmed on disk
    (dataset ``flushed``, written by aptnn after each successful flush; absent in other programs' files)."""
    n = min(f["dMdt"].shape[0], f["time"].shape[0])
    for name in ("check", "kinetic_temperature"):
        if name in f:
            n = min(n, f[name].shape[0])
    if "flushed" in f:
        n = min(n, int(f["flushed"][0]))
    return int(n)


def n_frames(path: str | os.PathLike) -> int:
    """Number of complete frames (see :func:`complete_frames`)."""
    with h5py.File(path, "r", swmr=True) as f:
        return complete_frames(f)


def read_chunks(path: str | os.PathLike, series: list[str] | None = None, chunk: int = 1 << 18,
                start: int = 0, stop: int | None = None):
    """Yield (time [fs], dMdt [e·Å/fs] with shape (n, n_selected, 3)) in chunks of ``chunk`` frames.

    Checks values as it goes: NaN/inf is an :class:`InputError` naming the frame.
    """
    path = str(path)
    info = read_info(path)
    idx = list(range(len(info.series))) if series is None else [info.series.index(s) for s in series]
    with h5py.File(path, "r", swmr=True) as f:
        end = complete_frames(f)
        end = end if stop is None else min(stop, end)
        for s in range(start, end, chunk):
            e = min(s + chunk, end)
            block = f["dMdt"][s:e][:, idx, :].astype(np.float64)
            t = f["time"][s:e].astype(np.float64)
            bad = ~np.isfinite(block).all(axis=(1, 2)) | ~np.isfinite(t)
            if bad.any():
                raise InputError("NaN or inf in 'dMdt' or 'time'", path, s + int(np.argmax(bad)))
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


def _write_failure(err: BaseException) -> str:
    """A short reason for an HDF5 write failure ('no space left on device', …)."""
    text = str(err)
    for marker in ("error message = '", "message = '"):
        if marker in text:
            return text.split(marker, 1)[1].split("'", 1)[0].lower()
    return text.splitlines()[0][:200] if text else type(err).__name__


class StreamWriter:
    """Append dM/dt frames to a stream file, flushing every ``flush_every`` seconds (SWMR mode).

    >>> with StreamWriter("run.dmdt.h5", ["total", "group:O"], dt_fs=0.5, temperature_K=300) as w:
    ...     w.append(time_fs, dmdt)   # (n,), (n, n_series, 3) in fs and e·Å/fs

    * One writer per file: an OS lock on ``<path>.lock`` is held until :meth:`close`; a second writer gets an
      :class:`OutputError` naming the process that holds it.
    * ``resume=True`` re-opens an existing file with the same series, dt, source and model and continues after
      its last intact frame (``w.n_frames``): frames that no flush confirmed, or whose times break the uniform
      spacing (a write that failed half-way), are dropped with a warning. A file left by a killed writer is
      recovered. Without ``resume`` an existing file is an error unless ``overwrite=True``.
    * Every flush ends with an fsync and then records the frame count in ``/flushed``; a failed write (disk
      full, quota) raises :class:`OutputError` and the file keeps the frames of the last good flush.
    * ``checks=K`` adds ``/check`` (n_frames, K) Å, the input fingerprint of each row (:func:`frame_check`),
      which resumes compare to refuse mixing data from another input.
    """

    def __init__(self, path: str | os.PathLike, series: list[str], dt_fs: float | None = None,
                 temperature_K: float | None = None, volume_A3: float | None = None, natoms: int | None = None,
                 estimator: str | None = None, model: str | None = None, source: str | None = None,
                 resume: bool = False, overwrite: bool = False, flush_every: float | None = None, chunk: int = 4096,
                 state: dict[str, tuple[int, ...]] | None = None, checks: int = 0, kinetic: bool = False,
                 **extra):
        self.path = str(path)
        self.series = list(series)
        if flush_every is None:  # seconds; APTNN_FLUSH_SECONDS overrides the default of 5
            flush_every = float(os.environ.get("APTNN_FLUSH_SECONDS", 5.0))
        self.flush_every = flush_every
        self.checks, self.kinetic = checks, kinetic
        self.file = None
        self.created = False
        self._broken = False
        self._full = False   # the file system ran low: stopped, and only closing is left
        self._last_flush = _time.monotonic()
        self.lock = OutputLock(self.path)
        try:
            if os.path.exists(self.path) and resume:
                self._open_existing(dt_fs, source, model)
            elif os.path.exists(self.path) and not overwrite:
                raise OutputError("output exists: pass resume to continue it or overwrite to replace it", self.path)
            else:
                self._create(dt_fs, temperature_K, volume_A3, natoms, estimator, model, source, chunk, state,
                             extra)
        except BaseException:
            self.lock.release()
            raise

    def _create(self, dt_fs, temperature_K, volume_A3, natoms, estimator, model, source, chunk, state, extra):
        # built under a temporary name and moved into place once in SWMR mode: a reader never finds the path
        # holding a file it cannot open
        creating = self.path + ".creating.part"
        f = h5py.File(creating, "w", libver="latest")
        n = len(self.series)
        d = f.create_dataset("dMdt", shape=(0, n, 3), maxshape=(None, n, 3), dtype="f8", chunks=(chunk, n, 3))
        d.attrs["units"] = units.DIPOLE_DERIVATIVE
        d.attrs["convention"] = "dM/dt = sum_i P_i . v_i, P[xi,zeta] = dM_xi/dr_zeta"
        t = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(chunk,))
        t.attrs["units"] = units.TIME
        f.create_dataset("flushed", data=np.zeros(1, dtype=np.int64)).attrs["meaning"] = \
            "frames confirmed on disk by the last successful flush"
        if self.checks:
            c = f.create_dataset("check", shape=(0, self.checks), maxshape=(None, self.checks), dtype="f8",
                                 chunks=(chunk, self.checks))
            c.attrs["units"] = units.LENGTH
            c.attrs["meaning"] = "input fingerprint of each row (projections of the positions)"
        if self.kinetic:
            k = f.create_dataset("kinetic_temperature", shape=(0,), maxshape=(None,), dtype="f8", chunks=(chunk,))
            k.attrs["units"] = "K"
            k.attrs["meaning"] = "equipartition temperature of each frame's velocities (beads: divided by P)"
        f.create_dataset("series", data=np.array(self.series, dtype=h5py.string_dtype()))
        for name, shape in (state or {}).items():  # producer state for restarts, overwritten in place
            f.create_dataset(f"state/{name}", shape=shape, dtype="f8", fillvalue=np.nan)
        attrs = dict(format=FORMAT, format_version=FORMAT_VERSION, aptnn_version=__version__, dt_fs=dt_fs,
                     temperature_K=temperature_K, volume_A3=volume_A3, natoms=natoms, estimator=estimator,
                     model=model, source=source, **extra)
        for key, value in attrs.items():
            if value is not None:
                f.attrs[key] = value
        f.swmr_mode = True
        os.replace(creating, self.path)
        self._attach(f, 0)
        self.created = True   # by this writer: a producer that fails on bad input removes it again

    def _attach(self, f: h5py.File, n: int) -> None:
        """Keep the datasets open: HDF5 then reports write errors at flush, not while releasing a handle."""
        self.file, self.n_frames, self._flushed_n = f, n, n
        self._dmdt, self._time, self._flushed = f["dMdt"], f["time"], f.get("flushed")
        self._check = f.get("check")
        self._kinetic = f.get("kinetic_temperature")

    def _open_existing(self, dt_fs, source, model):
        info = read_info(self.path)
        if model is not None and info.model is None:
            raise OutputError("cannot resume: the file records no model (written by another program?); use "
                              "overwrite, or another output", self.path)
        if model is not None and model_digest(info.model) != model_digest(model):
            raise OutputError(f"cannot resume: file was written with model {info.model!r}, not {model!r} "
                              "(use overwrite, or another output)", self.path)
        if source is not None and info.source != source:
            raise OutputError(f"cannot resume: file was written from source {info.source!r}, not {source!r} "
                              "(use overwrite, or another output)", self.path)
        if info.series != self.series:
            raise OutputError(f"cannot resume: file has series {info.series}, not {self.series}", self.path)
        if dt_fs is not None and (info.dt_fs is None or not np.isclose(info.dt_fs, dt_fs)):
            raise OutputError(f"cannot resume: file has dt {info.dt_fs} fs, not {dt_fs} fs", self.path)
        with h5py.File(self.path, "r", swmr=True) as f:
            if self.checks and "check" not in f:
                raise OutputError("cannot resume: file has no input fingerprints (written by another program or "
                                  "an older aptnn); use overwrite, or another output", self.path)
            n, dropped = intact_frames(f, info.dt_fs)
        if dropped:
            warnings.warn(f"{self.path}: {dropped} frame(s) at the end were not intact (failed write or crash) "
                          f"and are dropped; continuing after frame {n - 1}", stacklevel=3)
        try:
            f = h5py.File(self.path, "a", libver="latest")
        except OSError:
            # a killed writer left the SWMR flag set, or a failed write a truncated file: it was readable above,
            # so copy its intact frames into a fresh file (we hold the lock: no live writer uses it)
            from aptnn.io.stream_repair import rewrite_after_crash

            try:
                rewrite_after_crash(self.path, n)
                f = h5py.File(self.path, "a", libver="latest")
            except OSError as err:
                raise OutputError(f"cannot re-open for appending ({err})", self.path) from None
        if "flushed" not in f:
            f.create_dataset("flushed", data=np.zeros(1, dtype=np.int64))
        self._attach(f, n)
        with self._writing():
            self._resize(n)
            f.swmr_mode = True
            self.flush()

    def _resize(self, n: int) -> None:
        for d in (self._dmdt, self._time, self._check, self._kinetic):
            if d is not None:
                d.resize(n, axis=0)

    @contextlib.contextmanager
    def _writing(self):
        """Turn any HDF5 write failure into one :class:`OutputError`; the writer is unusable afterwards.

        HDF5 cannot be closed safely after a failed write (it may crash while freeing its caches): the file is
        abandoned as it is (the frames of the last good flush are intact, see ``/flushed``) and
        :func:`writer_failed` tells entry points to leave the process with ``os._exit``."""
        if self._broken:
            raise OutputError("an earlier write failed", self.path)
        try:
            yield
        except OutputError:
            raise
        except (OSError, RuntimeError, ValueError) as err:
            self._broken = True
            _FAILED.append(self)   # keeps the HDF5 objects alive: releasing them may crash
            raise OutputError(f"cannot write ({_write_failure(err)}); the file keeps the {self._flushed_n} "
                              "frame(s) of the last good flush", self.path) from None

    def _check_space(self) -> None:
        """Stop cleanly before the file system is full: HDF5 does not survive a failed write well."""
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except (OSError, AttributeError):
            return
        free = st.f_bavail * st.f_frsize
        row = 8 * (3 * len(self.series) + 1 + self.checks)
        chunk_rows = self._time.chunks[0] if self._time.chunks else 4096
        pending = row * (self.n_frames - self._flushed_n + 2 * chunk_rows)
        if free < pending + MIN_FREE_BYTES:
            self._full = True
            self.n_frames = self._flushed_n  # drop what no flush confirmed, then close cleanly
            self._resize(self.n_frames)
            raise OutputError(f"disk full: {free / 2**20:.1f} MiB left on its file system (aptnn stops below "
                              f"{MIN_FREE_BYTES / 2**20:.0f} MiB); the file keeps {self._flushed_n} frame(s) and a "
                              "rerun continues it once there is space", self.path)

    def append(self, time_fs, dmdt, check=None, kinetic_K=None) -> None:
        """Append frames: ``time_fs`` (n,) in fs, ``dmdt`` (n, n_series, 3) in e·Å/fs, ``check`` (n, K) Å,
        ``kinetic_K`` (n,) K (streams made with ``kinetic=True``)."""
        time_fs = np.atleast_1d(np.asarray(time_fs, dtype=np.float64))
        dmdt = np.asarray(dmdt, dtype=np.float64).reshape(len(time_fs), len(self.series), 3)
        if self.checks:
            if check is None:
                raise ValueError("this stream records input fingerprints: pass check")
            check = np.asarray(check, dtype=np.float64).reshape(len(time_fs), self.checks)
        n0, n1 = self.n_frames, self.n_frames + len(time_fs)
        with self._writing():
            self._resize(n1)
            self._dmdt[n0:n1] = dmdt
            self._time[n0:n1] = time_fs
            if self.checks:
                self._check[n0:n1] = check
            if self._kinetic is not None:
                self._kinetic[n0:n1] = np.full(len(time_fs), np.nan) if kinetic_K is None else kinetic_K
        self.n_frames = n1
        if _time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def truncate(self, n: int) -> None:
        """Drop the frames ≥ ``n`` (a producer that restarts behind the end of the stream)."""
        if not 0 <= n <= self.n_frames:
            raise ValueError(f"cannot truncate {self.n_frames} frames to {n}")
        with self._writing():
            self._resize(n)
            self.n_frames = n
            self.flush()

    def set_state(self, name: str, value) -> None:
        """Overwrite the producer state array ``state/<name>`` (created with ``state=`` at file creation)."""
        with self._writing():
            self.file[f"state/{name}"][...] = value

    def flush(self) -> None:
        """Write everything, fsync, then record the frame count in ``/flushed`` (and write that too)."""
        with self._writing():
            if not self._full:
                self._check_space()
            self.file.flush()
            self._fsync()
            if self._flushed is not None and self._flushed[0] != self.n_frames:
                self._flushed[0] = self.n_frames
                self.file.flush()
                self._fsync()
        self._flushed_n = self.n_frames
        self._last_flush = _time.monotonic()

    def _fsync(self) -> None:
        try:
            os.fsync(self.file.id.get_vfd_handle())
        except (TypeError, ValueError):  # a driver without a POSIX file descriptor
            pass

    def close(self) -> None:
        try:
            if self.file is not None and not self._broken and self.file.id.valid:
                try:
                    self.flush()
                finally:
                    if not self._broken:
                        self.file.close()
        finally:
            self.lock.release()

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def writer_failed() -> bool:
    """True once a write of any :class:`StreamWriter` in this process failed: the process must end with
    ``os._exit`` (after printing its error), since HDF5 may crash while releasing the broken file."""
    return bool(_FAILED)


def model_digest(label: str | None) -> str | None:
    """The sha256 part of a model label ``name sha256:<hex>`` (the whole label when it has none)."""
    if label is None:
        return None
    return label.rsplit("sha256:", 1)[-1] if "sha256:" in label else label


def intact_frames(f: h5py.File, dt_fs: float | None, tail: int = 1 << 16) -> tuple[int, int]:
    """(frames to keep, frames dropped) of a file being resumed: the complete frames (:func:`complete_frames`)
    up to the first break of the uniform time spacing or the first non-finite value in the last ``tail``
    frames. A write that failed half-way leaves zeros or garbage there."""
    n = complete_frames(f)
    rows = max(f["dMdt"].shape[0], n)
    if n == 0:
        return 0, rows
    t = f["time"][:n].astype(np.float64)
    step = dt_fs if dt_fs else (t[1] - t[0] if n > 1 else None)
    good = np.isfinite(t)
    if step is not None and n > 1:
        spacing = np.isclose(np.diff(t), step, rtol=1e-6, atol=1e-9 * max(abs(step), 1.0))
        good[1:] &= spacing
    start = max(0, n - tail)
    block = f["dMdt"][start:n]
    good[start:] &= np.isfinite(block).all(axis=(1, 2))
    keep = n if good.all() else int(np.argmin(good))
    return keep, rows - keep
