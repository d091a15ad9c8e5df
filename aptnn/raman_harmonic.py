"""Harmonic Raman activities of a molecule, and the classical MD that checks :mod:`aptnn.raman` against them.

Units (as in :mod:`aptnn.units`): positions Å, masses amu, energies eV, forces eV/Å, Hessian eV/Å², time fs,
wavenumbers cm⁻¹, polarisability α in e·Å²/V, PGT G[i,ξ,η,ζ] = ∂α_ξη/∂r_iζ in e·Å/V (:mod:`aptnn.label.pgt`).

Normal modes: the mass-weighted Hessian H_ij/√(m_i m_j) is diagonalised in the complement of the rigid-body
motions (3 translations and 3 rotations, 2 for a linear molecule, built at the given geometry), so the 3N−6 (3N−5)
vibrations are exactly free of them. A normal coordinate Q_k is mass-weighted (amu^½·Å); ``cartesian[i, ζ, k]``
= ∂r_iζ/∂Q_k (amu^-½).

Raman activities (Long, *The Raman Effect*, 2002; the numbers Gaussian/ORCA print): with α′ = ∂α/∂Q_k as a
polarisability volume (α/4πε₀, Å³ per amu^½·Å = Å²·amu^-½), a′ = tr α′/3 and
γ′² = ½[(α′_xx−α′_yy)² + (α′_yy−α′_zz)² + (α′_zz−α′_xx)²] + 3(α′_xy² + α′_yz² + α′_xz²),
    S_k = 45 a′² + 7 γ′²   (Å⁴/amu),      ρ_k = 3γ′² / (45 a′² + 4γ′²)   (linearly polarised light).
:func:`aptnn.raman.raman_spectrum` (reduced form, harmonic QCF) gives for a classical harmonic mode a band with
∫R_iso dν̃ = a′², ∫R_aniso dν̃ = γ′², so ∫45·(VV + VH) dν̃ = S_k; :func:`md_polarizability` produces the MD to test it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase import Atoms

from aptnn import units
from aptnn.errors import InputError
from aptnn.raman import invariant_components


@dataclass
class NormalModes:
    """Harmonic vibrations: ``wavenumber`` (n,) cm⁻¹ (negative: imaginary), ``cartesian`` (N, 3, n) ∂r/∂Q in
    amu^-½, ``masses`` (N,) amu, ``eigenvalues`` (n,) eV/(Å²·amu) of the mass-weighted Hessian."""
    wavenumber: np.ndarray
    cartesian: np.ndarray
    masses: np.ndarray
    eigenvalues: np.ndarray

    @property
    def omega(self) -> np.ndarray:
        """Angular frequencies (n,) in rad/fs."""
        return 2 * np.pi * units.C_CM_PER_FS * self.wavenumber


def hessian(atoms: Atoms, calc, delta: float = 0.005) -> np.ndarray:
    """Cartesian Hessian (3N, 3N) in eV/Å² from central differences of the forces of ASE calculator ``calc`` at
    ±``delta`` Å (6N force calls), symmetrised."""
    x0 = atoms.get_positions()
    n = 3 * len(atoms)
    h = np.empty((n, n))
    for k in range(n):
        f = []
        for sign in (1, -1):
            a = atoms.copy()
            pos = x0.copy()
            pos.flat[k] += sign * delta
            a.set_positions(pos)
            a.calc = calc
            f.append(a.get_forces().ravel())
        h[k] = -(f[0] - f[1]) / (2 * delta)
    return 0.5 * (h + h.T)


def rigid_body_basis(atoms: Atoms, tol: float = 1e-6) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations (3N, 6), or (3N, 5) for a linear molecule."""
    m = atoms.get_masses()
    r = atoms.get_positions() - atoms.get_center_of_mass()
    sq = np.sqrt(m)[:, None]
    vecs = [(sq * np.eye(3)[a]).ravel() for a in range(3)]
    vecs += [(sq * np.cross(np.eye(3)[a], r)).ravel() for a in range(3)]
    u, s, _ = np.linalg.svd(np.array(vecs).T, full_matrices=False)
    return u[:, s > tol * s.max()]


