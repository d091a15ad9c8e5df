"""IR spectra from dM/dt stream files, in absolute units, with decomposition and block error bars.

With a volume V the absorption coefficient times refractive index (paper eq. 2, harmonic QCF),

    α(ω) n(ω) = πβ / (3 V c ε₀) · (1/2π) ∫ dt e^{-iωt} ⟨Ṁ(0)·Ṁ(t)⟩          [cm⁻¹],

and without a volume (clusters, gas phase) the absorption cross-section of the whole system, σ = α n V
[cm²]. Other quantum correction factors Q(x), x = βħω, multiply the harmonic result by
Q(x)(1 − e^{−x})/x: ``standard`` Q = 2/(1 + e^{−x}), ``schofield`` Q = e^{x/2}, ``none`` Q = 1 (the
classical correlation put into the quantum line shape unchanged). With ``harmonic`` the result equals the
purely classical expression. The windowed correlation is transformed by a DCT-I, so that the trapezoidal
integral of the spectrum over ω ∈ [0, π/Δt] is exactly πβ⟨|Ṁ|²⟩/(6Vcε₀) for any window with w(0) = 1.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import fft, signal

from aptnn import units
from aptnn.correlation import CorrelationAccumulator
from aptnn.errors import InputError
from aptnn.io.stream import read_chunks, read_info, read_time_chunks

QCFS = ("harmonic", "standard", "schofield", "none")
WINDOWS = ("hann", "hamming", "blackman", "gaussian", "none")


@dataclass
class Spectrum:
    """A spectrum on a wavenumber grid; ``columns`` maps names to arrays, ``units`` names their unit."""

    wavenumber: np.ndarray                      # cm⁻¹
    total: np.ndarray                           # cm⁻¹ (α n) or cm² (σ)
    error: np.ndarray                           # same unit, standard error from blocks (NaN with 1 block)
    quantity: str                               # "alpha_n_cm-1" or "cross_section_cm2"
    components: dict[str, np.ndarray] = field(default_factory=dict)
    n_blocks: int = 1

    @property
    def unit(self) -> str:
        return "cm^-1" if self.quantity.endswith("cm-1") else "cm^2"

    def integral(self) -> float:
        """∫ spectrum dν̃ over the grid (cm⁻² for α n, cm for σ)."""
        return float(np.trapezoid(self.total, self.wavenumber))

    def peaks(self, count: int = 3, min_wavenumber: float = 50.0) -> list[float]:
        """Wavenumbers (cm⁻¹) of the ``count`` most prominent maxima, ascending."""
        sel = self.wavenumber >= min_wavenumber
        idx, props = signal.find_peaks(self.total[sel], prominence=0)
        best = idx[np.argsort(props["prominences"])[::-1][:count]]
        return sorted(float(v) for v in self.wavenumber[sel][best])

    def write_csv(self, path: str | os.PathLike) -> None:
        """CSV: wavenumber_cm-1, the total, its ± error, then decomposition columns (same unit)."""
        names = ["wavenumber_cm-1", self.quantity, f"{self.quantity}_err"]
        cols = [self.wavenumber, self.total, self.error]
        for name, values in self.components.items():
            names.append(f"{name} [{self.unit}]")
            cols.append(values)
        tmp = f"{path}.part"
        np.savetxt(tmp, np.column_stack(cols), delimiter=",", header=",".join(names), comments="", fmt="%.8e")
        os.replace(tmp, path)

    def plot(self, path: str | os.PathLike, title: str = "", max_wavenumber: float | None = None) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
        ax.plot(self.wavenumber, self.total, "k-", lw=1.2, label="total")
        if np.isfinite(self.error).any():
            ax.fill_between(self.wavenumber, self.total - self.error, self.total + self.error, color="0.6",
                            alpha=0.5, lw=0, label=f"± s.e. ({self.n_blocks} blocks)")
        for name, values in self.components.items():
            ax.plot(self.wavenumber, values, lw=0.8, label=name)
        label = "α(ν̃) n(ν̃) / cm⁻¹" if self.unit == "cm^-1" else "cross-section σ(ν̃) / cm²"
        ax.set_xlabel("wavenumber ν̃ / cm⁻¹")
        ax.set_ylabel(label)
        ax.set_xlim(0, max_wavenumber or self.wavenumber[-1])
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


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
    """Series averaged into the total: the given glob patterns, else total, else centroid, else the first."""
    if patterns:
        chosen = [s for s in available if any(fnmatch.fnmatchcase(s, p) for p in patterns)]
        if not chosen:
            raise InputError(f"no series matches {patterns}; the file has {available}")
        return chosen
    for name in ("total", "centroid"):
        if name in available:
            return [name]
    return [available[0]]


def compute_spectrum(paths: list[str], *, max_lag_fs: float = 2000.0, window_name: str = "hann",
                     qcf: str = "harmonic", temperature_K: float | None = None, volume_A3: float | None = None,
                     series: list[str] | None = None, decompose: bool = True, n_blocks: int = 8,
                     biased: bool = False, remove_mean: bool = True, pad: int = 4,
                     chunk: int = 1 << 18) -> Spectrum:
    """IR spectrum from one or several stream files (independent trajectories, correlations averaged per lag).

    ``series``: glob patterns of series averaged into the total (e.g. ``bead*``); group series
    (``group:*``) give auto and cross columns that add up to the total when the groups partition the atoms.
    """
    if not paths:
        raise InputError("no stream file given")
    infos = [read_info(p) for p in paths]
    first = infos[0]
    for p, info in zip(paths, infos):
        if info.series != first.series:
            raise InputError(f"series {info.series} differ from {first.series} of {paths[0]}", p)
    dt = _time_step(paths[0], first)
    temperature = temperature_K if temperature_K is not None else first.temperature_K
    if temperature is None:
        raise InputError("no temperature in the file: pass --temperature (K)", paths[0])
    volume = volume_A3 if volume_A3 is not None else first.volume_A3
    averaged = select_series(first.series, series)
    groups = [s for s in first.series if s.startswith("group:")] if decompose else []
    names = averaged + groups
    pairs = [(k, k) for k in range(len(names))]
    cross = [(a, b) for a in range(len(averaged), len(names)) for b in range(a + 1, len(names))]
    acc = None
    for path, info in zip(paths, infos):
        step = _time_step(path, info)
        if not np.isclose(step, dt, rtol=1e-6):
            raise InputError(f"time step {step} fs differs from {dt} fs of {paths[0]}", path)
        total_frames = _check_time_and_count(path, step, chunk)
        max_lag = min(int(round(max_lag_fs / dt)), total_frames - 1)
        if acc is None:
            acc = CorrelationAccumulator(pairs + cross, max_lag)
        elif max_lag < acc.max_lag:
            raise InputError(f"only {total_frames} frames: shorter than the maximum lag of the other files", path)
        mean = _mean(path, names, chunk) if remove_mean else 0.0
        acc.start_trajectory()
        bounds = np.linspace(0, total_frames, n_blocks + 1).astype(int)
        for b in range(n_blocks):
            if b:
                acc.new_block()
            for _, block in read_chunks(path, names, chunk, bounds[b], bounds[b + 1]):
                acc.add(block - mean)
    corr = acc.correlation(biased)
    block_corr = acc.correlation(biased, blocks=True)
    win = window(window_name, acc.max_lag + 1)
    omega, shapes = line_shape(corr, dt, win, pad)
    _, block_shapes = line_shape(block_corr, dt, win, pad)
    scale, quantity = prefactor(temperature, volume)
    factor = scale * qcf_factor(qcf, omega, temperature) / finite_difference_response(first, omega)
    n_avg = len(averaged)
    total = shapes[:n_avg].mean(0) * factor
    blocks = block_shapes[:, :n_avg].mean(1) * factor
    nb = len(blocks)
    error = blocks.std(0, ddof=1) / np.sqrt(nb) if nb > 1 else np.full_like(total, np.nan)
    components = {}
    for k, g in enumerate(groups):
        components[f"{g}"] = shapes[n_avg + k] * factor
    for c, (a, b) in enumerate(cross):
        components[f"{names[a]}|{names[b]}"] = shapes[len(pairs) + c] * factor
    return Spectrum(units.omega_to_wavenumber(omega), total, error, quantity, components, nb)


def finite_difference_response(info, omega_rad_per_fs: np.ndarray) -> np.ndarray:
    """sinc²(ωh) power response of central-difference velocities (step h in fs), 1 for velocities from the file.

    The spectrum is divided by it; where it falls below 0.05 (near ω = π/h) it is held at 0.05.
    """
    h = info.extra.get("fd_step_fs")
    if info.extra.get("velocity_source") != "central-difference" or h is None:
        return np.ones_like(omega_rad_per_fs)
    return np.maximum(np.sinc(omega_rad_per_fs * float(h) / np.pi) ** 2, 0.05)


def _time_step(path: str, info) -> float:
    if info.dt_fs is not None:
        return float(info.dt_fs)
    for t, _ in read_chunks(path, chunk=2, stop=2):
        if len(t) < 2:
            raise InputError("fewer than 2 frames: no time step", path)
        return float(t[1] - t[0])
    raise InputError("no frames", path)


def _check_time_and_count(path: str, dt: float, chunk: int) -> int:
    """Uniform spacing check; returns the frame count. A gap or changed step names the frame."""
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


def _mean(path: str, names: list[str], chunk: int) -> np.ndarray:
    total, n = 0.0, 0
    for _, block in read_chunks(path, names, chunk):
        total = total + block.sum(0)
        n += len(block)
    return total / n
