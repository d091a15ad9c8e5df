"""Model-uncertainty bands of IR spectra from committee member series, for dM/dt held in memory (calibration studies).

A committee of M ≥ 2 models gives M dM/dt series of the same trajectory; the spectrum shown is that of their mean
(the committee's prediction), and the spread of the members' own spectra is the model uncertainty:

    σ_model(ν̃) = s · std_k S_k(ν̃)   (ddof 1),   σ_stat(ν̃) = time-block standard error,   σ = √(σ_model² + σ_stat²)

with S_k the spectrum of member k computed with exactly the settings of the mean's (window, lag, padding, quantum
correction, β/V, blocks) and s a calibration factor fitted on validation frames (stream attribute
``uncertainty_scale``). ``aptnn spectrum`` does this for committee stream files
(:func:`aptnn.spectrum.compute_spectrum`); :func:`committee_spectrum` does it for arrays, through the same engine
(:func:`aptnn.spectrum.spectrum_of_runs`).
Units: dM/dt in e·Å/fs, times in fs, temperatures in K, volumes in Å³, wavenumbers in cm⁻¹, spectra in cm⁻¹ (α n) or
cm² (cross-section, no volume).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from aptnn import spectrum_checks as checks
from aptnn import units
from aptnn.errors import InputError
from aptnn.spectrum import QCFS, REQUIRED_WAVENUMBER, WINDOWS, Run, Spectrum, spectrum_of_runs

__all__ = ["committee_spectrum"]

CHUNK = 1 << 18   # frames handed to the correlation at once


def _array_run(label: str, members: np.ndarray, mean: np.ndarray, temperature_K: float,
               volume_A3: float | None) -> Run:
    data = {"total": mean} | {f"member{k}": m for k, m in enumerate(members)}

    def read(names, start, stop):
        for s in range(start, stop, CHUNK):
            e = min(s + CHUNK, stop)
            yield np.stack([data[name][s:e] for name in names], axis=1)

    return Run(label, len(mean), temperature_K, volume_A3, read)


def _as_runs(member_dmdt, mean_dmdt) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Checked lists of (M, n_f, 3) member arrays and (n_f, 3) mean arrays, one per run."""
    many = not (isinstance(member_dmdt, np.ndarray) and member_dmdt.ndim == 3)
    members = [np.asarray(m, dtype=np.float64) for m in (member_dmdt if many else [member_dmdt])]
    if not members:
        raise InputError("no member dM/dt given")
    if mean_dmdt is None:
        means = [m.mean(0) if m.ndim == 3 else None for m in members]
    else:
        means = [np.asarray(m, dtype=np.float64) for m in (mean_dmdt if many else [mean_dmdt])]
        if len(means) != len(members):
            raise InputError(f"{len(means)} mean dM/dt arrays for {len(members)} runs of member dM/dt")
    for k, (m, mean) in enumerate(zip(members, means)):
        if m.ndim != 3 or m.shape[2] != 3 or m.shape[0] < 2:
            raise InputError(f"member dM/dt of run {k} has shape {m.shape}: expected (n_members ≥ 2, n_frames, 3)")
        if m.shape[0] != members[0].shape[0]:
            raise InputError(f"run {k} has {m.shape[0]} members, run 0 {members[0].shape[0]}: the committee must "
                             "be the same in every run")
        if mean.shape != m.shape[1:]:
            raise InputError(f"mean dM/dt of run {k} has shape {mean.shape}, expected {m.shape[1:]}")
        if not (np.isfinite(m).all() and np.isfinite(mean).all()):
            raise InputError(f"NaN or inf in the dM/dt of run {k}")
        if m.shape[1] < 2:
            raise InputError(f"run {k} has {m.shape[1]} frame(s): need at least 2 for a correlation")
    return members, means


