"""The result of a spectrum calculation: :class:`Spectrum` (values, error bars, committee bands, dielectric route).

Units: wavenumbers in cm⁻¹; the spectrum and everything in its unit in cm⁻¹ (α n, with a volume) or cm² (the
cross-section σ = α n V of a system with open boundaries); integrals in cm⁻² or cm. Built by
:func:`aptnn.spectrum.compute_spectrum` (files) and :func:`aptnn.spectrum_bands.committee_spectrum` (arrays).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from aptnn import spectrum_output
from aptnn.dielectric import Dielectric

#: Upper end (cm⁻¹) of plots unless asked otherwise: every fundamental band of molecular liquids lies below it.
DEFAULT_MAX_WAVENUMBER = 4500.0



def peak_wavenumbers(wavenumber: np.ndarray, values: np.ndarray, count: int = 6, min_wavenumber: float = 50.0,
                     min_prominence: float = 0.03) -> list[float]:
    """Wavenumbers (cm⁻¹) of at most ``count`` maxima of a spectrum, ascending: the most prominent of those above
    ``min_wavenumber`` (cm⁻¹) whose prominence is at least ``min_prominence`` × the spectrum's maximum there
    (so a weak band such as water's bend is listed next to a strong stretch, and noise wiggles are not).
    Non-finite values are ignored; IR and Raman spectra use this one definition."""
    sel = (wavenumber >= min_wavenumber) & np.isfinite(values)
    values = values[sel]
    if values.size < 3 or float(np.max(values)) <= 0:
        return []
    idx, props = signal.find_peaks(values, prominence=0)
    keep = props["prominences"] >= min_prominence * float(np.max(values))
    idx, prom = idx[keep], props["prominences"][keep]
    best = idx[np.argsort(prom)[::-1][:count]]
    return sorted(float(v) for v in wavenumber[sel][best])


def series_label(series: list[str]) -> str:
    """What a spectrum is of: one series' name, or "mean of bead0…bead3" for several."""
    if len(series) == 1:
        return series[0]
    if len(series) == 2:
        return f"mean of {series[0]}, {series[1]}"
    return f"mean of {series[0]}…{series[-1]}"

@dataclass
class Spectrum:
    """A spectrum on a wavenumber grid; ``components`` maps names to arrays in the unit of ``total``.

    ``series``: the stream series averaged into ``total`` (e.g. ``["total"]``, ``["centroid"]`` or the beads).
    CSV headers, plot legend and summary name them, so that what is shown is what was computed.

    Committee streams (series ``member0…member<M−1>``) add ``member_values`` (M, n): each member's spectrum with
    the same settings, in the unit of ``total``; ``uncertainty_scale`` calibrates their spread, giving
    :attr:`model_std` (σ_model = scale × std over members, ddof 1), :attr:`stat_std` (σ_stat, the block error) and
    :attr:`combined_std` = √(σ_model² + σ_stat²). ``integral_error``: statistical standard error of
    :meth:`integral` from the blocks. ``dielectric``: ε, n, κ, α from ``total`` (α n, needs a volume) given ε∞.
    """

    wavenumber: np.ndarray                      # cm⁻¹
    total: np.ndarray                           # cm⁻¹ (α n) or cm² (σ)
    error: np.ndarray                           # same unit, standard error from blocks (NaN with 1 block)
    quantity: str                               # "alpha_n_cm-1" or "cross_section_cm2"
    components: dict[str, np.ndarray] = field(default_factory=dict)
    n_blocks: int = 1
    series: list[str] = field(default_factory=list)
    member_values: np.ndarray | None = None     # (M, n), unit of total; None without a committee
    member_series: list[str] = field(default_factory=list)
    uncertainty_scale: float = 1.0              # dimensionless calibration of the member spread
    integral_error: float = float("nan")        # cm⁻² (α n) or cm (σ): block standard error of integral()
    dielectric: Dielectric | None = None

    @property
    def unit(self) -> str:
        return "cm^-1" if self.quantity.endswith("cm-1") else "cm^2"

    @property
    def unit_suffix(self) -> str:
        """The unit as CSV headers write it after the name: ``cm-1`` (α n) or ``cm2`` (σ)."""
        return "cm-1" if self.quantity.endswith("cm-1") else "cm2"

    @property
    def label(self) -> str:
        """What ``total`` is: :func:`series_label` of the series averaged, "total" when unknown."""
        return series_label(self.series) if self.series else "total"

    @property
    def n_members(self) -> int:
        return 0 if self.member_values is None else len(self.member_values)

    @property
    def model_std(self) -> np.ndarray | None:
        """σ_model(ν̃) = uncertainty_scale × standard deviation (ddof 1) of the member spectra; unit of total."""
        if self.member_values is None:
            return None
        return self.uncertainty_scale * self.member_values.std(0, ddof=1)

    @property
    def stat_std(self) -> np.ndarray:
        """σ_stat(ν̃): the time-block standard error (``error``); unit of total."""
        return self.error

    @property
    def combined_std(self) -> np.ndarray | None:
        """√(σ_model² + σ_stat²) in the unit of total (NaN where σ_stat is, i.e. with 1 block)."""
        model = self.model_std
        return None if model is None else np.hypot(model, self.error)

    def integral(self) -> float:
        """∫ spectrum dν̃ over the grid (cm⁻² for α n, cm for σ)."""
        return float(np.trapezoid(self.total, self.wavenumber))

    def integral_model_std(self) -> float:
        """Model uncertainty of :meth:`integral`: uncertainty_scale × std (ddof 1) of the members' integrals."""
        if self.member_values is None:
            return float("nan")
        return self.uncertainty_scale * float(np.trapezoid(self.member_values, self.wavenumber, axis=1).std(ddof=1))

    def peaks(self, count: int = 6, min_wavenumber: float = 50.0, min_prominence: float = 0.03) -> list[float]:
        """Wavenumbers (cm⁻¹) of at most ``count`` maxima, ascending (:func:`peak_wavenumbers`)."""
        return peak_wavenumbers(self.wavenumber, self.total, count, min_wavenumber, min_prominence)

    def summary(self) -> str:
        """One line: quantity, series, peak positions (cm⁻¹) and the integrated intensity (cm⁻² or cm); for a
        committee also its ± model and ± statistical uncertainty, with ε∞ the maximum of α (cm⁻¹)."""
        peaks = ", ".join(f"{p:.0f}" for p in self.peaks()) or "none"
        unit = "cm⁻²" if self.unit == "cm^-1" else "cm"
        text = (f"{self.quantity} ({self.label}): peaks at {peaks} cm⁻¹; integrated intensity "
                f"{self.integral():.6g} {unit}")
        if self.member_values is not None:
            stat = (f"± {self.integral_error:.3g} (statistical: {self.n_blocks} blocks)" if self.n_blocks > 1 else
                    "(no statistical error with 1 block)")
            text += (f" ± {self.integral_model_std():.3g} (model: {self.n_members} members × "
                     f"{self.uncertainty_scale:g}) {stat}")
        if self.dielectric is not None:
            sel = self.wavenumber >= 50.0
            k = int(np.argmax(self.dielectric.alpha[sel]))
            text += (f"; ε∞ {self.dielectric.eps_inf:g}: α max {self.dielectric.alpha[sel][k]:.4g} cm⁻¹ at "
                     f"{self.wavenumber[sel][k]:.0f} cm⁻¹")
        return text

    def write_csv(self, path: str | os.PathLike) -> None:
        """CSV with one header line, every column named ``name_unit``: ``wavenumber_cm-1``, the total
        (``alpha_n_cm-1`` or ``cross_section_cm2``), its standard error (``alpha_n_cm-1_err``), then the
        decomposition columns in the total's unit, e.g. ``group:O_cm-1`` and the cross term ``group:O|group:H_cm-1``.
        A committee adds ``member0_cm-1`` … and ``model_std_cm-1``, ``stat_std_cm-1``, ``combined_std_cm-1`` (cm2
        for cross-sections); ε∞ adds ``eps_real_dimensionless``, ``eps_imag_dimensionless``, ``n_dimensionless``,
        ``kappa_dimensionless``, ``alpha_cm-1``.
        """
        spectrum_output.write_csv(self, path)

    def plot(self, path: str | os.PathLike, title: str = "",
             max_wavenumber: float | None = DEFAULT_MAX_WAVENUMBER) -> dict:
        """PNG of the spectrum (± error band, components) from 0 to ``max_wavenumber`` cm⁻¹ (> 0; None: the whole
        grid, up to the Nyquist wavenumber), capped at the grid's end. The y range fits the data shown. A committee
        draws the combined band (lighter) and the model band (darker) instead of the block error band; with
        ``dielectric`` a second panel shows α (cm⁻¹) and n.

        Returns ``{"xlim": (lo, hi) cm⁻¹, "ylim": (lo, hi), "legend": [labels], "panels": 1 or 2}`` of the figure
        written (and ``"dielectric_legend"`` with 2 panels).
        """
        return spectrum_output.plot(self, path, title, max_wavenumber)