def normal_modes(atoms: Atoms, hess: np.ndarray) -> NormalModes:
    """Vibrations of ``atoms`` from its Cartesian Hessian (eV/Å²), rigid-body motions projected out exactly."""
    m = atoms.get_masses()
    inv_sq = 1 / np.sqrt(np.repeat(m, 3))
    hw = hess * inv_sq[:, None] * inv_sq[None, :]              # eV/(Å²·amu)
    rigid = rigid_body_basis(atoms)
    q, _ = np.linalg.qr(np.hstack([rigid, np.eye(len(hw))]))
    internal = q[:, rigid.shape[1]:len(hw)]                    # orthonormal complement of the rigid motions
    lam, u = np.linalg.eigh(internal.T @ hw @ internal)
    vec = internal @ u                                         # mass-weighted eigenvectors (3N, n)
    omega_fs = np.sign(lam) * np.sqrt(np.abs(lam)) / units.ASE_TIME_TO_FS   # ASE time unit Å·(amu/eV)^½ → fs
    wavenumber = omega_fs / (2 * np.pi * units.C_CM_PER_FS)
    cart = (vec * inv_sq[:, None]).reshape(len(atoms), 3, -1)
    return NormalModes(wavenumber, cart, m, lam)


def mode_polarizability_derivatives(pgt: np.ndarray, modes: NormalModes) -> np.ndarray:
    """∂α/∂Q_k (n, 3, 3) as polarisability volumes in Å²·amu^-½ from G (N, 3, 3, 3) in e·Å/V."""
    d = np.einsum("ixyz,izk->kxy", np.asarray(pgt, dtype=float), modes.cartesian)
    return 0.5 * (d + d.transpose(0, 2, 1)) * units.POLARIZABILITY_TO_A3


@dataclass
class RamanActivities:
    """Per mode: ``a2`` = a′², ``gamma2`` = γ′², ``activity`` = 45a′² + 7γ′² (all Å⁴/amu), ``depolarization``
    ρ = 3γ′²/(45a′² + 4γ′²) (NaN for a Raman-inactive mode), ``wavenumber`` cm⁻¹."""
    wavenumber: np.ndarray
    a2: np.ndarray
    gamma2: np.ndarray
    activity: np.ndarray
    depolarization: np.ndarray


def raman_activities(pgt: np.ndarray, modes: NormalModes) -> RamanActivities:
    """Harmonic Raman activities (Å⁴/amu) and depolarisation ratios of ``modes`` from the PGT (e·Å/V)."""
    d = mode_polarizability_derivatives(pgt, modes)
    voigt = np.stack([d[:, 0, 0], d[:, 1, 1], d[:, 2, 2], d[:, 1, 2], d[:, 0, 2], d[:, 0, 1]], axis=1)
    inv = invariant_components(voigt)
    a2, g2 = inv[:, 0] ** 2, (inv[:, 1:] ** 2).sum(1)
    vv = 45 * a2 + 4 * g2
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(vv > 1e-12 * max(vv.max(), 1e-300), 3 * g2 / vv, np.nan)
    return RamanActivities(modes.wavenumber, a2, g2, 45 * a2 + 7 * g2, rho)


