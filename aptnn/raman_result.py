"""The result of a Raman calculation (:mod:`aptnn.raman`): spectra per polarisation with their units, the group
decomposition and the committee model band, CSV, peaks, a one-line summary and the plot. Wavenumbers in cm⁻¹;
intensity units in ``RamanSpectrum.unit``; integrals over ν̃ in that unit × cm⁻¹ (e.g. Å⁴·amu⁻¹)."""
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
#: the unit of an integral over ν̃ (cm⁻¹) of a spectrum in each unit
_INTEGRAL = {"A4_amu-1_per_cm-1": "Å⁴·amu⁻¹", "cm2_sr-1_per_cm-1": "cm²·sr⁻¹", "cm-1_sr-1_per_cm-1": "cm⁻¹·sr⁻¹"}
#: line colours of the group (and cross-term) VV curves in the plot
_COLOURS = ("tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


@dataclass
class RamanSpectrum:
    """Raman spectra on ``wavenumber`` (cm⁻¹): ``iso``, ``aniso``, ``vv``, ``vh`` in ``unit`` (see the module
    docstring; the name_unit suffix of CSV columns), ``depolarization`` = VH/VV (dimensionless, NaN where VV ≈ 0),
    ``error``: block standard errors of the four spectra (NaN with 1 block). ``units``: every array's unit.

    ``components``: the group decomposition, ``{name: {"iso", "aniso", "vv", "vh": array}}`` in ``unit``, for each
    group series (``group:O``) and each cross term of two groups (``group:O|group:H``); they add up to the spectra
    of the total when the groups partition the atoms. Committee streams add ``member_values``
    (``{pol: (M, n) array}``, each member's spectra with the same settings) and ``uncertainty_scale``, giving
    :meth:`model_std` (σ_model = scale × std over members, ddof 1) and :meth:`combined_std` (√(σ_model² + σ_stat²),
    σ_stat = ``error``). ``integral_error``: the block standard error of :meth:`integral` per polarisation."""

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
    components: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    member_values: dict[str, np.ndarray] | None = None   # pol → (M, n), unit; None without a committee
    member_series: list[str] = field(default_factory=list)
    uncertainty_scale: float = 1.0                       # dimensionless calibration of the member spread
    integral_error: dict[str, float] = field(default_factory=dict)   # pol → unit × cm⁻¹

    @property
    def n_members(self) -> int:
        return 0 if self.member_values is None else len(self.member_values["vv"])

    def model_std(self, pol: str = "vv") -> np.ndarray | None:
        """σ_model(ν̃) of polarisation ``pol``: uncertainty_scale × std (ddof 1) of the member spectra (unit);
        None without a committee."""
        if self.member_values is None:
            return None
        return self.uncertainty_scale * self.member_values[pol].std(0, ddof=1)

    def combined_std(self, pol: str = "vv") -> np.ndarray | None:
        """√(σ_model² + σ_stat²) of ``pol`` in ``unit`` (NaN where σ_stat is, i.e. with 1 block)."""
        model = self.model_std(pol)
        return None if model is None else np.hypot(model, self.error[pol])

    def integral(self, pol: str = "vv") -> float:
        """∫ spectrum ``pol`` dν̃ over the grid where it is finite (the absolute form is NaN at 0), unit × cm⁻¹."""
        values = getattr(self, pol)
        finite = np.isfinite(values)
        return float(np.trapezoid(values[finite], self.wavenumber[finite]))

    def integral_model_std(self, pol: str = "vv") -> float:
        """Model uncertainty of :meth:`integral`: uncertainty_scale × std (ddof 1) of the members' integrals."""
        if self.member_values is None:
            return float("nan")
        finite = np.isfinite(getattr(self, pol))
        integrals = np.trapezoid(self.member_values[pol][:, finite], self.wavenumber[finite], axis=1)
        return self.uncertainty_scale * float(integrals.std(ddof=1))

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
        """CSV columns ``name_unit``: wavenumber_cm-1, iso/aniso/vv/vh and their ``_err``, depolarization_ratio;
        then per component ``<pol>_<component>_<unit>`` (e.g. ``vv_group:O_A4_amu-1_per_cm-1``,
        ``vh_group:O|group:H_…``); a committee adds ``<pol>_member<k>_<unit>``, ``<pol>_model_std_<unit>`` and
        ``<pol>_combined_std_<unit>`` (the statistical σ is the ``_err`` column), pol = iso, aniso, vv, vh."""
        cols = {"wavenumber_cm-1": self.wavenumber}
        for name in POLARISATIONS:
            cols[f"{name}_{self.unit}"] = getattr(self, name)
            cols[f"{name}_{self.unit}_err"] = self.error[name]
        cols["depolarization_ratio_dimensionless"] = self.depolarization
        for comp, values in self.components.items():
            for pol in POLARISATIONS:
                cols[f"{pol}_{comp}_{self.unit}"] = values[pol]
        if self.member_values is not None:
            for pol in POLARISATIONS:
                for name, values in zip(self.member_series, self.member_values[pol]):
                    cols[f"{pol}_{name}_{self.unit}"] = values
            for pol in POLARISATIONS:
                cols[f"{pol}_model_std_{self.unit}"] = self.model_std(pol)
                cols[f"{pol}_combined_std_{self.unit}"] = self.combined_std(pol)
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
        text = (f"Raman {self.form} ({self.label}{laser}; {self.readable_unit}): VV peaks at "
                f"{', '.join(parts) or 'none'} cm⁻¹")
        if self.member_values is not None:
            stat = (f"± {self.integral_error.get('vv', float('nan')):.3g} (statistical: {self.n_blocks} blocks)"
                    if self.n_blocks > 1 else "(no statistical error with 1 block)")
            text += (f"; VV integral {self.integral():.6g} {_INTEGRAL.get(self.unit, self.unit + '·cm-1')} "
                     f"± {self.integral_model_std():.3g} (model band: {self.n_members} members × "
                     f"{self.uncertainty_scale:g}) {stat}")
        return text

    def _bands(self, ax, shown) -> None:
        """Shaded around VV: committee → combined (lighter) and model (darker) bands; otherwise the block s.e."""
        x, vv = self.wavenumber[shown], self.vv[shown]
        if self.member_values is not None:
            combined, model = self.combined_std("vv")[shown], self.model_std("vv")[shown]
            if np.isfinite(combined).any():
                ax.fill_between(x, vv - combined, vv + combined, color="0.6", alpha=0.35, lw=0,
                                label=f"± combined (model ⊕ statistical, {self.n_blocks} blocks)")
            ax.fill_between(x, vv - model, vv + model, color="0.35", alpha=0.5, lw=0,
                            label=f"± model ({self.n_members} members × {self.uncertainty_scale:g})")
            return
        err = self.error["vv"][shown]
        if np.isfinite(err).any():
            ax.fill_between(x, vv - err, vv + err, color="0.6", alpha=0.5, lw=0,
                            label=f"± s.e. ({self.n_blocks} blocks)")

    def plot(self, path, title: str = "", max_wavenumber: float | None = None) -> dict:
        """PNG: VV (± block s.e., or for a committee ± model and ± combined band), VH, iso and the groups' VV (cross
        terms dotted, shown when at most 3) in the spectra's unit, and the depolarisation ratio ρ = VH/VV on a
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
        self._bands(top, shown)
        top.plot(x, self.vh[shown], color="tab:red", lw=1.0, label="VH (depolarised)")
        top.plot(x, self.iso[shown], color="tab:blue", lw=0.8, ls="--", label="isotropic")
        autos = [c for c in self.components if "|" not in c]
        crosses = [c for c in self.components if "|" in c]
        for k, comp in enumerate(autos + (crosses if len(crosses) <= 3 else [])):   # many cross terms: autos only
            top.plot(x, self.components[comp]["vv"][shown], color=_COLOURS[k % len(_COLOURS)], lw=0.8,
                     ls=":" if "|" in comp else "-", label=f"VV {comp}")
        top.set_ylabel(f"Raman {self.form} / {self.readable_unit}")
        top.set_title(title or f"Raman ({self.label})")
        legend = top.legend(fontsize=8 if len(self.components) < 3 else 7,
                            ncol=2 if len(top.get_legend_handles_labels()[1]) > 6 else 1)
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
