"""Dielectric function ε(ω) = ε'(ω) + iε''(ω) and optical constants n, κ, α from an IR spectrum α(ω)n(ω).

Conventions (wavenumbers ν̃ in cm⁻¹ throughout, ε, n, κ dimensionless, α in cm⁻¹):

    α(ν̃) n(ν̃) = ω ε''(ω) / c = 2π ν̃ ε''(ν̃)                                  (the spectrum, cm⁻¹)
    ε'(ν̃) = ε∞ + (2/π) P∫₀^∞ ν̃' ε''(ν̃') / (ν̃'² − ν̃²) dν̃'                      (Kramers–Kronig)
    n = √((|ε| + ε')/2),   κ = √((|ε| − ε')/2),   α = 4π ν̃ κ                     (so 2nκ = ε'', α n = 2πν̃ε'')

ε∞ is the electronic permittivity above the IR bands (e.g. 1.77 for water: the square of the visible refractive
index); the spectrum itself supplies only the nuclear part of ε.

Kramers–Kronig on a uniform grid ν̃_k = k h, k = 0…N−1 (:func:`kramers_kronig`, :func:`from_alpha_n`): with
g(ν̃) = ν̃ ε''(ν̃) = α n / 2π, extended as an even function, P∫₀^∞ g/(ν̃'² − ν̃²) = (1/2ν̃) P∫ g(ν̃')/(ν̃' − ν̃) over
the whole line, evaluated by the alternate-point (Maclaurin) rule: at grid point i only the points j with j − i odd
enter, so the pole sits midway between two of them and the principal value needs no special treatment:

    ε'_i = ε∞ + (2 / (π ν̃_i)) Σ_{m odd} g_{i+m} / m                 (i ≥ 1)
    ε'_0 = ε∞ + (4 / (π h)) Σ_{m odd > 0} g_m / m²                   (static limit, (2/π)∫ε''/ν̃' dν̃')

one linear convolution, done by FFT in O(N log N). Working with g = αn/2π (regular at ν̃ = 0) rather than ε''
(which is αn/2πν̃) keeps the rule free of the 1/ν̃ of a finite αn(0).

Accuracy: the rule converges exponentially in (band width / h). Measured on a Lorentz band of width Γ, the relative
error of ε' is 2·10⁻⁷ for Γ = 10 h, 4·10⁻⁴ for Γ = 5 h, 3 % for Γ = 2.5 h. Bands of a spectrum are at least a
resolution 1/(c·max lag) = 2·pad·h wide, and a spectrum, the cosine transform of a correlation of finite length, is
smooth on that scale: even with --pad 1 the tests find ε' and n within 2·10⁻⁴. What remains is the truncation of
the integral at the grid end ν̃_max, an error ≈ (2/π) ∫_{ν̃max}^∞ g/ν̃'² dν̃' in the bulk of the grid, growing as
ε''(ν̃_max)·ln near the end. Spectra from streams run to the Nyquist wavenumber, far above every band, so the
truncation is negligible there. tests/test_dielectric.py measures a Lorentz oscillator sampled to only 3× its
centre: up to 0.8 ν̃_max, ε' within 0.11 % and n, α within 0.02 % for a water-like band, |Δε'| ≤ 1.6·10⁻³ and n, α
within 0.5 % for a band strong enough to make ε' negative; and the whole chain from the exact correlation function
of a Langevin oscillator: ε', n within 10⁻⁴ of the analytic Lorentz ε.
ε'_0 (the static permittivity) needs the whole low-frequency spectrum, which a correlation function of finite
length does not resolve (water's Debye relaxation lies near 0.6 cm⁻¹): trust ε' and n where the spectrum is
resolved, i.e. a few resolution widths 1/(c·max lag) above 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from aptnn.errors import InputError


@dataclass
class Dielectric:
    """ε(ν̃) and the optical constants on a wavenumber grid (cm⁻¹).

    ``eps_real``, ``eps_imag``, ``n``, ``kappa``: dimensionless; ``alpha``: absorption coefficient in cm⁻¹;
    ``eps_inf``: the ε∞ used (dimensionless). κ carries the sign of ε'' (negative only where a noisy spectrum is),
    so 2nκ = ε'' and α n = 2πν̃ε'' hold everywhere.
    """

    wavenumber: np.ndarray   # cm⁻¹
    eps_real: np.ndarray
    eps_imag: np.ndarray
    n: np.ndarray
    kappa: np.ndarray
    alpha: np.ndarray        # cm⁻¹
    eps_inf: float

    @property
    def alpha_n(self) -> np.ndarray:
        """α·n in cm⁻¹ (equals the spectrum it came from for ν̃ > 0)."""
        return self.alpha * self.n

    #: CSV columns (name_unit) and the attribute each holds
    COLUMNS = (("eps_real_dimensionless", "eps_real"), ("eps_imag_dimensionless", "eps_imag"),
               ("n_dimensionless", "n"), ("kappa_dimensionless", "kappa"), ("alpha_cm-1", "alpha"))


def lorentz(wavenumber, eps_inf: float, strength: float, center: float, width: float) -> np.ndarray:
    """Complex ε(ν̃) = ε∞ + S ν̃₀² / (ν̃₀² − ν̃² − iΓν̃) of a damped oscillator (Lorentz model).

    ``wavenumber``, ``center`` ν̃₀ and ``width`` Γ in cm⁻¹ (Γ = γ/2πc, the FWHM of ε'' for Γ ≪ ν̃₀), ``strength``
    S = ε(0) − ε∞ (dimensionless; classically S = β⟨|M|²⟩/(3Vε₀) for the oscillator's dipole fluctuations).
    """
    nu = np.asarray(wavenumber, dtype=np.float64)
    return eps_inf + strength * center**2 / (center**2 - nu**2 - 1j * width * nu)


def _grid_step(wavenumber) -> float:
    """Step h (cm⁻¹) of a uniform grid 0, h, 2h, …; anything else is an InputError."""
    nu = np.asarray(wavenumber, dtype=np.float64)
    if nu.ndim != 1 or len(nu) < 3 or not np.isfinite(nu).all():
        raise InputError(f"wavenumber grid of shape {nu.shape}: need at least 3 finite values")
    h = (nu[-1] - nu[0]) / (len(nu) - 1)
    if not h > 0 or abs(nu[0]) > 1e-9 * h or not np.allclose(np.diff(nu), h, rtol=1e-6, atol=0):
        raise InputError("Kramers–Kronig needs a uniform wavenumber grid 0, h, 2h, … (cm⁻¹), as spectra have")
    return float(h)


def _finite(values, shape, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.shape != shape:
        raise InputError(f"{what} has shape {x.shape}, the wavenumber grid {shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{what} holds NaN or inf")
    return x


def _kramers_kronig_g(h: float, g: np.ndarray) -> np.ndarray:
    """ε' − ε∞ on the grid k·h from g = ν̃ ε''(ν̃) (cm⁻¹) by the alternate-point rule (module docstring)."""
    size = len(g)
    even = np.concatenate([g[:0:-1], g])                      # g at −(N−1)…N−1
    m = np.arange(-(2 * size - 2), 2 * size - 1)
    kernel = np.where(m % 2 == 1, 1.0 / np.where(m == 0, 1, m), 0.0)
    # Σ_j g_j / (i − j) for all i: element i + 3N − 3 of the full convolution (g index offset N−1, kernel 2N−2)
    conv = signal.fftconvolve(even, kernel, mode="full")[3 * size - 3: 4 * size - 3]
    out = np.empty(size)
    out[1:] = -2.0 / (np.pi * h * np.arange(1, size)) * conv[1:]
    odd = np.arange(1, size, 2)
    out[0] = 4.0 / (np.pi * h) * np.sum(g[odd] / odd.astype(np.float64) ** 2)
    return out


def kramers_kronig(wavenumber, eps_imag, eps_inf: float = 1.0) -> np.ndarray:
    """ε'(ν̃) from ε''(ν̃) on a uniform grid 0, h, 2h, … (cm⁻¹): ε∞ + (2/π) P∫₀^∞ ν̃'ε''/(ν̃'² − ν̃²) dν̃'.

    ε'' beyond the grid is taken as 0; accuracy as in the module docstring. Dimensionless in and out.
    """
    h = _grid_step(wavenumber)
    nu = np.asarray(wavenumber, dtype=np.float64)
    eps_imag = _finite(eps_imag, nu.shape, "ε''")
    return eps_inf + _kramers_kronig_g(h, nu * eps_imag)


def optical_constants(eps_real, eps_imag) -> tuple[np.ndarray, np.ndarray]:
    """(n, κ) with (n + iκ)² = ε' + iε'': n = √((|ε|+ε')/2) ≥ 0, κ = sign(ε'')·√((|ε|−ε')/2).

    Computed without cancellation (the smaller one as |ε''|/2 × the larger), so 2nκ = ε'' to rounding.
    """
    er, ei = np.asarray(eps_real, dtype=np.float64), np.asarray(eps_imag, dtype=np.float64)
    big = np.sqrt((np.hypot(er, ei) + np.abs(er)) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        small = np.where(big > 0, np.abs(ei) / (2 * np.where(big > 0, big, 1.0)), 0.0)
    n = np.where(er >= 0, big, small)
    kappa = np.where(er >= 0, small, big) * np.where(ei < 0, -1.0, 1.0)
    return n, kappa


def from_eps(wavenumber, eps_real, eps_imag, eps_inf: float) -> Dielectric:
    """:class:`Dielectric` from ε', ε'' on a wavenumber grid (cm⁻¹): n, κ and α = 4πν̃κ (cm⁻¹)."""
    nu = np.asarray(wavenumber, dtype=np.float64)
    n, kappa = optical_constants(eps_real, eps_imag)
    return Dielectric(nu, np.asarray(eps_real, dtype=np.float64), np.asarray(eps_imag, dtype=np.float64), n, kappa,
                      4 * np.pi * nu * kappa, float(eps_inf))


def from_alpha_n(wavenumber, alpha_n, eps_inf: float) -> Dielectric:
    """ε, n, κ, α from the spectrum α(ν̃)n(ν̃) in cm⁻¹ on a uniform grid 0, h, 2h, … cm⁻¹ (a :class:`Spectrum`'s).

    ε'' = αn/(2πν̃) for ν̃ > 0; at ν̃ = 0, where αn/ν̃ is undefined (a finite αn(0) would be a DC conductivity), ε''
    is set to 0. ε' by Kramers–Kronig from g = αn/2π (module docstring), so the result obeys αn = α·n for ν̃ > 0.
    ``eps_inf``: ε∞ ≥ 1 (dimensionless, e.g. 1.77 for water).
    """
    h = _grid_step(wavenumber)
    nu = np.asarray(wavenumber, dtype=np.float64)
    alpha_n = _finite(alpha_n, nu.shape, "α n")
    eps_inf = float(eps_inf)
    if not np.isfinite(eps_inf) or eps_inf < 1:
        raise InputError(f"ε∞ (--eps-inf) = {eps_inf:g}: must be a finite number ≥ 1 (the electronic permittivity "
                         "above the IR bands, e.g. 1.77 for water)")
    eps_imag = np.zeros_like(nu)
    eps_imag[1:] = alpha_n[1:] / (2 * np.pi * nu[1:])
    eps_real = eps_inf + _kramers_kronig_g(h, alpha_n / (2 * np.pi))
    return from_eps(nu, eps_real, eps_imag, eps_inf)
