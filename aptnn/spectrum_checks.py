"""Up-front checks of the spectrum's inputs: options, per-file temperature/volume/time step, sizes.

Every check raises one :class:`~aptnn.errors.InputError` naming the value, its unit and (for file values) the
file, so the Python API and ``aptnn spectrum`` refuse the same inputs with the same message, before any
frame is read. Units: temperatures in K, volumes in Å³, times and lags in fs.
"""
from __future__ import annotations

import numbers
import re
import warnings

import numpy as np

from aptnn.errors import InputError
from aptnn.io.stream import read_chunks, read_time_chunks

#: Largest zero-padded correlation grid, pad × lags + 1 points (8 MiB per series in float64).
MAX_GRID = 1 << 20
#: Time blocks per file when none are asked for (fewer for files under 2 × DEFAULT_BLOCKS frames).
DEFAULT_BLOCKS = 8
#: Series of one committee member: member0, member1, … (each member's own total/centroid dM/dt)
MEMBER = re.compile(r"member(0|[1-9][0-9]*)")


def positive_number(value, what: str, unit: str = "", source: str | None = None) -> float:
    """``value`` as a float that is finite and > 0; otherwise an InputError naming ``what`` (and ``source``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} = {value!r} is not a number", source) from None
    if not np.isfinite(x) or x <= 0:
        raise InputError(f"{what} = {x:g}{unit and ' ' + unit}: must be a finite number > 0", source)
    return x


def run_conditions(temperature_K, volume_A3, n_runs: int, mixed: str) -> tuple[list[float], list[float | None]]:
    """Per-run temperatures (K) and volumes (Å³ or None) from one value or one per run each; ``mixed``: why
    runs with and without a volume cannot be averaged (the error's wording)."""
    try:
        temps = np.broadcast_to(np.asarray(temperature_K, dtype=object), (n_runs,))
        vols = np.broadcast_to(np.asarray(volume_A3, dtype=object), (n_runs,))
    except ValueError:
        raise InputError(f"temperature_K and volume_A3: one value, or one per run ({n_runs})") from None
    temps = [positive_number(t, "temperature_K", "K") for t in temps]
    vols = [None if v is None else positive_number(v, "volume_A3", "Å³") for v in vols]
    if len({v is None for v in vols}) > 1:
        raise InputError(f"runs with and without a volume cannot be averaged ({mixed})")
    return temps, vols


def whole_number(value, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]; floats with a fractional part, bools and NaN are refused."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{what} = {value!r}: must be a whole number ≥ {minimum}")
    if value < minimum or (maximum is not None and value > maximum):
        limit = f"between {minimum} and {maximum}" if maximum is not None else f"≥ {minimum}"
        raise InputError(f"{what} = {value}: must be a whole number {limit}")
    return int(value)


def check_options(*, max_lag_fs, window_name, qcf, temperature_K, volume_A3, n_blocks, pad, chunk,
                  windows, qcfs) -> tuple[float, float | None, float | None, int | None, int]:
    """Checked (max_lag_fs [fs], temperature_K [K] or None, volume_A3 [Å³] or None, n_blocks or None, pad)."""
    if window_name not in windows:
        raise InputError(f"unknown window {window_name!r}; choose from {', '.join(windows)}")
    if qcf not in qcfs:
        raise InputError(f"unknown quantum correction {qcf!r}; choose from {', '.join(qcfs)}")
    max_lag_fs = positive_number(max_lag_fs, "maximum lag (--max-lag)", "fs")
    if temperature_K is not None:
        temperature_K = positive_number(temperature_K, "temperature (--temperature)", "K")
    if volume_A3 is not None:
        volume_A3 = positive_number(volume_A3, "volume (--volume)", "Å³")
    if n_blocks is not None:
        n_blocks = whole_number(n_blocks, "blocks per file (--blocks)")
    pad = whole_number(pad, "zero-padding factor (--pad)", 1, MAX_GRID)
    whole_number(chunk, "chunk (frames read at once)")
    return max_lag_fs, temperature_K, volume_A3, n_blocks, pad


