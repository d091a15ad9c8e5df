"""The result of a Raman calculation (:mod:`aptnn.raman`): spectra per polarisation with their units, CSV,
peaks, a one-line summary and the plot. Wavenumbers in cm⁻¹; intensity units in ``RamanSpectrum.unit``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from aptnn import spectrum_checks as checks
from aptnn.spectrum_result import peak_wavenumbers, series_label

POLARISATIONS = ("iso", "aniso", "vv", "vh")
#: the plot shows ρ only where VV is at least this fraction of its maximum
RHO_SHOWN = 0.02
#: the CSV unit suffixes as the summary and plot write them
_READABLE = {"A4_amu-1_per_cm-1": "Å⁴·amu⁻¹ per cm⁻¹", "cm2_sr-1_per_cm-1": "cm²·sr⁻¹ per cm⁻¹",
             "cm-1_sr-1_per_cm-1": "cm⁻¹·sr⁻¹ per cm⁻¹"}


@dataclass
class RamanSpectrum:
    """Raman spectra on ``wavenumber`` (cm⁻¹): ``iso``, ``aniso``, ``vv``, ``vh`` in ``unit`` (see the module
    docstring; the name_unit suffix of CSV columns), ``depolarization`` = VH/VV (dimensionless, NaN where VV ≈ 0),
    ``error``: block standard errors of the four spectra (NaN with 1 block). ``units``: every array's unit."""

    wavenumber: np.ndarray
    iso: np.ndarray
    aniso: np.ndarray
    vv: np.ndarray
    vh: np.ndarray
    depolarization: np.ndarray
    error: dict[str, np.ndarray]
    form: str
    quantity: str
    unit: str
    laser_nm: float | None = None
    n_blocks: int = 1
    units: dict[str, str] = field(default_factory=dict)
    series: list[str] = field(default_factory=lambda: ["total"])

    @property
    def label(self) -> str:
        """What the spectra are of: one series' name, or "mean of bead0…bead3" for several."""
        return series_label(self.series)

    @property
    def readable_unit(self) -> str:
        """The unit as text (Å⁴·amu⁻¹ per cm⁻¹, cm²·sr⁻¹ per cm⁻¹ or cm⁻¹·sr⁻¹ per cm⁻¹)."""
        return _READABLE.get(self.unit, self.unit)

    @property
    def unpolarized(self) -> np.ndarray:
        """VV + VH (polarised excitation, no analyser): integrates to the Raman activity/45 per band (reduced)."""
        return self.vv + self.vh

    def columns(self) -> dict[str, np.ndarray]:
        """CSV columns ``name_unit``: wavenumber_cm-1, iso/aniso/vv/vh and their ``_err``, depolarization_ratio."""
        cols = {"wavenumber_cm-1": self.wavenumber}
        for name in POLARISATIONS:
            cols[f"{name}_{self.unit}"] = getattr(self, name)
            cols[f"{name}_{self.unit}_err"] = self.error[name]
        cols["depolarization_ratio_dimensionless"] = self.depolarization
        return cols

    def write_csv(self, path) -> None:
        """One header line (the :meth:`columns` names), then one row per wavenumber (written to ``path.part``
        and renamed, so a reader never sees half a table)."""
        cols = self.columns()
        tmp = f"{path}.part"
        np.savetxt(tmp, np.column_stack(list(cols.values())), delimiter=",", header=",".join(cols), comments="")
        os.replace(tmp, path)

    def peaks(self, name: str = "vv", count: int = 6, min_wavenumber: float = 50.0,
              min_prominence: float = 0.03) -> list[float]:
        """Wavenumbers (cm⁻¹) of at most ``count`` maxima of spectrum ``name``, ascending: the most prominent above
        ``min_wavenumber`` (cm⁻¹) with a prominence of at least ``min_prominence`` × its maximum there (as
        IR: :func:`aptnn.spectrum_result.peak_wavenumbers`)."""
        return peak_wavenumbers(self.wavenumber, getattr(self, name), count, min_wavenumber, min_prominence)

    def summary(self) -> str:
        """One line: form and unit, the series, the VV peaks (cm⁻¹) with the depolarisation ratio ρ at each."""
        parts = []
        for p in self.peaks():
            k = int(np.argmin(np.abs(self.wavenumber - p)))
            rho = self.depolarization[k]
            parts.append(f"{p:.0f} (ρ {rho:.2f})" if np.isfinite(rho) else f"{p:.0f}")
        laser = f", laser {self.laser_nm:g} nm" if self.form == "absolute" else ""
        return (f"Raman {self.form} ({self.label}{laser}; {self.readable_unit}): VV peaks at "
                f"{', '.join(parts) or 'none'} cm⁻¹")

    def plot(self, path, title: str = "", max_wavenumber: float | None = None) -> dict:
        """PNG: VV (± block s.e.), VH and iso in the spectra's unit, and the depolarisation ratio ρ = VH/VV on a
        second panel (where VV ≥ RHO_SHOWN × its maximum; the 3/4 limit dotted), on wavenumbers up to
        ``max_wavenumber`` (cm⁻¹). Returns what was drawn."""
        if max_wavenumber is not None:
            max_wavenumber = checks.positive_number(max_wavenumber, "maximum wavenumber (--max-wavenumber)", "cm⁻¹")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        end = float(self.wavenumber[-1])
        hi = end if max_wavenumber is None else min(max_wavenumber, end)
        shown = self.wavenumber <= hi
        x = self.wavenumber[shown]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), dpi=120, sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
        top.plot(x, self.vv[shown], "k-", lw=1.2, label="VV (polarised)")
        err = self.error["vv"][shown]
        if np.isfinite(err).any():
            top.fill_between(x, self.vv[shown] - err, self.vv[shown] + err, color="0.6", alpha=0.5, lw=0,
                             label=f"± s.e. ({self.n_blocks} blocks)")
        top.plot(x, self.vh[shown], color="tab:red", lw=1.0, label="VH (depolarised)")
        top.plot(x, self.iso[shown], color="tab:blue", lw=0.8, ls="--", label="isotropic")
        top.set_ylabel(f"Raman {self.form} / {self.readable_unit}")
        top.set_title(title or f"Raman ({self.label})")
        legend = top.legend(fontsize=8)
        strong = self.vv[shown] >= RHO_SHOWN * np.nanmax(self.vv[shown])   # ρ of noise is no information
        bottom.plot(x, np.where(strong, self.depolarization[shown], np.nan), color="tab:green", lw=1.0,
                    label=f"ρ where VV ≥ {RHO_SHOWN:.0%} of its maximum")
        bottom.axhline(0.75, color="0.5", lw=0.8, ls=":")
        bottom.legend(fontsize=8, loc="upper right")
        bottom.set_ylim(-0.05, 1.0)
        bottom.set_ylabel("ρ = VH/VV")
        bottom.set_xlabel("wavenumber ν̃ / cm⁻¹")
        bottom.set_xlim(0, hi)
        fig.tight_layout()
        fig.savefig(path)
        info = {"legend": [t.get_text() for t in legend.get_texts()], "panels": 2,
                "xlim": tuple(float(v) for v in top.get_xlim())}
        plt.close(fig)
        return info
