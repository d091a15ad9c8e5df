"""IR spectra from dM/dt stream files, in absolute units, with decomposition and block error bars.

With a volume V the absorption coefficient times refractive index (paper eq. 2, harmonic QCF),

    α(ω) n(ω) = πβ / (3 V c ε₀) · (1/2π) ∫ dt e^{-iωt} ⟨Ṁ(0)·Ṁ(t)⟩          [cm⁻¹],

and without a volume (clusters, gas phase) the absorption cross-section of the whole system, σ = α n V
[cm²]. Other quantum correction factors Q(x), x = βħω, multiply the harmonic result by
Q(x)(1 − e^{−x})/x: ``standard`` Q = 2/(1 + e^{−x}), ``schofield`` Q = e^{x/2}, ``none`` Q = 1 (the
classical correlation put into the quantum line shape unchanged). With ``harmonic`` the result equals the
purely classical expression. The windowed correlation is transformed by a DCT-I, so that the trapezoidal
integral of the spectrum over ω ∈ [0, π/Δt] is exactly πβ⟨|Ṁ|²⟩/(6Vcε₀) for any window with w(0) = 1.
Several files are independent runs: the correlation is pooled per lag (pair-count weights) and each file's
share is transformed with its own β, V, Q and finite-difference response. Inputs are checked up front
(:mod:`aptnn.spectrum_checks`).

Committee streams end with the series ``member0…member<M−1>``, each member's own total (or centroid) dM/dt. They
are never averaged into the total; their spectra are computed in the same pass with the same settings and give the
model band σ_model(ω) = s × std over members (ddof 1), s the stream attribute ``uncertainty_scale`` (calibrated on
validation frames; 1 when absent), next to the statistical block error σ_stat and √(σ_model² + σ_stat²)
(:class:`~aptnn.spectrum_result.Spectrum`; arrays: :mod:`aptnn.spectrum_bands`). Given ε∞, α n is split into ε', ε'',
n, κ and α by Kramers–Kronig (:mod:`aptnn.dielectric`).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from scipy import fft, signal

from aptnn import dielectric as dielectric_route
from aptnn import spectrum_checks as checks
from aptnn import units
from aptnn.correlation import CorrelationAccumulator
from aptnn.errors import InputError
from aptnn.io.stream import read_chunks, read_info
from aptnn.spectrum_result import DEFAULT_MAX_WAVENUMBER, Spectrum

__all__ = ["DEFAULT_MAX_WAVENUMBER", "QCFS", "REQUIRED_WAVENUMBER", "Run", "Spectrum", "WINDOWS", "compute_spectrum",
           "file_run", "line_shape", "prefactor", "qcf_factor", "select_series", "spectrum_of_runs", "window"]

REQUIRED_WAVENUMBER = 4000.0   # cm⁻¹ a spectrum must represent unless the user asks for less (O–H stretch)
QCFS = ("harmonic", "standard", "schofield", "none")
WINDOWS = ("hann", "hamming", "blackman", "gaussian", "none")


def window(name: str, n_lags: int) -> np.ndarray:
    """Right half of a symmetric window over lags 0…n_lags−1, w(0) = 1."""
    if name not in WINDOWS:
        raise InputError(f"unknown window {name!r}; choose from {', '.join(WINDOWS)}")
    if name == "none":
        return np.ones(n_lags)
    if name == "gaussian":
        full = signal.windows.gaussian(2 * n_lags - 1, std=n_lags / 3)
    else:
        full = signal.get_window(name, 2 * n_lags + 1, fftbins=False)[1:-1]
    return full[n_lags - 1:] / full[n_lags - 1]


def qcf_factor(name: str, omega_rad_per_fs: np.ndarray, temperature_K: float) -> np.ndarray:
    """Multiplier of the harmonic-QCF spectrum for quantum correction ``name`` (1 at ω = 0)."""
    if name not in QCFS:
        raise InputError(f"unknown quantum correction {name!r}; choose from {', '.join(QCFS)}")
    x = units.HBAR_SI * np.asarray(omega_rad_per_fs) / units.FS_TO_S / (units.KB_SI * temperature_K)
    x = np.where(x == 0, 1e-300, x)
    if name == "harmonic":
        return np.ones_like(x)
    if name == "standard":
        return 2 / x * np.tanh(x / 2)
    if name == "schofield":
        return 2 / x * np.sinh(x / 2)
    return -np.expm1(-x) / x


def line_shape(corr: np.ndarray, dt_fs: float, win: np.ndarray, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(ω [rad/fs], (1/2π)∫dt e^{-iωt} C(t) w(t)) for C at lags 0…L (last axis), by DCT-I. Units: C·fs."""
    n_lags = corr.shape[-1]
    data = corr * win
    size = pad * (n_lags - 1) + 1
    if size > n_lags:
        data = np.concatenate([data, np.zeros(data.shape[:-1] + (size - n_lags,))], axis=-1)
    shape = fft.dct(data, type=1, axis=-1) * dt_fs / (2 * np.pi)
    omega = np.pi * np.arange(size) / ((size - 1) * dt_fs)
    return omega, shape


