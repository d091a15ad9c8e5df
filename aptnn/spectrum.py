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
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import fft, signal

from aptnn import spectrum_checks as checks
from aptnn import units
from aptnn.correlation import CorrelationAccumulator
from aptnn.errors import InputError
from aptnn.io.stream import read_chunks, read_info

REQUIRED_WAVENUMBER = 4000.0   # cm⁻¹ a spectrum must represent unless the user asks for less (O–H stretch)
QCFS = ("harmonic", "standard", "schofield", "none")
WINDOWS = ("hann", "hamming", "blackman", "gaussian", "none")


#: Upper end (cm⁻¹) of plots unless asked otherwise: every fundamental band of molecular liquids lies below it.
DEFAULT_MAX_WAVENUMBER = 4500.0


@dataclass
class Spectrum:
    """A spectrum on a wavenumber grid; ``components`` maps names to arrays in the unit of ``total``.

    ``series``: the stream series averaged into ``total`` (e.g. ``["total"]``, ``["centroid"]`` or the beads).
    CSV headers, plot legend and summary name them, so that what is shown is what was computed.
    """

    wavenumber: np.ndarray                      # cm⁻¹
    total: np.ndarray                           # cm⁻¹ (α n) or cm² (σ)
    error: np.ndarray                           # same unit, standard error from blocks (NaN with 1 block)
    quantity: str                               # "alpha_n_cm-1" or "cross_section_cm2"
    components: dict[str, np.ndarray] = field(default_factory=dict)
    n_blocks: int = 1
    series: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return "cm^-1" if self.quantity.endswith("cm-1") else "cm^2"

    @property
    def unit_suffix(self) -> str:
        """The unit as CSV headers write it after the name: ``cm-1`` (α n) or ``cm2`` (σ)."""
        return "cm-1" if self.quantity.endswith("cm-1") else "cm2"

    @property
    def label(self) -> str:
        """What ``total`` is: one series' name, "mean of bead0…bead3" for several, "total" when unknown."""
        if not self.series:
            return "total"
        if len(self.series) == 1:
            return self.series[0]
        if len(self.series) == 2:
            return f"mean of {self.series[0]}, {self.series[1]}"
        return f"mean of {self.series[0]}…{self.series[-1]}"

    def integral(self) -> float:
        """∫ spectrum dν̃ over the grid (cm⁻² for α n, cm for σ)."""
        return float(np.trapezoid(self.total, self.wavenumber))

    def peaks(self, count: int = 6, min_wavenumber: float = 50.0, min_prominence: float = 0.03) -> list[float]:
        """Wavenumbers (cm⁻¹) of at most ``count`` maxima, ascending: the most prominent of those above
        ``min_wavenumber`` (cm⁻¹) whose prominence is at least ``min_prominence`` × the spectrum's maximum there
        (so a weak band such as water's bend is listed next to a strong stretch, and noise wiggles are not)."""
        sel = self.wavenumber >= min_wavenumber
        values = self.total[sel]
        idx, props = signal.find_peaks(values, prominence=0)
        scale = float(np.max(values)) if values.size else 0.0
        keep = props["prominences"] >= min_prominence * scale
        idx, prom = idx[keep], props["prominences"][keep]
        best = idx[np.argsort(prom)[::-1][:count]]
        return sorted(float(v) for v in self.wavenumber[sel][best])

    def summary(self) -> str:
        """One line: quantity, series, peak positions (cm⁻¹) and the integrated intensity (cm⁻² or cm)."""
        peaks = ", ".join(f"{p:.0f}" for p in self.peaks()) or "none"
        unit = "cm⁻²" if self.unit == "cm^-1" else "cm"
        return (f"{self.quantity} ({self.label}): peaks at {peaks} cm⁻¹; integrated intensity "
                f"{self.integral():.6g} {unit}")

    def write_csv(self, path: str | os.PathLike) -> None:
        """CSV with one header line, every column named ``name_unit``: ``wavenumber_cm-1``, the total
        (``alpha_n_cm-1`` or ``cross_section_cm2``), its standard error (``alpha_n_cm-1_err``), then the
        decomposition columns in the total's unit, e.g. ``group:O_cm-1`` and the cross term ``group:O|group:H_cm-1``.
        """
        names = ["wavenumber_cm-1", self.quantity, f"{self.quantity}_err"]
        cols = [self.wavenumber, self.total, self.error]
        for name, values in self.components.items():
            names.append(f"{name}_{self.unit_suffix}")
            cols.append(values)
        tmp = f"{path}.part"
        np.savetxt(tmp, np.column_stack(cols), delimiter=",", header=",".join(names), comments="", fmt="%.8e")
        os.replace(tmp, path)

    def plot(self, path: str | os.PathLike, title: str = "",
             max_wavenumber: float | None = DEFAULT_MAX_WAVENUMBER) -> dict:
        """PNG of the spectrum (± error band, components) from 0 to ``max_wavenumber`` cm⁻¹ (> 0; None: the whole
        grid, up to the Nyquist wavenumber), capped at the grid's end. The y range fits the data shown.

        Returns ``{"xlim": (lo, hi) cm⁻¹, "ylim": (lo, hi), "legend": [labels]}`` of the figure written.
        """
        if max_wavenumber is not None:
            max_wavenumber = checks.positive_number(max_wavenumber, "maximum wavenumber (--max-wavenumber)",
                                                    "cm⁻¹")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        hi = float(self.wavenumber[-1]) if max_wavenumber is None else min(max_wavenumber, float(self.wavenumber[-1]))
        shown = self.wavenumber <= hi
        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
        ax.plot(self.wavenumber[shown], self.total[shown], "k-", lw=1.2, label=self.label)
        if np.isfinite(self.error).any():
            ax.fill_between(self.wavenumber[shown], (self.total - self.error)[shown],
                            (self.total + self.error)[shown], color="0.6", alpha=0.5, lw=0,
                            label=f"± s.e. ({self.n_blocks} blocks)")
        for name, values in self.components.items():
            ax.plot(self.wavenumber[shown], values[shown], lw=0.8, label=name)
        label = "α(ν̃) n(ν̃) / cm⁻¹" if self.unit == "cm^-1" else "cross-section σ(ν̃) / cm²"
        ax.set_xlabel("wavenumber ν̃ / cm⁻¹")
        ax.set_ylabel(label)
        ax.set_xlim(0, hi)
        ax.set_title(title)
        legend = ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        info = {"xlim": tuple(float(v) for v in ax.get_xlim()), "ylim": tuple(float(v) for v in ax.get_ylim()),
                "legend": [t.get_text() for t in legend.get_texts()]}
        plt.close(fig)
        return info


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
                     series: list[str] | None = None, decompose: bool = True, n_blocks: int | None = None,
                     biased: bool = False, remove_mean: bool = True, pad: int = 4,
                     chunk: int = 1 << 18, required_wavenumber: float = REQUIRED_WAVENUMBER) -> Spectrum:
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
    """
    max_lag_fs, temperature_K, volume_A3, n_blocks, pad = checks.check_options(
        max_lag_fs=max_lag_fs, window_name=window_name, qcf=qcf, temperature_K=temperature_K,
        volume_A3=volume_A3, n_blocks=n_blocks, pad=pad, chunk=chunk, windows=WINDOWS, qcfs=QCFS)
    if not paths:
        raise InputError("no stream file given")
    paths = [str(p) for p in paths]
    infos = [read_info(p) for p in paths]
    first = infos[0]
    for p, info in zip(paths, infos):
        if info.series != first.series:
            raise InputError(f"series {info.series} differ from {first.series} of {paths[0]}", p)
    conditions = checks.file_conditions(paths, infos, temperature_K, volume_A3)
    dt = checks.time_step(paths[0], first)
    nyquist = 1.0 / (2.0 * units.C_CM_PER_FS * dt)
    if nyquist < required_wavenumber:
        raise InputError(f"sampled every {dt:g} fs, which represents only up to {nyquist:.0f} cm⁻¹ (not "
                         f"{required_wavenumber:g}): bands above alias into the spectrum; sample more often, or "
                         f"accept the range explicitly (--max-wavenumber {int(nyquist)})", paths[0])
    frames = []
    for path, info in zip(paths, infos):
        step = checks.time_step(path, info)
        if not np.isclose(step, dt, rtol=1e-6):
            raise InputError(f"time step {step} fs differs from {dt} fs of {paths[0]}", path)
        frames.append(checks.frame_count(path, step, chunk))
    max_lag, n_blocks = checks.sizes(paths, frames, dt, max_lag_fs, n_blocks, pad)
    averaged = select_series(first.series, series)
    groups = [s for s in first.series if s.startswith("group:")] if decompose else []
    names = averaged + groups
    pairs = [(k, k) for k in range(len(names))]
    cross = [(a, b) for a in range(len(averaged), len(names)) for b in range(a + 1, len(names))]
    acc = CorrelationAccumulator(pairs + cross, max_lag)
    for path, total_frames in zip(paths, frames):
        mean = _mean(path, names, chunk) if remove_mean else 0.0
        acc.start_trajectory()
        bounds = np.linspace(0, total_frames, n_blocks + 1).astype(int)
        for b in range(n_blocks):
            if b:
                acc.new_block()
            for _, block in read_chunks(path, names, chunk, bounds[b], bounds[b + 1]):
                acc.add(block - mean)
    win = window(window_name, max_lag + 1)
    n_avg = len(averaged)
    parts = acc.correlation_parts(biased)
    block_corr = acc.correlation(biased, blocks=True)[:, :n_avg].mean(1)
    block_of = np.asarray(acc.block_trajectory)
    shapes, blocks = 0.0, np.empty((len(block_of), pad * max_lag + 1))
    for f, (info, (temperature, volume)) in enumerate(zip(infos, conditions)):  # each file its own β/V and Q
        omega, shape = line_shape(parts[f], dt, win, pad)
        factor = prefactor(temperature, volume)[0] * qcf_factor(qcf, omega, temperature)
        shapes = shapes + shape * factor
        blocks[block_of == f] = line_shape(block_corr[block_of == f], dt, win, pad)[1] * factor
    quantity = prefactor(*conditions[0])[1]
    total = shapes[:n_avg].mean(0)
    nb = len(blocks)
    error = blocks.std(0, ddof=1) / np.sqrt(nb) if nb > 1 else np.full_like(total, np.nan)
    components = {}
    for k, g in enumerate(groups):
        components[f"{g}"] = shapes[n_avg + k]
    for c, (a, b) in enumerate(cross):
        components[f"{names[a]}|{names[b]}"] = shapes[len(pairs) + c]
    return Spectrum(units.omega_to_wavenumber(omega), total, error, quantity, components, nb, averaged)


def _mean(path: str, names: list[str], chunk: int) -> np.ndarray:
    total, n = 0.0, 0
    for _, block in read_chunks(path, names, chunk):
        total = total + block.sum(0)
        n += len(block)
    return total / n
