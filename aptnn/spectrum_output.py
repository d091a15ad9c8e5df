"""What a :class:`~aptnn.spectrum.Spectrum` writes: the CSV table (every column ``name_unit``) and the PNG plot.

Units: wavenumbers in cm⁻¹; the spectrum, its error, components, member spectra and bands in the spectrum's unit
(cm⁻¹ for α n, cm² for the cross-section); ε', ε'', n, κ dimensionless; α in cm⁻¹.
"""
from __future__ import annotations

import os

import numpy as np

from aptnn import spectrum_checks as checks


def csv_columns(spec) -> tuple[list[str], list[np.ndarray]]:
    """(header names, columns) of ``spec``'s CSV (see :meth:`aptnn.spectrum.Spectrum.write_csv`)."""
    unit = spec.unit_suffix
    names = ["wavenumber_cm-1", spec.quantity, f"{spec.quantity}_err"]
    cols = [spec.wavenumber, spec.total, spec.error]
    for name, values in spec.components.items():
        names.append(f"{name}_{unit}")
        cols.append(values)
    if spec.member_values is not None:
        for name, values in zip(spec.member_series, spec.member_values):
            names.append(f"{name}_{unit}")
            cols.append(values)
        names += [f"model_std_{unit}", f"stat_std_{unit}", f"combined_std_{unit}"]
        cols += [spec.model_std, spec.stat_std, spec.combined_std]
    if spec.dielectric is not None:
        for name, attr in spec.dielectric.COLUMNS:
            names.append(name)
            cols.append(getattr(spec.dielectric, attr))
    return names, cols


def write_csv(spec, path: str | os.PathLike) -> None:
    """Write ``spec`` as CSV to ``path`` (via ``path.part``, so a reader never sees half a table)."""
    names, cols = csv_columns(spec)
    tmp = f"{path}.part"
    np.savetxt(tmp, np.column_stack(cols), delimiter=",", header=",".join(names), comments="", fmt="%.8e")
    os.replace(tmp, path)


def _bands(ax, spec, shown) -> None:
    """Shaded bands: committee → combined (lighter) and model (darker); otherwise the block standard error."""
    x = spec.wavenumber[shown]
    if spec.member_values is not None:
        combined, model = spec.combined_std, spec.model_std
        if np.isfinite(combined).any():
            ax.fill_between(x, (spec.total - combined)[shown], (spec.total + combined)[shown], color="tab:blue",
                            alpha=0.2, lw=0, label=f"± combined (model ⊕ statistical, {spec.n_blocks} blocks)")
        ax.fill_between(x, (spec.total - model)[shown], (spec.total + model)[shown], color="tab:blue", alpha=0.45,
                        lw=0, label=f"± model ({spec.n_members} members × {spec.uncertainty_scale:g})")
    elif np.isfinite(spec.error).any():
        ax.fill_between(x, (spec.total - spec.error)[shown], (spec.total + spec.error)[shown], color="0.6",
                        alpha=0.5, lw=0, label=f"± s.e. ({spec.n_blocks} blocks)")


def _dielectric_panel(ax, spec, shown) -> list[str]:
    """α (cm⁻¹, left axis) and n (right axis) of ``spec.dielectric``; returns the legend labels."""
    d = spec.dielectric
    x = spec.wavenumber[shown]
    (a,) = ax.plot(x, d.alpha[shown], color="tab:red", lw=1.0, label="α(ν̃)")
    ax.set_ylabel("absorption coefficient α / cm⁻¹")
    ax.set_xlabel("wavenumber ν̃ / cm⁻¹")
    twin = ax.twinx()
    (n,) = twin.plot(x, d.n[shown], color="tab:green", lw=1.0, label="n(ν̃)")
    twin.set_ylabel("refractive index n")
    legend = ax.legend([a, n], [a.get_label(), f"n(ν̃), ε∞ = {d.eps_inf:g}"], fontsize=8)
    return [t.get_text() for t in legend.get_texts()]


def plot(spec, path: str | os.PathLike, title: str = "", max_wavenumber: float | None = None) -> dict:
    """PNG of ``spec`` (see :meth:`aptnn.spectrum.Spectrum.plot`); returns what was drawn."""
    if max_wavenumber is not None:
        max_wavenumber = checks.positive_number(max_wavenumber, "maximum wavenumber (--max-wavenumber)", "cm⁻¹")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hi = float(spec.wavenumber[-1]) if max_wavenumber is None else min(max_wavenumber, float(spec.wavenumber[-1]))
    shown = spec.wavenumber <= hi
    panels = 2 if spec.dielectric is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(7, 4 + 3 * (panels - 1)), dpi=120, sharex=True, squeeze=False,
                             layout="constrained" if panels == 2 else None)  # room for the twin axis' label
    ax = axes[0, 0]
    ax.plot(spec.wavenumber[shown], spec.total[shown], "k-", lw=1.2, label=spec.label)
    _bands(ax, spec, shown)
    for name, values in spec.components.items():
        ax.plot(spec.wavenumber[shown], values[shown], lw=0.8, label=name)
    ax.set_ylabel("α(ν̃) n(ν̃) / cm⁻¹" if spec.unit == "cm^-1" else "cross-section σ(ν̃) / cm²")
    ax.set_xlim(0, hi)
    ax.set_title(title)
    legend = ax.legend(fontsize=8)
    info = {"legend": [t.get_text() for t in legend.get_texts()], "panels": panels}
    if panels == 2:
        info["dielectric_legend"] = _dielectric_panel(axes[1, 0], spec, shown)
    else:
        ax.set_xlabel("wavenumber ν̃ / cm⁻¹")
    if panels == 1:
        fig.tight_layout()
    fig.savefig(path)
    info |= {"xlim": tuple(float(v) for v in ax.get_xlim()), "ylim": tuple(float(v) for v in ax.get_ylim())}
    plt.close(fig)
    return info