def prefactor(temperature_K: float, volume_A3: float | None) -> tuple[float, str]:
    """πβ/(3Vcε₀) turning (1/2π)∫e^{-iωt}⟨Ṁ·Ṁ⟩ in (e·Å/fs)²·fs into cm⁻¹ (or πβ/(3cε₀) into cm²)."""
    beta = 1.0 / (units.KB_SI * temperature_K)
    to_si = units.DMDT_TO_SI**2 * units.FS_TO_S
    if volume_A3 is None:
        return np.pi * beta / (3 * units.C_SI * units.EPSILON0_SI) * to_si * units.M2_TO_CM2, "cross_section_cm2"
    volume = volume_A3 * units.A3_TO_M3
    return (np.pi * beta / (3 * volume * units.C_SI * units.EPSILON0_SI) * to_si / units.M_TO_CM,
            "alpha_n_cm-1")


def select_series(available: list[str], patterns: list[str] | None) -> list[str]:
    """Series averaged into the total: the given glob patterns, else total, else centroid, else the first.

    Committee member series (``member<k>``) are never averaged in unless a pattern names them itself (starts with
    ``member``, e.g. ``member2`` or ``member*``): ``*`` matches everything else.
    """
    if patterns:
        chosen = [s for s in available if any(fnmatch.fnmatchcase(s, p) and (not checks.is_member(s) or
                                                                          p.startswith("member")) for p in patterns)]
        if not chosen:
            raise InputError(f"no series matches {patterns}; the file has {available}")
        return chosen
    for name in ("total", "centroid"):
        if name in available:
            return [name]
    return [next((s for s in available if not checks.is_member(s)), available[0])]


@dataclass
class Run:
    """One independent trajectory for :func:`spectrum_of_runs`: ``read(names, start, stop)`` yields consecutive
    chunks (n, len(names), 3) of dM/dt (e·Å/fs) of frames start…stop−1; ``temperature_K`` in K, ``volume_A3`` in Å³
    (None: open boundaries, cross-section); ``label`` names it in messages (a file path)."""

    label: str
    n_frames: int
    temperature_K: float
    volume_A3: float | None
    read: Callable[[list[str], int, int], Iterable[np.ndarray]]


def file_run(path: str, n_frames: int, temperature_K: float, volume_A3: float | None, chunk: int) -> Run:
    """A :class:`Run` reading the stream file ``path`` ``chunk`` frames at a time."""
    def read(names, start, stop):
        for _, block in read_chunks(path, names, chunk, start, stop):
            yield block
    return Run(path, n_frames, temperature_K, volume_A3, read)