def committee_spectrum(member_dmdt, dt_fs: float, temperature_K: float | Sequence[float],
                       volume_A3: float | Sequence[float | None] | None = None, *, mean_dmdt=None,
                       uncertainty_scale: float = 1.0, eps_inf: float | None = None, max_lag_fs: float = 2000.0,
                       window_name: str = "hann", qcf: str = "harmonic", n_blocks: int | None = None,
                       biased: bool = False, remove_mean: bool = True, pad: int = 4,
                       required_wavenumber: float = REQUIRED_WAVENUMBER) -> Spectrum:
    """Spectrum of the committee mean with model and statistical bands, from member dM/dt arrays.

    ``member_dmdt``: array (n_members, n_frames, 3) in e·Å/fs sampled every ``dt_fs`` fs, or a list of such arrays
    (independent runs, pooled per lag as files are); ``mean_dmdt``: the committee's dM/dt (n_frames, 3) (or a list),
    default the mean over members. ``temperature_K`` (K) and ``volume_A3`` (Å³, None: cross-section in cm²): one
    value, or one per run. ``uncertainty_scale``: calibration s of the member spread (dimensionless, > 0).
    ``eps_inf``: also the dielectric route (ε', ε'', n, κ, α; needs a volume). The other settings are those of
    :func:`aptnn.spectrum.compute_spectrum`, and the result equals what ``compute_spectrum`` gives for stream files
    holding the same series (``total``, ``member0…``).

    Returns a :class:`~aptnn.spectrum_result.Spectrum`: ``total`` (spectrum of the mean series), ``member_values``
    (n_members, n_grid) (each member's spectrum), ``model_std`` (σ_model = s × std over members, ddof 1),
    ``stat_std`` (= ``error``, σ_stat from ``n_blocks`` time blocks per run), ``combined_std``
    (√(σ_model² + σ_stat²)), all in cm⁻¹ (α n) or cm² (σ) on ``wavenumber`` (cm⁻¹); ``integral()`` with
    ``integral_model_std()`` and ``integral_error`` (statistical); ``dielectric`` with ``eps_inf``.
    """
    max_lag_fs, _, _, n_blocks, pad = checks.check_options(
        max_lag_fs=max_lag_fs, window_name=window_name, qcf=qcf, temperature_K=None, volume_A3=None,
        n_blocks=n_blocks, pad=pad, chunk=CHUNK, windows=WINDOWS, qcfs=QCFS)
    dt = checks.positive_number(dt_fs, "time step dt_fs", "fs")
    scale = checks.positive_number(uncertainty_scale, "uncertainty_scale")
    if eps_inf is not None:
        eps_inf = checks.eps_inf(eps_inf)
    members, means = _as_runs(member_dmdt, mean_dmdt)
    temps, vols = checks.run_conditions(temperature_K, volume_A3, len(members),
                                        "α n in cm⁻¹ vs cross-section in cm²")
    if eps_inf is not None and vols[0] is None:
        raise InputError("eps_inf (ε∞) needs α n in cm⁻¹, i.e. a volume_A3 (Å³)")
    nyquist = 1.0 / (2.0 * units.C_CM_PER_FS * dt)
    if nyquist < required_wavenumber:
        raise InputError(f"sampled every {dt:g} fs, which represents only up to {nyquist:.0f} cm⁻¹ (not "
                         f"{required_wavenumber:g}): lower required_wavenumber to accept")
    labels = [f"run {k}" for k in range(len(members))]
    max_lag, n_blocks = checks.sizes(labels, [m.shape[1] for m in members], dt, max_lag_fs, n_blocks, pad)
    runs = [_array_run(label, m, mean, t, v) for label, m, mean, t, v in zip(labels, members, means, temps, vols)]
    names = [f"member{k}" for k in range(len(members[0]))]
    return spectrum_of_runs(runs, dt, ["total"], members=names, max_lag=max_lag, n_blocks=n_blocks,
                            window_name=window_name, qcf=qcf, biased=biased, remove_mean=remove_mean, pad=pad,
                            uncertainty_scale=scale, eps_inf=eps_inf)