def file_conditions(paths: list[str], infos, temperature_K: float | None,
                    volume_A3: float | None) -> list[tuple[float, float | None]]:
    """(temperature [K], volume [Å³] or None) of each file; explicit values (already checked) override all files.

    A missing or non-finite/non-positive temperature_K or volume_A3 attribute is an error naming the file; so is
    mixing files with a volume (α n in cm⁻¹) and files without one (open boundaries, cross-section in cm²).
    """
    out = []
    for path, info in zip(paths, infos):
        if temperature_K is not None:
            temp = temperature_K
        elif info.temperature_K is None:
            raise InputError("no temperature in the file: pass --temperature (K)", path)
        else:
            temp = positive_number(info.temperature_K, "temperature_K attribute", "K", path)
        if volume_A3 is not None:
            vol = volume_A3
        else:
            vol = None if info.volume_A3 is None else positive_number(info.volume_A3, "volume_A3 attribute", "Å³",
                                                                      path)
        out.append((temp, vol))
    with_v = [p for p, (_, v) in zip(paths, out) if v is not None]
    without = [p for p, (_, v) in zip(paths, out) if v is None]
    if with_v and without:
        raise InputError(f"no volume_A3 (open boundaries: cross-section in cm²) while {with_v[0]} has one "
                         "(α n in cm⁻¹): the two cannot be averaged; pass --volume (Å³) to use one volume for "
                         "all files, or give files of one kind", without[0])
    return out


def time_step(path: str, info) -> float:
    """The file's time step in fs (attribute dt_fs, else the first two times); finite and > 0."""
    if info.dt_fs is not None:
        return positive_number(info.dt_fs, "time step (dt_fs attribute)", "fs", path)
    for t, _ in read_chunks(path, chunk=2, stop=2):
        if len(t) < 2:
            raise InputError("fewer than 2 frames: no time step", path)
        return positive_number(t[1] - t[0], "time step (from the 'time' column)", "fs", path)
    raise InputError("no frames", path)


def frame_count(path: str, dt: float, chunk: int) -> int:
    """Uniform spacing check of the 'time' column; returns the frame count. A gap or changed step names the frame."""
    count, last = 0, None
    for t in read_time_chunks(path, chunk=chunk):
        steps = np.diff(np.concatenate([[last], t]) if last is not None else t)
        bad = np.flatnonzero(~np.isclose(steps, dt, rtol=1e-6, atol=1e-9 * max(abs(dt), 1.0)))
        if len(bad):
            frame = count + int(bad[0]) + (0 if last is not None else 1)
            raise InputError(f"non-uniform time: step {steps[bad[0]]:.6g} fs instead of {dt:.6g} fs "
                             f"(spectra need a uniform time step)", path, frame)
        count += len(t)
        last = t[-1]
    if count < 2:
        raise InputError(f"{count} frame(s): need at least 2 for a correlation", path)
    return count


def sampling(paths: list[str], infos, required_wavenumber: float, chunk: int, max_lag_fs: float,
             n_blocks: int | None, pad: int) -> tuple[float, list[int], int, int]:
    """The files' common time step (fs; its Nyquist wavenumber must reach ``required_wavenumber`` cm⁻¹), their
    frame counts, and the maximum lag (frames) and number of blocks (:func:`sizes`)."""
    from aptnn import units

    dt = time_step(paths[0], infos[0])
    nyquist = 1.0 / (2.0 * units.C_CM_PER_FS * dt)
    if nyquist < required_wavenumber:
        raise InputError(f"sampled every {dt:g} fs, which represents only up to {nyquist:.0f} cm⁻¹ (not "
                         f"{required_wavenumber:g}): bands above alias into the spectrum; sample more often, or "
                         f"accept the range explicitly (--max-wavenumber {int(nyquist)})", paths[0])
    frames = []
    for path, info in zip(paths, infos):
        step = time_step(path, info)
        if not np.isclose(step, dt, rtol=1e-6):
            raise InputError(f"time step {step} fs differs from {dt} fs of {paths[0]}", path)
        frames.append(frame_count(path, step, chunk))
    max_lag, n_blocks = sizes(paths, frames, dt, max_lag_fs, n_blocks, pad)
    return dt, frames, max_lag, n_blocks