def compute_spectrum(paths: list[str], *, max_lag_fs: float = 2000.0, window_name: str = "hann",
                     qcf: str = "harmonic", temperature_K: float | None = None, volume_A3: float | None = None,
                     series: list[str] | None = None, decompose: bool = True, n_blocks: int | None = None,
                     biased: bool = False, remove_mean: bool = True, pad: int = 4,
                     chunk: int = 1 << 18, required_wavenumber: float = REQUIRED_WAVENUMBER,
                     members: bool = True, model_band_scale: float | None = None,
                     eps_inf: float | None = None) -> Spectrum:
    """IR spectrum from one or several stream files (independent trajectories, correlations averaged per lag).

    ``max_lag_fs`` (fs, > 0) is capped at the shortest file's length; ``n_blocks`` time blocks per file (each of
    at least 2 frames; default 8, fewer for files under 16 frames) give the error bars; ``pad`` (≥ 1)
    zero-pads the correlation to pad·lags + 1 points.
    Several files are independent runs: their lag sums are pooled per lag and each file keeps its own β/V
    (attributes ``temperature_K`` in K, ``volume_A3`` in Å³), quantum correction and finite-difference
    response, so the result is the pair-count-weighted average of the single-file spectra, whatever the file
    order. ``temperature_K`` (K) or ``volume_A3`` (Å³) given here override those of every file. Files with a
    volume (α n, cm⁻¹) and without one (cross-section, cm²) cannot be mixed. Every input is checked before
    the frames are read; a bad one raises :class:`InputError`.
    ``series``: glob patterns of series averaged into the total (e.g. ``bead*``); group series
    (``group:*``) give auto and cross columns that add up to the total when the groups partition the atoms.
    ``required_wavenumber`` (cm⁻¹): the sampling must represent at least this much (Nyquist 1/(2cΔt)); files
    sampled too coarsely (e.g. every 10th step) are refused rather than aliased — lower it explicitly to accept.
    ``members``: for committee streams (series ``member0…``, the same M in every file) also each member's spectrum,
    in the same pass and with the same settings, for the model band (:class:`Spectrum`); ``model_band_scale``
    overrides the files' ``uncertainty_scale`` attribute (dimensionless, default 1). ``eps_inf`` (ε∞ ≥ 1, needs a
    volume): also ε', ε'', n, κ and α (cm⁻¹) by Kramers–Kronig (:mod:`aptnn.dielectric`).
    """
    max_lag_fs, temperature_K, volume_A3, n_blocks, pad = checks.check_options(
        max_lag_fs=max_lag_fs, window_name=window_name, qcf=qcf, temperature_K=temperature_K,
        volume_A3=volume_A3, n_blocks=n_blocks, pad=pad, chunk=chunk, windows=WINDOWS, qcfs=QCFS)
    if eps_inf is not None:
        eps_inf = checks.eps_inf(eps_inf)
    if model_band_scale is not None:
        model_band_scale = checks.positive_number(model_band_scale, "model band scale (--model-band-scale)")
    if not paths:
        raise InputError("no stream file given")
    paths = [str(p) for p in paths]
    infos = [read_info(p) for p in paths]
    first = infos[0]
    member_series = checks.committee(paths, infos) if members else []
    compared = [[s for s in info.series if members or not checks.is_member(s)] for info in infos]
    for p, info, names in zip(paths, infos, compared):
        if names != compared[0]:  # without members, files may differ in their committee
            raise InputError(f"series {info.series} differ from {first.series} of {paths[0]}", p)
    conditions = checks.file_conditions(paths, infos, temperature_K, volume_A3)
    if eps_inf is not None and conditions[0][1] is None:
        raise InputError("--eps-inf (ε∞) needs α n in cm⁻¹, i.e. a volume: the files have no volume_A3 (open "
                         "boundaries give a cross-section); pass --volume (Å³)", paths[0])
    scale = checks.band_scale(paths, infos, model_band_scale) if len(member_series) > 1 else 1.0
    dt, frames, max_lag, n_blocks = checks.sampling(paths, infos, required_wavenumber, chunk, max_lag_fs,
                                                    n_blocks, pad)
    averaged = select_series(first.series, series)
    member_series = checks.band_members(paths, member_series, averaged)
    groups = [s for s in first.series if s.startswith("group:")] if decompose else []
    runs = [file_run(p, n, t, v, chunk) for p, n, (t, v) in zip(paths, frames, conditions)]
    return spectrum_of_runs(runs, dt, averaged, groups=groups, members=member_series, max_lag=max_lag,
                            n_blocks=n_blocks, window_name=window_name, qcf=qcf, biased=biased,
                            remove_mean=remove_mean, pad=pad, uncertainty_scale=scale, eps_inf=eps_inf)