def mode_initial_conditions(modes: NormalModes, temperature_K: float, rng: np.random.Generator,
                            fixed_energy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Displacements (N, 3) Å and velocities (N, 3) Å/fs exciting only the vibrations (no translation or
    rotation). ``fixed_energy``: every mode gets exactly k_BT (so its time-averaged Q̇² is k_BT, in amu·Å²/fs²)
    with a random phase; else Q and Q̇ are drawn from the classical Boltzmann distribution."""
    kt = units.KB_SI * temperature_K / units.AMU_A2_PER_FS2_TO_J      # amu·Å²/fs²
    w = modes.omega
    if fixed_energy:
        phase = rng.uniform(0, 2 * np.pi, len(w))
        amp = np.sqrt(2 * kt)                                          # E = ½Q̇_max²
        q, qdot = amp / w * np.cos(phase), -amp * np.sin(phase)
    else:
        q, qdot = rng.normal(size=len(w)) * np.sqrt(kt) / w, rng.normal(size=len(w)) * np.sqrt(kt)
    return modes.cartesian @ q, modes.cartesian @ qdot


def derivative(series: np.ndarray, dt_fs: float) -> np.ndarray:
    """Time derivative of ``series`` (n, ...) sampled every ``dt_fs`` fs by the five-point central stencil
    (n−4 frames, the 3rd to the (n−2)th; relative error (ωΔt)⁴/30: 0.04 % at 3700 cm⁻¹ with Δt = 0.5 fs)."""
    s = np.asarray(series, dtype=float)
    return (8 * (s[3:-1] - s[1:-3]) - (s[4:] - s[:-4])) / (12 * dt_fs)


def to_voigt(tensors: np.ndarray) -> np.ndarray:
    """(n, 3, 3) → (n, 6) Voigt (xx, yy, zz, yz, xz, xy) of the symmetric part."""
    t = 0.5 * (tensors + np.swapaxes(tensors, -1, -2))
    return np.stack([t[..., 0, 0], t[..., 1, 1], t[..., 2, 2], t[..., 1, 2], t[..., 0, 2], t[..., 0, 1]], axis=-1)


@dataclass
class Trajectory:
    """One NVE run sampled every ``dt_fs`` fs: ``alpha`` (n, 3, 3) e·Å²/V, ``velocities`` (n, N, 3) Å/fs,
    ``positions`` (n, N, 3) Å, ``energy`` (n,) total eV."""
    dt_fs: float
    alpha: np.ndarray
    velocities: np.ndarray
    positions: np.ndarray
    energy: np.ndarray

    def dadt_direct(self) -> np.ndarray:
        """(n−4, 6) Voigt dα/dt in e·Å²/(V·fs) from the finite-field α (five-point stencil)."""
        return to_voigt(derivative(self.alpha, self.dt_fs))

    def body_frame(self, reference: np.ndarray, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Displacements from ``reference`` (n, N, 3) Å and velocities (n, N, 3) Å/fs rotated into the frame of
        the reference (mass-weighted Kabsch fit per frame): even with zero angular momentum a vibrating molecule
        turns slowly, which would mix the normal-mode projections."""
        w = masses / masses.sum()
        ref = reference - w @ reference
        disp, vel = np.empty_like(self.positions), np.empty_like(self.velocities)
        for n, (p, v) in enumerate(zip(self.positions, self.velocities)):
            p = p - w @ p
            u, _, vt = np.linalg.svd((p * masses[:, None]).T @ ref)
            rot = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt      # p @ rot ≈ ref
            disp[n], vel[n] = p @ rot - ref, (v - w @ v) @ rot
        return disp, vel

    def mode_temperature(self, modes: NormalModes, reference: np.ndarray) -> np.ndarray:
        """(n_modes,) ⟨Q̇_k²⟩/k_B in K over frames 3…n−2 (those of :meth:`dadt_direct`): Q_k = Σ_iζ m_i
        (∂r_iζ/∂Q_k)(r_iζ − r⁰_iζ) (amu^½·Å) in the body frame (:meth:`body_frame`, ``reference`` r⁰ the minimum,
        Å) and Q̇_k by the same five-point stencil as dα/dt (Verlet velocities would be low by sin(ωΔt)/(ωΔt)).
        A band of mode k integrates to S_k·T_k/T when the MD keeps the modes harmonic but exchanges their energy."""
        disp = self.body_frame(reference, modes.masses)[0]
        q = np.einsum("i,izk,niz->nk", modes.masses, modes.cartesian, disp)
        return (derivative(q, self.dt_fs) ** 2).mean(0) * units.AMU_A2_PER_FS2_TO_J / units.KB_SI

    def dadt_linear(self, pgt: np.ndarray, reference: np.ndarray, masses: np.ndarray) -> np.ndarray:
        """(n−4, 6) Voigt dα/dt = Σ G_i·v_i in e·Å²/(V·fs) with the fixed PGT ``pgt`` (e·Å/V) of the minimum
        ``reference`` and the body-frame velocities (:meth:`body_frame`; same frames as :meth:`dadt_direct`)."""
        vel = self.body_frame(reference, masses)[1]
        return to_voigt(np.einsum("ixyz,niz->nxy", np.asarray(pgt, dtype=float), vel[2:-2]))


def md_polarizability(atoms: Atoms, make: Callable, modes: NormalModes, temperature_K: float, n_frames: int,
                      rng: np.random.Generator, dt_fs: float = 0.25, every: int = 2, strength: float = 0.05,
                      fixed_energy: bool = True) -> Trajectory:
    """Velocity-Verlet NVE from the minimum ``atoms`` with only the normal modes excited
    (:func:`mode_initial_conditions`), forces from ``make(None)`` and α from finite fields ±``strength`` V/Å
    (:func:`aptnn.label.pgt.polarizability_field` with ``make``) every ``every`` steps of ``dt_fs`` fs:
    ``n_frames`` frames (1 + (n_frames−1)·every force calls, 6·n_frames α single points)."""
    from ase.md.velocitydistribution import ZeroRotation
    from ase.md.verlet import VelocityVerlet

    from aptnn.label.pgt import polarizability_field

    a = atoms.copy()
    dx, v = mode_initial_conditions(modes, temperature_K, rng, fixed_energy)
    a.set_positions(a.get_positions() + dx)
    a.set_velocities(v * units.ASE_TIME_TO_FS)                        # Å/fs → Å per ASE time unit
    ZeroRotation(a)   # the displaced start carries angular momentum Σm·dx×v (second order): remove it
    a.calc = make(None)
    md = VelocityVerlet(a, timestep=dt_fs / units.ASE_TIME_TO_FS)
    alpha, vel, pos, energy = [], [], [], []
    for k in range(n_frames):
        if k:
            md.run(every)
        frame = Atoms(a.numbers, a.get_positions())
        alpha.append(polarizability_field(frame, make, strength=strength))
        vel.append(a.get_velocities() / units.ASE_TIME_TO_FS)
        pos.append(a.get_positions())
        energy.append(a.get_potential_energy() + a.get_kinetic_energy())
    return Trajectory(dt_fs * every, np.array(alpha), np.array(vel), np.array(pos), np.array(energy))


def band_summary(spec, bands: list[tuple[float, float]]) -> list[dict]:
    """Per band (lo, hi) in cm⁻¹ of a reduced :class:`~aptnn.raman.RamanSpectrum`: ``peak`` (cm⁻¹, the VV+VH
    maximum, parabola-refined), ``activity`` = ∫45·(VV+VH) dν̃ (Å⁴/amu), ``a2`` = ∫iso, ``gamma2`` = ∫aniso, and
    ``rho`` = ∫VH/∫VV over the band and ``rho_peak`` = VH/VV at the peak."""
    out = []
    nu = spec.wavenumber
    total = spec.vv + spec.vh
    for lo, hi in bands:
        sel = np.flatnonzero((nu >= lo) & (nu <= hi))
        k = sel[np.argmax(total[sel])]
        y0, y1, y2 = total[k - 1:k + 2]
        shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) if (y0 - 2 * y1 + y2) != 0 else 0.0
        x = nu[sel]

        def integral(y):
            return float(np.trapezoid(y[sel], x))
        vv, vh = integral(spec.vv), integral(spec.vh)
        out.append({"peak": float(nu[k] + shift * (nu[1] - nu[0])), "activity": 45 * (vv + vh),
                    "a2": integral(spec.iso), "gamma2": integral(spec.aniso), "rho": vh / vv,
                    "rho_peak": float(spec.depolarization[k])})
    return out