def sizes(paths: list[str], frames: list[int], dt: float, max_lag_fs: float, n_blocks: int | None,
          pad: int) -> tuple[int, int]:
    """(lags L, blocks per file): L = max_lag_fs/dt frames, at most the shortest file's frames − 1.

    Each block needs at least 2 frames: ``n_blocks`` None gives DEFAULT_BLOCKS, or half the frames of the
    shortest file if fewer; more blocks than that when asked for is an error, as are a lag below one time step
    and a padded grid pad·L + 1 larger than :data:`MAX_GRID` points.
    """
    short = int(np.argmin(frames))
    if n_blocks is None:
        n_blocks = min(DEFAULT_BLOCKS, frames[short] // 2)
    for path, n in zip(paths, frames):
        if n_blocks > n // 2:
            raise InputError(f"{n_blocks} blocks (--blocks) for {n} frames: each block needs at least 2 frames, "
                             f"so use at most {n // 2} blocks", path)
    lag = int(round(min(max_lag_fs / dt, frames[short] - 1)))
    if lag < 1:
        raise InputError(f"maximum lag (--max-lag) {max_lag_fs:g} fs is shorter than one time step ({dt:g} fs)")
    if pad * lag + 1 > MAX_GRID:
        raise InputError(f"padded grid of {pad * lag + 1} points (pad {pad} × {lag} lags + 1) exceeds the limit "
                         f"of {MAX_GRID}: use a smaller --pad or --max-lag")
    return lag, n_blocks


def is_member(name: str) -> bool:
    """True for a committee member series ``member<k>``."""
    return MEMBER.fullmatch(name) is not None


def member_names(series: list[str], source: str | None = None) -> list[str]:
    """The committee member series of a stream, ``member0…member<M−1>`` in index order ([] without a committee).

    Indices that do not run 0…M−1 (a gap, a repeat) are an InputError naming ``source``.
    """
    found = sorted((int(MEMBER.fullmatch(s).group(1)), s) for s in series if is_member(s))
    if [k for k, _ in found] != list(range(len(found))):
        raise InputError(f"committee member series {[s for _, s in found]}: expected member0…member{len(found) - 1}",
                         source)
    return [s for _, s in found]


def committee(paths: list[str], infos) -> list[str]:
    """Member series shared by every file; files whose committees differ in size are one InputError."""
    lists = [member_names(info.series, path) for path, info in zip(paths, infos)]
    for path, names in zip(paths[1:], lists[1:]):
        if len(names) != len(lists[0]):
            raise InputError(f"a committee of {len(names)} member series while {paths[0]} has {len(lists[0])}: "
                             "model bands need the same committee in every file; give files of one committee, or "
                             "pass --no-members to skip the model band", path)
    return lists[0]


def band_scale(paths: list[str], infos, override) -> float:
    """Calibration factor of the model band (dimensionless): ``override`` (--model-band-scale) if given, else the
    files' ``uncertainty_scale`` attribute (1.0 where absent), which must be finite, > 0 and the same in every file."""
    if override is not None:
        return positive_number(override, "model band scale (--model-band-scale)")
    values = []
    for path, info in zip(paths, infos):
        value = info.extra.get("uncertainty_scale")
        values.append(1.0 if value is None else positive_number(np.asarray(value).item()
                                                                if np.size(value) == 1 else value,
                                                                "uncertainty_scale attribute", "", path))
    for path, value in zip(paths[1:], values[1:]):
        if not np.isclose(value, values[0], rtol=1e-9, atol=0):
            raise InputError(f"uncertainty_scale {value:g} differs from {values[0]:g} of {paths[0]}: pass "
                             "--model-band-scale to use one calibration for all files", path)
    return values[0]


def eps_inf(value) -> float:
    """ε∞ (--eps-inf, dimensionless) as a float ≥ 1: the electronic permittivity above the IR bands."""
    x = positive_number(value, "ε∞ (--eps-inf)")
    if x < 1:
        raise InputError(f"ε∞ (--eps-inf) = {x:g}: must be ≥ 1 (the electronic permittivity above the IR bands, "
                         "e.g. 1.77 for water)")
    return x


def band_members(paths: list[str], member_series: list[str], averaged: list[str]) -> list[str]:
    """The committee member series a model band is made of (IR and Raman): none with a single member, and a
    warning when the band (members' totals or centroids) sits beside a spectrum of other series."""
    if len(member_series) == 1:
        warnings.warn(f"{paths[0]}: a single committee member series ({member_series[0]}): no model band (it needs "
                      "at least 2 members)", stacklevel=3)
        return []
    if member_series and averaged not in (["total"], ["centroid"]):
        warnings.warn(f"the model band comes from the member series (each member's total or centroid), while the "
                      f"spectrum is of {', '.join(averaged)}", stacklevel=3)
    return member_series