def spectrum_of_runs(runs: list[Run], dt_fs: float, averaged: list[str], *, groups: list[str] = (),
                     members: list[str] = (), max_lag: int, n_blocks: int, window_name: str = "hann",
                     qcf: str = "harmonic", biased: bool = False, remove_mean: bool = True, pad: int = 4,
                     uncertainty_scale: float = 1.0, eps_inf: float | None = None) -> Spectrum:
    """The engine of :func:`compute_spectrum` on checked inputs: one pass over each run's frames.

    ``averaged``: series averaged into the total; ``groups``: decomposition series (auto and cross terms);
    ``members``: committee member series (auto terms only, ≥ 2 for a model band). ``dt_fs`` in fs, ``max_lag`` in
    frames, ``n_blocks`` per run. Correlations of every series are accumulated together; each run's share is
    transformed with its own β, V and quantum correction.
    """
    averaged, groups, members = list(averaged), list(groups), list(members)
    names = averaged + groups + members
    n_avg, n_grp = len(averaged), len(groups)
    autos = [(k, k) for k in range(len(names))]
    cross = [(a, b) for a in range(n_avg, n_avg + n_grp) for b in range(a + 1, n_avg + n_grp)]
    acc = accumulate(CorrelationAccumulator(autos + cross, max_lag), runs, names, n_blocks, remove_mean)
    win = window(window_name, max_lag + 1)
    parts = acc.correlation_parts(biased)
    block_corr = acc.correlation(biased, blocks=True)[:, :n_avg].mean(1)
    block_of = np.asarray(acc.block_trajectory)
    shapes, blocks = 0.0, np.empty((len(block_of), pad * max_lag + 1))
    for f, run in enumerate(runs):  # each run its own β/V and Q
        omega, shape = line_shape(parts[f], dt_fs, win, pad)
        factor = prefactor(run.temperature_K, run.volume_A3)[0] * qcf_factor(qcf, omega, run.temperature_K)
        shapes = shapes + shape * factor
        blocks[block_of == f] = line_shape(block_corr[block_of == f], dt_fs, win, pad)[1] * factor
    quantity = prefactor(runs[0].temperature_K, runs[0].volume_A3)[1]
    wavenumber = units.omega_to_wavenumber(omega)
    total = shapes[:n_avg].mean(0)
    nb = len(blocks)
    error = blocks.std(0, ddof=1) / np.sqrt(nb) if nb > 1 else np.full_like(total, np.nan)
    integral_error = (float(np.trapezoid(blocks, wavenumber, axis=1).std(ddof=1) / np.sqrt(nb)) if nb > 1
                      else float("nan"))
    components = {g: shapes[n_avg + k] for k, g in enumerate(groups)}
    for c, (a, b) in enumerate(cross):
        components[f"{names[a]}|{names[b]}"] = shapes[len(autos) + c]
    spec = Spectrum(wavenumber, total, error, quantity, components, nb, averaged,
                    member_values=shapes[n_avg + n_grp:len(autos)] if len(members) > 1 else None,
                    member_series=members if len(members) > 1 else [], uncertainty_scale=float(uncertainty_scale),
                    integral_error=integral_error)
    if eps_inf is not None:
        spec.dielectric = dielectric_route.from_alpha_n(wavenumber, total, eps_inf)
    return spec


def accumulate(acc: CorrelationAccumulator, runs: list[Run], names: list[str], n_blocks: int, remove_mean: bool,
               transform=None) -> CorrelationAccumulator:
    """Feed the series ``names`` of every run, in ``n_blocks`` time blocks per run, to ``acc`` (each run's mean
    removed if ``remove_mean``; ``transform(chunk)`` maps chunks to the accumulator's columns)."""
    for run in runs:
        mean = _mean(run, names) if remove_mean else 0.0
        acc.start_trajectory()
        bounds = np.linspace(0, run.n_frames, n_blocks + 1).astype(int)
        for b in range(n_blocks):
            if b:
                acc.new_block()
            for block in run.read(names, bounds[b], bounds[b + 1]):
                acc.add(block - mean if transform is None else transform(block - mean))
    return acc


def _mean(run: Run, names: list[str]) -> np.ndarray:
    total, n = 0.0, 0
    for block in run.read(names, 0, run.n_frames):
        total = total + block.sum(0)
        n += len(block)
    return total / n