def harmonic_reference(atoms: Atoms, make: Callable, fmax: float = 1e-5, route: str = "C",
                       strength: float | None = None) -> tuple[Atoms, NormalModes, np.ndarray, RamanActivities]:
    """Optimise ``atoms`` (ASE BFGS to ``fmax`` eV/Å) with ``make(None)``, then its normal modes, PGT (e·Å/V) and
    harmonic Raman activities. ``make(field)`` is a calculator factory taking a field in V/Å (e.g.
    :func:`aptnn.label.xtb.xtb_factory`); ``route`` "C" (:func:`~aptnn.label.pgt.pgt_field_forces`, default
    ``strength`` 0.1 V/Å, 19 single points) or "A" (:func:`~aptnn.label.pgt.pgt_displacement` on finite-field α,
    default ±0.05 V/Å, 36N single points)."""
    from functools import partial

    from ase.optimize import BFGS

    from aptnn.label.pgt import pgt_displacement, pgt_field_forces, polarizability_field

    a = atoms.copy()
    a.calc = make(None)
    BFGS(a, logfile=None).run(fmax=fmax, steps=1000)
    modes = normal_modes(a, hessian(a, make(None)))
    if route == "C":
        pgt = pgt_field_forces(a, make, strength=strength or 0.1)
    elif route == "A":
        pgt = pgt_displacement(a, alpha=partial(polarizability_field, make=make, strength=strength or 0.05))
    else:
        raise InputError(f"unknown PGT route {route!r} (A or C)")
    return a, modes, pgt, raman_activities(pgt, modes)


