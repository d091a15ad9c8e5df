"""Raman spectra (isotropic, anisotropic, VV, VH, depolarisation ratio) from dα/dt series.

Input: dα/dt, the time derivative of the system's polarisability α (e·Å²/V; dα/dt in e·Å²/(V·fs)), per frame as
Voigt components (xx, yy, zz, yz, xz, xy) or as 3×3 tensors (only the symmetric part counts: non-resonant Raman).

Invariants (Long, *The Raman Effect*, Wiley 2002; McQuarrie, *Statistical Mechanics*): the mean
polarisability a = tr α/3 and the traceless anisotropic part β = α − a·I, with the anisotropy
    γ² = ½[(α_xx−α_yy)² + (α_yy−α_zz)² + (α_zz−α_xx)²] + 3(α_xy² + α_yz² + α_xz²) = (3/2)·Tr[β·β].
Time correlations of the derivatives (Berne & Pecora, *Dynamic Light Scattering*; for MD: Thomas, Brehm,
Kirchner et al., PCCP 15, 6608 (2013); Putrino & Parrinello, PRL 88, 176401 (2002)):
    C_iso(t) = ⟨ȧ(0)·ȧ(t)⟩,      C_aniso(t) = (3/2)·⟨Tr[β̇(0)·β̇(t)]⟩   (C_aniso(0) = ⟨γ̇²⟩),
    VV = iso + (4/45)·aniso,      VH = (3/45)·aniso,      ρ = VH/VV ∈ [0, 3/4],
the orientational averages of ⟨α̇_zz α̇_zz⟩ and ⟨α̇_zx α̇_zx⟩ for linearly polarised light (Long's (45a² + 4γ²)/45 and
3γ²/45). The often written (2/15)·⟨Tr[β̇β̇]⟩ is the same anisotropic part of VV: (4/45)·(3/2) = 2/15. ρ does not
depend on ``form`` (it is taken from the reduced spectra; NaN where VV ≤ 1e-9·max VV).

Derivatives: FT⟨α̇(0)α̇(t)⟩ = ω²·FT⟨α(0)α(t)⟩, so the classical spectral density of α is S_cl = FT⟨α̇α̇⟩/ω², and the
harmonic quantum correction S_q = x/(1 − e^{−x})·S_cl (x = βħω, β = 1/k_BT) gives the reduced spectrum
R = 4πc·ω(1 − e^{−x})·S_q/ħ (Shuker & Gammon, PRL 25, 222 (1970): the measured Stokes intensity divided by the
laser factor (ν̃₀ − ν̃)⁴ and the Bose factor (1 − e^{−x})⁻¹, times ν̃), computed from the derivative correlation as
    R_p(ν̃) = 4πc·β·(1/2π)∫dt e^{−iωt} w(t) C_p(t) · Q_f(x)      [Å⁴·amu⁻¹ per cm⁻¹],   p = iso, aniso,
(the windowed DCT-I of :func:`aptnn.spectrum.line_shape`) with ω = 2πcν̃, dα/dt as polarisability volumes α/(4πε₀)
(Å³/fs), k_BT in amu·Å²/fs², Q_f the multiplier of :func:`aptnn.spectrum.qcf_factor` (1 for ``harmonic``, which
makes R the classical 4πcβ·FT⟨α̇α̇⟩; ``standard``, ``schofield``, ``none`` multiply it exactly as they do the IR
spectrum). A harmonic normal mode Q_k (mass-weighted, amu^½·Å) gives a band whose integral ∫R dν̃ is a'_k² (iso)
or γ'_k² (aniso), a' = ∂a/∂Q_k: 45·(VV + VH) integrates to the Raman activity 45a'² + 7γ'² (Å⁴/amu) of
quantum-chemistry codes; over the whole grid, ∫R_iso dν̃ = β⟨ȧ²⟩ exactly (classical, harmonic QCF).

``form="reduced"``: R_p as above (no laser or Bose factor). ``form="absolute"``: the Stokes differential cross-section
per wavenumber (Long's Placzek result for a harmonic band with a'² → R_p; cf. Thomas et al. 2013) for the
excitation wavenumber ν̃₀ = 1/λ (``laser_nm``)
    d²σ_p/(dΩ dν̃) = (2π)⁴·(ν̃₀ − ν̃)⁴ · h/(8π²cν̃) · [1 − e^{−hcν̃/k_BT}]⁻¹ · R_p(ν̃)     [cm²·sr⁻¹ per cm⁻¹],
of the whole system, or divided by the volume V (``volume_A3``): the scattering coefficient in cm⁻¹·sr⁻¹ per cm⁻¹.
It is 0 for ν̃ ≥ ν̃₀ and NaN at ν̃ = 0 (the Rayleigh line is not represented).

Several runs (a list of arrays) are independent trajectories: correlations pooled per lag as in
:mod:`aptnn.spectrum`, each run's share transformed with its own β, V and factors. Correlation, windows, padding, block
errors and checks are those of the IR spectrum (:mod:`aptnn.correlation`, :mod:`aptnn.spectrum`).

Group decomposition and committee band as for IR (:func:`aptnn.spectrum.compute_spectrum`): each ``group:<name>``
series gives its own spectra and every pair of groups g, h the cross term g|h from the symmetrised correlations
⟨ġ_k(0)ḣ_k(t)⟩ + ⟨ḣ_k(0)ġ_k(t)⟩ of each invariant component k, so that groups and cross terms add up to the total (iso,
aniso, hence VV and VH) when the groups partition the atoms. Committee member series ``member0…member<M−1>`` (each
member's own total dα/dt) give each member's spectra and the model band σ_model = s × std over members (ddof 1),
s the stream attribute ``uncertainty_scale`` (1 when absent).

Stream files (:mod:`aptnn.io.stream`) carry dα/dt as the optional dataset ``/dAdt`` (n_frames, n_series, 6), Voigt
order, e·Å²/(V·fs): :func:`compute_raman` reads it as :func:`aptnn.spectrum.compute_spectrum` reads ``/dMdt``
(``aptnn spectrum --raman``).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from aptnn import spectrum_checks as checks
from aptnn import units
from aptnn.correlation import CorrelationAccumulator
from aptnn.errors import InputError
from aptnn.io.stream import read_chunks, read_info
from aptnn.keys import VOIGT
from aptnn.raman_result import POLARISATIONS, RamanSpectrum  # noqa: F401 (re-exported)
from aptnn.spectrum import (
    QCFS,
    REQUIRED_WAVENUMBER,
    WINDOWS,
    Run,
    accumulate,
    line_shape,
    qcf_factor,
    select_series,
    window,
)

__all__ = ["FORMS", "POLARISATIONS", "VOIGT", "RamanSpectrum", "absolute_factor", "as_voigt", "compute_raman",
           "invariant_components", "raman_of_runs", "raman_spectrum"]

FORMS = ("reduced", "absolute")
CHUNK = 1 << 18
#: rows: iso, aniso, VV, VH as combinations of the (iso, aniso) spectra
_MIX = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 4.0 / 45.0], [0.0, 3.0 / 45.0]])
_UNITS = {"reduced": ("reduced_raman", "A4_amu-1_per_cm-1"),
          "absolute": ("raman_cross_section", "cm2_sr-1_per_cm-1"),
          "absolute_volume": ("raman_scattering_coefficient", "cm-1_sr-1_per_cm-1")}
def as_voigt(dadt, label: str = "dα/dt") -> np.ndarray:
    """(n, 6) Voigt (xx, yy, zz, yz, xz, xy) from (n, 6) or (n, 3, 3) (symmetric part), float64, finite, n ≥ 2."""
    arr = np.asarray(dadt, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[1:] == (3, 3):
        arr = np.stack([(arr[:, i, j] + arr[:, j, i]) / 2 for i, j in VOIGT], axis=1)
    elif not (arr.ndim == 2 and arr.shape[1] == 6):
        raise InputError(f"{label} has shape {arr.shape}: expected (n_frames, 6) Voigt (xx, yy, zz, yz, xz, xy) "
                         "or (n_frames, 3, 3)")
    if not np.isfinite(arr).all():
        raise InputError(f"NaN or inf in {label}")
    if len(arr) < 2:
        raise InputError(f"{label} has {len(arr)} frame(s): need at least 2 for a correlation")
    return arr


def invariant_components(voigt: np.ndarray) -> np.ndarray:
    """(..., 6): ȧ = tr/3, then five components g with Σg² = γ̇² = (3/2)·Tr[β̇β̇] (an orthogonal basis of traceless
    symmetric tensors), so that Σ_k g_k(0)g_k(t) = (3/2)·Tr[β̇(0)β̇(t)] for every rotation of the frame. Input units."""
    xx, yy, zz, yz, xz, xy = np.moveaxis(voigt, -1, 0)
    r3 = np.sqrt(3.0)
    return np.stack([(xx + yy + zz) / 3, r3 / 2 * (xx - yy), (xx + yy - 2 * zz) / 2, r3 * yz, r3 * xz, r3 * xy],
                    axis=-1)


def absolute_factor(wavenumber, temperature_K: float, laser_nm: float, volume_A3: float | None = None) -> np.ndarray:
    """(2π)⁴(ν̃₀−ν̃)⁴·h/(8π²cν̃)·[1−e^{−hcν̃/k_BT}]⁻¹ (/V): reduced (Å⁴·amu⁻¹ per cm⁻¹) → absolute (cm²·sr⁻¹ per cm⁻¹,
    or cm⁻¹·sr⁻¹ per cm⁻¹ with ``volume_A3`` in Å³). 0 for ν̃ ≥ ν̃₀ = 1/λ, NaN at ν̃ = 0."""
    nu = np.asarray(wavenumber, dtype=np.float64)
    nu0 = 1.0 / (laser_nm * units.NM_TO_CM)
    omega_si = 2 * np.pi * units.C_SI * nu * units.M_TO_CM                             # rad/s
    with np.errstate(divide="ignore", invalid="ignore"):
        x = units.HBAR_SI * omega_si / (units.KB_SI * temperature_K)
        bose = units.HBAR_SI / (2 * omega_si * -np.expm1(-x))                          # ħ/(2ω)·(n+1): kg·m²
        shift = (2 * np.pi * np.clip(nu0 - nu, 0, None) * units.M_TO_CM) ** 4          # m⁻⁴
        reduced_si = units.ANGSTROM_TO_M**4 / units.AMU_KG / units.M_TO_CM             # (Å⁴/amu·cm) → m⁴/kg·m
        out = np.where(nu > 0, shift * bose * reduced_si * units.M3_TO_CM3, np.nan)
    return out if volume_A3 is None else out / (volume_A3 * units.A3_TO_M3 * units.M3_TO_CM3)


def _reduced_factor(omega: np.ndarray, temperature_K: float, qcf: str) -> np.ndarray:
    """4πc·β·Q_f(x) with dα/dt → Å³/fs and k_BT in amu·Å²/fs²: (1/2π)∫e^{−iωt}C → Å⁴·amu⁻¹ per cm⁻¹."""
    beta = units.AMU_A2_PER_FS2_TO_J / (units.KB_SI * temperature_K)
    return (4 * np.pi * units.C_CM_PER_FS * beta * units.POLARIZABILITY_TO_A3**2
            * qcf_factor(qcf, omega, temperature_K))


def _pick(n_avg: int, firsts: list[int], n_pairs: int) -> np.ndarray:
    """(2·Q, n_pairs): rows (iso, aniso) of the quantities from the accumulator's pairs (6 per series or series pair,
    one per Voigt invariant component): the total, the mean over the first ``n_avg`` series, then one quantity per
    entry of ``firsts``, the index of its first pair."""
    parts = np.array([[1.0, 0, 0, 0, 0, 0], [0, 1.0, 1.0, 1.0, 1.0, 1.0]])   # iso: component 0; aniso: 1…5
    pick = np.zeros((1 + len(firsts), 2, n_pairs))
    for s in range(n_avg):
        pick[0, :, 6 * s:6 * s + 6] = parts / n_avg
    for q, first in enumerate(firsts, 1):
        pick[q, :, first:first + 6] = parts
    return pick.reshape(-1, n_pairs)


def raman_of_runs(runs: list[Run], dt_fs: float, *, max_lag: int, n_blocks: int, window_name: str = "hann",
                  qcf: str = "harmonic", biased: bool = False, remove_mean: bool = True, pad: int = 4,
                  form: str = "reduced", laser_nm: float | None = None, series: Sequence[str] = ("total",),
                  groups: Sequence[str] = (), members: Sequence[str] = (),
                  uncertainty_scale: float = 1.0) -> RamanSpectrum:
    """Engine on checked inputs: ``run.read(names, start, stop)`` yields (n, len(names), 6) Voigt dα/dt
    (e·Å²/(V·fs)); the spectra are averaged over ``series`` (e.g. the beads, as the IR total).

    ``groups``: decomposition series (``group:<name>``): each group's auto spectra and the cross terms g|h of every
    pair (the symmetrised ⟨ġ(0)·ḣ(t)⟩ + ⟨ḣ(0)·ġ(t)⟩ of each invariant component, as IR's), which add up to the total
    when the groups partition the atoms. ``members``: committee member series (auto spectra only; ≥ 2 give the model
    band, scaled by ``uncertainty_scale``, dimensionless). ``dt_fs`` in fs, ``max_lag`` in frames, ``n_blocks`` per
    run; each run keeps its own temperature (K), volume (Å³ or None) and factors; correlations are pooled per lag
    (pair-count weights) as for IR. One pass over each run's frames.
    """
    series, groups, members = list(series), list(groups), list(members)
    names = series + groups + members
    n_avg, n_grp, n_mem = len(series), len(groups), len(members)
    group_pairs = [(a, b) for a in range(n_grp) for b in range(a + 1, n_grp)]
    autos = [(k, k) for k in range(6 * len(names))]
    cross = [(6 * (n_avg + a) + c, 6 * (n_avg + b) + c) for a, b in group_pairs for c in range(6)]
    acc = accumulate(CorrelationAccumulator(autos + cross, max_lag), runs, names, n_blocks, remove_mean,
                     lambda chunk: invariant_components(chunk).reshape(len(chunk), -1, 1))
    win = window(window_name, max_lag + 1)
    firsts = ([6 * (n_avg + k) for k in range(n_grp)] + [len(autos) + 6 * c for c in range(len(group_pairs))]
              + [6 * (n_avg + n_grp + m) for m in range(n_mem)])   # groups, cross terms, members
    pick = _pick(n_avg, firsts, len(autos) + len(cross))           # → (quantity, iso/aniso) rows
    parts = np.einsum("pk,fkl->fpl", pick, acc.correlation_parts(biased))
    block_corr = np.einsum("pk,bkl->bpl", pick[:2], acc.correlation(biased, blocks=True))
    block_of = np.asarray(acc.block_trajectory)
    reduced, total, blocks = 0.0, 0.0, np.empty((len(block_of), 2, pad * max_lag + 1))
    for f, run in enumerate(runs):
        omega, shape = line_shape(parts[f], dt_fs, win, pad)
        factor = _reduced_factor(omega, run.temperature_K, qcf)
        reduced = reduced + shape[:2] * factor
        if form == "absolute":
            factor = factor * absolute_factor(units.omega_to_wavenumber(omega), run.temperature_K, laser_nm,
                                              run.volume_A3)
        total = total + shape * factor
        blocks[block_of == f] = line_shape(block_corr[block_of == f], dt_fs, win, pad)[1] * factor
    wavenumber = units.omega_to_wavenumber(omega)
    spectra = np.einsum("pq,kqn->kpn", _MIX, total.reshape(-1, 2, len(wavenumber)))  # (quantity, pol, ν̃)
    values = spectra[0]
    block_values = np.einsum("pq,bqn->bpn", _MIX, blocks)
    nb = len(blocks)
    errors = block_values.std(0, ddof=1) / np.sqrt(nb) if nb > 1 else np.full_like(values, np.nan)
    finite = np.isfinite(values[0])   # the absolute form is NaN at ν̃ = 0
    block_integrals = np.trapezoid(block_values[..., finite], wavenumber[finite], axis=-1)
    integral_error = (block_integrals.std(0, ddof=1) / np.sqrt(nb) if nb > 1 else np.full(len(_MIX), np.nan))
    vv, vh = _MIX[2] @ reduced, _MIX[3] @ reduced
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(vv > 1e-9 * np.max(vv), vh / vv, np.nan)
    key = form if form == "reduced" or runs[0].volume_A3 is None else "absolute_volume"
    quantity, unit = _UNITS[key]
    comp_names = groups + [f"{groups[a]}|{groups[b]}" for a, b in group_pairs]
    components = {name: dict(zip(POLARISATIONS, spectra[1 + k])) for k, name in enumerate(comp_names)}
    band = n_mem > 1
    member_values = (dict(zip(POLARISATIONS, np.moveaxis(spectra[1 + len(comp_names):], 1, 0))) if band else None)
    return RamanSpectrum(wavenumber, **dict(zip(POLARISATIONS, values)), depolarization=rho,
                         error=dict(zip(POLARISATIONS, errors)), form=form, quantity=quantity, unit=unit,
                         laser_nm=laser_nm, n_blocks=nb,
                         units={"wavenumber": "cm^-1", **{n: unit for n in POLARISATIONS},
                                "depolarization": "dimensionless", "dadt": units.POLARIZABILITY_DERIVATIVE},
                         series=series, components=components, member_values=member_values,
                         member_series=members if band else [], uncertainty_scale=float(uncertainty_scale),
                         integral_error=dict(zip(POLARISATIONS, (float(e) for e in integral_error))))


def _array_run(label: str, voigt: np.ndarray, members: list[np.ndarray], temperature_K: float,
               volume_A3: float | None) -> Run:
    data = {"total": voigt} | {f"member{k}": m for k, m in enumerate(members)}

    def read(names, start, stop):
        for s in range(start, stop, CHUNK):
            yield np.stack([data[name][s:min(s + CHUNK, stop)] for name in names], axis=1)
    return Run(label, len(voigt), temperature_K, volume_A3, read)


def _member_arrays(member_dadt, n_runs: int, labels: list[str]) -> list[list[np.ndarray]]:
    """Per run, the checked Voigt dα/dt of each committee member (the same M ≥ 2 in every run)."""
    many = isinstance(member_dadt, (list, tuple))
    runs = list(member_dadt) if many else [member_dadt]
    if len(runs) != n_runs:
        raise InputError(f"member dα/dt for {len(runs)} runs, dα/dt for {n_runs}")
    out = [[as_voigt(m, f"dα/dt of member {k} of {label}") for k, m in enumerate(run)]
           for run, label in zip(runs, labels)]
    for label, run in zip(labels, out):
        if len(run) < 2 or len(run) != len(out[0]):
            raise InputError(f"{label} has {len(run)} committee members: need the same M ≥ 2 in every run")
    return out


def raman_spectrum(dadt, dt_fs: float, temperature_K: float | Sequence[float], *,
                   volume_A3: float | Sequence[float | None] | None = None, max_lag_fs: float = 2000.0,
                   window_name: str = "hann", qcf: str = "harmonic", n_blocks: int | None = None,
                   biased: bool = False, remove_mean: bool = True, pad: int = 4,
                   required_wavenumber: float = REQUIRED_WAVENUMBER, form: str = "reduced",
                   laser_nm: float | None = None, member_dadt=None,
                   uncertainty_scale: float = 1.0) -> RamanSpectrum:
    """Raman spectra from dα/dt (e·Å²/(V·fs)) sampled every ``dt_fs`` fs at ``temperature_K`` K.

    ``dadt``: an array (n_frames, 6) Voigt (xx, yy, zz, yz, xz, xy) or (n_frames, 3, 3), or a list/tuple of such
    arrays (independent runs, pooled per lag); ``temperature_K`` and ``volume_A3`` (Å³, None: per system): one value
    or one per run. ``form``: ``"reduced"`` (Å⁴·amu⁻¹ per cm⁻¹) or ``"absolute"`` (needs ``laser_nm``, the
    excitation wavelength in nm; cm²·sr⁻¹ per cm⁻¹, or cm⁻¹·sr⁻¹ per cm⁻¹ with a volume); see the module
    docstring. The other options are those of :func:`aptnn.spectrum.compute_spectrum` (``max_lag_fs`` in fs, window,
    quantum correction, blocks, biased, mean removal, padding, ``required_wavenumber`` in cm⁻¹).
    ``member_dadt``: a committee's dα/dt, (n_members ≥ 2, n_frames, 6) or (n_members, n_frames, 3, 3) (a list of
    them for several runs): each member's spectra and the model band σ_model = ``uncertainty_scale`` × std over
    members (ddof 1), as in stream files; ``dadt`` None then means the mean over the members.
    """
    max_lag_fs, _, _, n_blocks, pad = checks.check_options(
        max_lag_fs=max_lag_fs, window_name=window_name, qcf=qcf, temperature_K=None, volume_A3=None,
        n_blocks=n_blocks, pad=pad, chunk=CHUNK, windows=WINDOWS, qcfs=QCFS)
    laser_nm = _check_form(form, laser_nm)
    dt = checks.positive_number(dt_fs, "time step dt_fs", "fs")
    scale = checks.positive_number(uncertainty_scale, "uncertainty_scale")
    if dadt is None and member_dadt is not None:
        dadt = ([np.mean([as_voigt(m) for m in run], axis=0) for run in member_dadt]
                if isinstance(member_dadt, (list, tuple)) else np.mean([as_voigt(m) for m in member_dadt], axis=0))
    arrays = list(dadt) if isinstance(dadt, (list, tuple)) else [dadt]
    if not arrays:
        raise InputError("no dα/dt given")
    labels = [f"run {k}" for k in range(len(arrays))]
    arrays = [as_voigt(a, f"dα/dt of {label}") for a, label in zip(arrays, labels)]
    members = _member_arrays(member_dadt, len(arrays), labels) if member_dadt is not None else [[]] * len(arrays)
    for label, a, run in zip(labels, arrays, members):
        if any(m.shape != a.shape for m in run):
            raise InputError(f"member dα/dt of {label}: {[m.shape for m in run]}, dα/dt {a.shape}")
    temps, vols = checks.run_conditions(temperature_K, volume_A3, len(arrays), "per volume vs per system")
    nyquist = 1.0 / (2.0 * units.C_CM_PER_FS * dt)
    if nyquist < required_wavenumber:
        raise InputError(f"sampled every {dt:g} fs, which represents only up to {nyquist:.0f} cm⁻¹ (not "
                         f"{required_wavenumber:g}): lower required_wavenumber to accept")
    max_lag, n_blocks = checks.sizes(labels, [len(a) for a in arrays], dt, max_lag_fs, n_blocks, pad)
    runs = [_array_run(*args) for args in zip(labels, arrays, members, temps, vols)]
    return raman_of_runs(runs, dt, max_lag=max_lag, n_blocks=n_blocks, window_name=window_name, qcf=qcf,
                         biased=biased, remove_mean=remove_mean, pad=pad, form=form, laser_nm=laser_nm,
                         members=[f"member{k}" for k in range(len(members[0]))], uncertainty_scale=scale)


def _check_form(form: str, laser_nm) -> float | None:
    """The checked laser wavelength (nm) for ``form`` (None for the reduced form, which ignores it)."""
    if form not in FORMS:
        raise InputError(f"unknown Raman form {form!r}; choose from {', '.join(FORMS)}")
    if form == "absolute":
        if laser_nm is None:
            raise InputError("the absolute Raman form needs the excitation wavelength laser_nm (nm)")
        return checks.positive_number(laser_nm, "laser wavelength (laser_nm, --laser-nm)", "nm")
    return laser_nm


def file_run(path: str, n_frames: int, temperature_K: float, volume_A3: float | None, chunk: int) -> Run:
    """A :class:`~aptnn.spectrum.Run` reading the ``/dAdt`` dataset (e·Å²/(V·fs), Voigt) of the stream ``path``."""
    def read(names, start, stop):
        for _, block in read_chunks(path, names, chunk, start, stop, dataset="dAdt"):
            yield block
    return Run(path, n_frames, temperature_K, volume_A3, read)


def compute_raman(paths: Sequence[str | os.PathLike], *, max_lag_fs: float = 2000.0, window_name: str = "hann",
                  qcf: str = "harmonic", temperature_K: float | None = None, volume_A3: float | None = None,
                  series: list[str] | None = None, n_blocks: int | None = None, biased: bool = False,
                  remove_mean: bool = True, pad: int = 4, chunk: int = CHUNK,
                  required_wavenumber: float = REQUIRED_WAVENUMBER, form: str = "reduced",
                  laser_nm: float | None = None, decompose: bool = True, members: bool = True,
                  model_band_scale: float | None = None) -> RamanSpectrum:
    """Raman spectra from the ``/dAdt`` (dα/dt, e·Å²/(V·fs)) of one or several stream files (independent
    trajectories, correlations pooled per lag), as :func:`aptnn.spectrum.compute_spectrum` computes the IR spectrum
    from ``/dMdt``: the same options, checks and units (``max_lag_fs`` fs, ``temperature_K`` K and ``volume_A3`` Å³
    overriding every file's, ``series`` glob patterns averaged, default total else centroid, ``n_blocks`` per file,
    ``required_wavenumber`` cm⁻¹). ``form``: ``reduced`` (Å⁴·amu⁻¹ per cm⁻¹) or ``absolute`` (needs ``laser_nm``,
    nm; cm²·sr⁻¹ per cm⁻¹, or cm⁻¹·sr⁻¹ per cm⁻¹ with a volume). A file without ``/dAdt`` is an
    :class:`InputError` naming it; every input is checked before any frame is read.
    ``decompose``: the group series (``group:*``) give auto and cross spectra (``components``) that add up to the
    total when the groups partition the atoms. ``members``: for committee streams (series ``member0…``, the same M in
    every file) also each member's spectra and the model band σ_model = s × std over members (ddof 1), s =
    ``model_band_scale`` or else the files' ``uncertainty_scale`` attribute (dimensionless, default 1), as for IR.
    """
    max_lag_fs, temperature_K, volume_A3, n_blocks, pad = checks.check_options(
        max_lag_fs=max_lag_fs, window_name=window_name, qcf=qcf, temperature_K=temperature_K,
        volume_A3=volume_A3, n_blocks=n_blocks, pad=pad, chunk=chunk, windows=WINDOWS, qcfs=QCFS)
    laser_nm = _check_form(form, laser_nm)
    if model_band_scale is not None:
        model_band_scale = checks.positive_number(model_band_scale, "model band scale (--model-band-scale)")
    if not paths:
        raise InputError("no stream file given")
    paths = [str(p) for p in paths]
    infos = [read_info(p) for p in paths]
    for path, info in zip(paths, infos):
        if not info.has_dadt:
            raise InputError("no dataset 'dAdt' (dα/dt): a Raman spectrum needs the polarizability derivatives, "
                             "and this stream holds only dM/dt (IR)", path)
    first = infos[0]
    member_series = checks.committee(paths, infos) if members else []
    compared = [[s for s in info.series if members or not checks.is_member(s)] for info in infos]
    for path, info, names in zip(paths, infos, compared):
        if names != compared[0]:
            raise InputError(f"series {info.series} differ from {first.series} of {paths[0]}", path)
    if form == "absolute":
        if volume_A3 is None:
            with_v = [p for p, info in zip(paths, infos) if info.volume_A3 is not None]
            without = [p for p, info in zip(paths, infos) if info.volume_A3 is None]
            if with_v and without:
                raise InputError(f"no volume_A3 (open boundaries: cross-section per system in cm²·sr⁻¹) while "
                                 f"{with_v[0]} has one (scattering coefficient in cm⁻¹·sr⁻¹): the two cannot be "
                                 "averaged; pass --volume (Å³) to use one volume for all files, or give files of "
                                 "one kind", without[0])
        conditions = checks.file_conditions(paths, infos, temperature_K, volume_A3)
    else:  # reduced spectra do not depend on the volume: only the temperatures are checked and used
        conditions = [(t, None) for t, _ in checks.file_conditions(paths, infos, temperature_K, 1.0)]
    dt, frames, max_lag, n_blocks = checks.sampling(paths, infos, required_wavenumber, chunk, max_lag_fs,
                                                    n_blocks, pad)
    scale = checks.band_scale(paths, infos, model_band_scale) if len(member_series) > 1 else 1.0
    averaged = select_series(first.series, series)
    member_series = checks.band_members(paths, member_series, averaged)
    groups = [s for s in first.series if s.startswith("group:")] if decompose else []
    runs = [file_run(p, n, t, v, chunk) for p, n, (t, v) in zip(paths, frames, conditions)]
    return raman_of_runs(runs, dt, max_lag=max_lag, n_blocks=n_blocks, window_name=window_name, qcf=qcf,
                         biased=biased, remove_mean=remove_mean, pad=pad, form=form, laser_nm=laser_nm,
                         series=averaged, groups=groups, members=member_series, uncertainty_scale=scale)
