"""Writing dM/dt stream files (schema: :mod:`aptnn.io.stream`): one writer per file, flush + fsync + frame count,
failed writes stopped with one error, resume that keeps only intact frames and checks what it continues."""
from __future__ import annotations

import contextlib
import os
import time as _time
import warnings

import h5py
import numpy as np

from aptnn import units
from aptnn._version import __version__
from aptnn.errors import OutputError
from aptnn.io.lock import OutputLock
from aptnn.io.stream import FORMAT, FORMAT_VERSION, intact_frames, model_digest, read_info
from aptnn.keys import VOIGT_NAMES

MIN_FREE_BYTES = 16 * 2**20   # a writer stops cleanly when its file system has less free space
_FAILED: list = []           # writers whose HDF5 file failed (kept alive, never closed)


#: attributes a resumed run must share with the file (value assumed for files without it)
SAME_ON_RESUME = {"apt_every": 1}


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
    * ``polarizability=True`` adds ``/dAdt`` (n_frames, n_series, 6) e·Å²/(V·fs), dα/dt per series in Voigt order
      (xx, yy, zz, yz, xz, xy) for Raman spectra; :meth:`append` then requires finite ``dadt``. A resume must
      agree with the file on it (a file with ``/dAdt`` is only continued with dα/dt, and vice versa).
    """

    def __init__(self, path: str | os.PathLike, series: list[str], dt_fs: float | None = None,
                 temperature_K: float | None = None, volume_A3: float | None = None, natoms: int | None = None,
                 estimator: str | None = None, model: str | None = None, source: str | None = None,
                 resume: bool = False, overwrite: bool = False, flush_every: float | None = None, chunk: int = 4096,
                 state: dict[str, tuple[int, ...]] | None = None, checks: int = 0, kinetic: bool = False,
                 volumes: bool = False, polarizability: bool = False, **extra):
        self.path = str(path)
        self.series = list(series)
        if flush_every is None:  # seconds; APTNN_FLUSH_SECONDS overrides the default of 5
            flush_every = float(os.environ.get("APTNN_FLUSH_SECONDS", 5.0))
        self.flush_every = flush_every
        self.checks, self.kinetic, self.volumes = checks, kinetic, volumes
        self.polarizability = bool(polarizability)
        self.file = None
        self.created = False
        self._broken = False
        self._full = False   # the file system ran low: stopped, and only closing is left
        self._last_flush = _time.monotonic()
        self.lock = OutputLock(self.path)
        try:
            if os.path.exists(self.path) and resume:
                self._open_existing(dt_fs, source, model, extra)
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
        if self.polarizability:
            a = f.create_dataset("dAdt", shape=(0, n, 6), maxshape=(None, n, 6), dtype="f8", chunks=(chunk, n, 6))
            a.attrs["units"] = units.POLARIZABILITY_DERIVATIVE
            a.attrs["components"] = ",".join(VOIGT_NAMES)
            a.attrs["meaning"] = "d(alpha)/dt per series: time derivative of the polarizability, Voigt order"
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
        if self.volumes:
            v = f.create_dataset("volume", shape=(0,), maxshape=(None,), dtype="f8", chunks=(chunk,))
            v.attrs["units"] = units.VOLUME
            v.attrs["meaning"] = "cell volume of each frame (a changing cell: NPT); volume_A3 is their mean"
            extra = dict(extra, volume_source="frame-mean")
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
        self._volume = f.get("volume")
        self._dadt = f.get("dAdt")

    def _open_existing(self, dt_fs, source, model, extra=None):
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
            for key, default in SAME_ON_RESUME.items():
                if extra and key in extra and f.attrs.get(key, default) != extra[key]:
                    raise OutputError(f"cannot resume: file has {key} = {f.attrs.get(key, default)}, this run "
                                      f"{extra[key]} (use the same setting, overwrite, or another output)", self.path)
            if self.checks and "check" not in f:
                raise OutputError("cannot resume: file has no input fingerprints (written by another program or "
                                  "an older aptnn); use overwrite, or another output", self.path)
            if self.polarizability != ("dAdt" in f):
                has = "has" if "dAdt" in f else "has no"
                run = "without" if "dAdt" in f else "with"
                raise OutputError(f"cannot resume: file {has} polarizability derivatives (dAdt), this run is {run} "
                                  "them (use the same setting, overwrite, or another output)", self.path)
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
        for d in (self._dmdt, self._time, self._check, self._kinetic, self._volume, self._dadt):
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
        row = 8 * ((9 if self._dadt is not None else 3) * len(self.series) + 1 + self.checks)
        chunk_rows = self._time.chunks[0] if self._time.chunks else 4096
        pending = row * (self.n_frames - self._flushed_n + 2 * chunk_rows)
        if free < pending + MIN_FREE_BYTES:
            self._full = True
            self.n_frames = self._flushed_n  # drop what no flush confirmed, then close cleanly
            self._resize(self.n_frames)
            raise OutputError(f"disk full: {free / 2**20:.1f} MiB left on its file system (aptnn stops below "
                              f"{MIN_FREE_BYTES / 2**20:.0f} MiB); the file keeps {self._flushed_n} frame(s) and a "
                              "rerun continues it once there is space", self.path)

    def append(self, time_fs, dmdt, check=None, kinetic_K=None, volume_A3=None, dadt=None) -> None:
        """Append frames: ``time_fs`` (n,) in fs, ``dmdt`` (n, n_series, 3) in e·Å/fs, ``check`` (n, K) Å,
        ``kinetic_K`` (n,) K (streams made with ``kinetic=True``), ``volume_A3`` (n,) Å³ (``volumes=True``),
        ``dadt`` (n, n_series, 6) e·Å²/(V·fs), Voigt xx, yy, zz, yz, xz, xy (required, and finite, exactly when the
        stream was made with ``polarizability=True``)."""
        time_fs = np.atleast_1d(np.asarray(time_fs, dtype=np.float64))
        dmdt = np.asarray(dmdt, dtype=np.float64).reshape(len(time_fs), len(self.series), 3)
        if self.checks:
            if check is None:
                raise ValueError("this stream records input fingerprints: pass check")
            check = np.asarray(check, dtype=np.float64).reshape(len(time_fs), self.checks)
        if self._dadt is not None:
            if dadt is None:
                raise ValueError("this stream records polarizability derivatives (dAdt): pass dadt")
            dadt = np.asarray(dadt, dtype=np.float64).reshape(len(time_fs), len(self.series), 6)
            if not np.isfinite(dadt).all():
                bad = int(np.argmax(~np.isfinite(dadt).all(axis=(1, 2))))
                raise ValueError(f"NaN or inf in dadt (row {bad} of this append, frame {self.n_frames + bad})")
        elif dadt is not None:
            raise ValueError("this stream has no polarizability derivatives: create it with polarizability=True")
        n0, n1 = self.n_frames, self.n_frames + len(time_fs)
        with self._writing():
            self._resize(n1)
            self._dmdt[n0:n1] = dmdt
            self._time[n0:n1] = time_fs
            if self.checks:
                self._check[n0:n1] = check
            if self._kinetic is not None:
                self._kinetic[n0:n1] = np.full(len(time_fs), np.nan) if kinetic_K is None else kinetic_K
            if self._volume is not None:
                self._volume[n0:n1] = np.full(len(time_fs), np.nan) if volume_A3 is None else volume_A3
            if self._dadt is not None:
                self._dadt[n0:n1] = dadt
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