def harmonic_bands(act: RamanActivities, groups: list[list[int]], margin: float = 300.0,
                   weights: np.ndarray | None = None) -> list[dict]:
    """Bands of the harmonic spectrum, one per group of mode indices (modes too close to resolve share a band):
    ``lo``/``hi`` (cm⁻¹, midway to the neighbouring groups, ``margin`` beyond the outer ones), ``peak`` (the
    activity-weighted mean wavenumber), summed ``activity``, ``a2``, ``gamma2`` (Å⁴/amu) and the band's ρ
    = 3Σγ′²/(45Σa′² + 4Σγ′²); groups sorted by wavenumber. ``weights`` (per mode, default 1) multiply each mode's
    a′², γ′² and S, e.g. T_k/T from :meth:`Trajectory.mode_temperature` for the classical band of an MD run."""
    groups = sorted(groups, key=lambda g: act.wavenumber[g].min())
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        act = RamanActivities(act.wavenumber, act.a2 * w, act.gamma2 * w, act.activity * w, act.depolarization)
    out = []
    for k, g in enumerate(groups):
        nu = act.wavenumber[g]
        lo = nu.min() - margin if k == 0 else 0.5 * (nu.min() + act.wavenumber[groups[k - 1]].max())
        hi = nu.max() + margin if k == len(groups) - 1 else 0.5 * (nu.max() + act.wavenumber[groups[k + 1]].min())
        s, a2, g2 = act.activity[g].sum(), act.a2[g].sum(), act.gamma2[g].sum()
        out.append({"modes": list(g), "lo": float(lo), "hi": float(hi),
                    "peak": float((nu * act.activity[g]).sum() / s) if s > 0 else float(nu.mean()),
                    "activity": float(s), "a2": float(a2), "gamma2": float(g2),
                    "rho": float(3 * g2 / (45 * a2 + 4 * g2)) if s > 0 else float("nan")})
    return out
