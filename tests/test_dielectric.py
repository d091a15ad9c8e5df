"""Dielectric route: Kramers–Kronig against the Lorentz oscillator, optical constants, α·n = the spectrum, and the whole
pipeline (stream → aptnn spectrum --eps-inf → CSV) against the fluctuation–dissipation Lorentz ε of a Langevin
oscillator."""
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import constants as si

from aptnn import units
from aptnn.cli import main
from aptnn.dielectric import from_alpha_n, from_eps, kramers_kronig, lorentz, optical_constants
from aptnn.errors import InputError
from aptnn.io.stream_writer import StreamWriter
from aptnn.spectrum import compute_spectrum, line_shape, prefactor, window

EPS_INF = 1.77


@pytest.mark.parametrize("strength, width", [(0.3, 150.0), (2.0, 80.0)])
def test_kramers_kronig_of_a_lorentz_oscillator(strength, width):
    """Analytic ε'' sampled on 0…3ν̃₀ only (ν̃₀ = 1600, h = 2 cm⁻¹), compared up to 0.8 ν̃_max = 2.4 ν̃₀.

    Weak, water-like band (S 0.3, ε' > 0 throughout): ε' within 0.2 % (measured 0.11 %, where ε' is smallest), n and
    α within 0.1 % (measured 0.017 %). Strong band (S 2, ε' < 0 between ν̃₀ and ν̃_L as in a reststrahlen band):
    |Δε'| ≤ 2·10⁻³ (measured 1.6·10⁻³, which is 0.93 % of |ε| at the zero crossing of ε' near ν̃_L = 2340 cm⁻¹),
    n and α within 1 % (measured 0.47 %). The error is the truncation of the integral at 3ν̃₀."""
    nu = np.arange(0, 4800.0 + 1, 2.0)
    eps = lorentz(nu, EPS_INF, strength, 1600.0, width)
    eps_real = kramers_kronig(nu, eps.imag, EPS_INF)
    inner = nu <= 0.8 * nu[-1]
    got, ref = from_eps(nu, eps_real, eps.imag, EPS_INF), from_eps(nu, eps.real, eps.imag, EPS_INF)
    positive = inner & (nu > 0)
    n_error = np.max(np.abs(got.n - ref.n)[inner] / ref.n[inner])
    alpha_error = np.max(np.abs(got.alpha - ref.alpha)[positive] / ref.alpha[positive])
    if strength < 1:
        assert np.all(eps.real > 0)
        assert np.max(np.abs(eps_real - eps.real)[inner] / eps.real[inner]) < 2e-3
        assert n_error < 1e-3 and alpha_error < 1e-3
    else:
        assert eps.real.min() < 0
        assert np.max(np.abs(eps_real - eps.real)[inner]) < 2e-3
        assert n_error < 0.01 and alpha_error < 0.01


def test_kramers_kronig_error_falls_exponentially_with_the_grid_step():
    """Grid to 100 ν̃₀ (truncation error 2·10⁻⁹): relative error of ε' for a band of width Γ = 10, 5, 4, 2.5 grid steps
    measured 2·10⁻⁷, 3.6·10⁻⁴, 2.4·10⁻³, 2.6·10⁻² (spectra from streams have Γ ≳ 2·pad grid steps)."""
    errors = []
    for steps in (10.0, 5.0, 4.0, 2.5):
        nu = np.arange(0, 160000.0 + 1, 150.0 / steps)
        eps = lorentz(nu, EPS_INF, 0.1, 1600.0, 150.0)
        sel = nu <= 4000
        errors.append(np.max(np.abs(kramers_kronig(nu, eps.imag, EPS_INF) - eps.real)[sel] / eps.real[sel]))
    assert errors[0] < 1e-6 and errors[1] < 1e-3 and errors[3] < 0.05
    assert errors == sorted(errors)


def test_optical_constants_square_to_eps():
    rng = np.random.default_rng(0)
    er = np.concatenate([rng.normal(scale=3, size=500), [0.0, 2.0, -2.0, 1e8, -1e8]])
    ei = np.concatenate([rng.normal(scale=2, size=500), [0.0, 0.0, 0.0, 1e-6, 1e-6]])
    n, kappa = optical_constants(er, ei)
    assert np.all(n >= 0)
    np.testing.assert_allclose((n + 1j * kappa) ** 2, er + 1j * ei, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(2 * n * kappa, ei, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(n[-5:], [0.0, np.sqrt(2), 0.0, 1e4, 5e-11], rtol=1e-9)


def test_alpha_n_identity_on_a_stream(tmp_path):
    """From a real stream: α·n of the dielectric route equals the spectrum column (ν̃ > 0), in Python and in the CSV."""
    from test_spectrum import oscillatory, write

    x = oscillatory(6000, 0.5, [1600, 3400], [0.05, 0.1], damp_fs=200)[1]
    path = write(tmp_path / "w.h5", x, 0.5, temperature_K=300.0, volume_A3=1000.0)
    spec = compute_spectrum([path], max_lag_fs=500, eps_inf=EPS_INF)
    d = spec.dielectric
    assert d.eps_inf == EPS_INF and d.eps_imag[0] == 0
    np.testing.assert_allclose(d.alpha_n[1:], spec.total[1:], rtol=1e-10, atol=1e-12 * np.abs(spec.total).max())
    np.testing.assert_allclose((d.n + 1j * d.kappa) ** 2, d.eps_real + 1j * d.eps_imag, rtol=1e-10)
    out = tmp_path / "s.csv"
    res = CliRunner().invoke(main, ["spectrum", path, "-o", str(out), "--max-lag", "500", "--eps-inf", "1.77",
                                    "--plot", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    table = _table(out)
    assert list(table)[-5:] == ["eps_real_dimensionless", "eps_imag_dimensionless", "n_dimensionless",
                                "kappa_dimensionless", "alpha_cm-1"]
    an = table["alpha_n_cm-1"]
    np.testing.assert_allclose((table["alpha_cm-1"] * table["n_dimensionless"])[1:], an[1:], rtol=1e-6,
                               atol=1e-9 * np.abs(an).max())
    assert "ε∞ 1.77: α max" in res.output and (tmp_path / "s.png").stat().st_size > 10_000


def test_plot_has_a_dielectric_panel(tmp_path):
    from test_spectrum import oscillatory, write

    path = write(tmp_path / "w.h5", oscillatory(2000, 0.5, [1600], [0.05])[1], 0.5)
    spec = compute_spectrum([path], max_lag_fs=300, eps_inf=EPS_INF)
    info = spec.plot(tmp_path / "p.png")
    assert info["panels"] == 2 and info["dielectric_legend"] == ["α(ν̃)", "n(ν̃), ε∞ = 1.77"]
    assert compute_spectrum([path], max_lag_fs=300).plot(tmp_path / "q.png")["panels"] == 1


# --- a Langevin-driven damped oscillator: ε = ε∞ + S ν̃₀²/(ν̃₀² − ν̃² − iΓν̃), S = β⟨|M|²⟩/(3Vε₀) -------------
T, V, S, NU0, GAMMA, DT = 300.0, 1000.0, 0.3, 1000.0, 150.0, 2.0   # K, Å³, -, cm⁻¹, cm⁻¹, fs


def _velocity_correlation(t_fs):
    """⟨Ṁ_x(0)Ṁ_x(t)⟩ in (e·Å/fs)² of one Cartesian component of the oscillator (ω₀, γ in rad/fs)."""
    w0, g = (2 * np.pi * units.C_CM_PER_FS * v for v in (NU0, GAMMA))
    sigma2 = S * V * 1e-30 * si.epsilon_0 * si.k * T / (si.e * 1e-10) ** 2   # ⟨M_x²⟩ in (e·Å)²
    w1, t = np.sqrt(w0**2 - g**2 / 4), np.abs(t_fs)
    return sigma2 * w0**2 * np.exp(-g * t / 2) * (np.cos(w1 * t) - g / (2 * w1) * np.sin(w1 * t))


def _langevin_stream(path, n, seed, gaussian):
    """n frames of Ṁ (3 components) with exactly the oscillator's covariance (periodic spectral synthesis).

    ``gaussian``: random Fourier amplitudes, a genuine realisation of the Langevin process (statistical noise);
    otherwise only random phases, so the correlation estimate is nearly exact (a noise-free check of the chain)."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    power = np.clip(np.fft.rfft(_velocity_correlation(np.minimum(k, n - k) * DT)).real, 0, None)
    x = np.empty((n, 1, 3))
    for d in range(3):
        if gaussian:
            z = (rng.normal(size=len(power)) + 1j * rng.normal(size=len(power))) / np.sqrt(2)
            z[[0, -1]] = rng.normal(size=2)
        else:
            z = np.exp(2j * np.pi * rng.uniform(size=len(power)))
            z[[0, -1]] = 1.0
        z[0] = 0.0  # no mean
        x[:, 0, d] = np.fft.irfft(np.sqrt(n * power) * z, n)
    with StreamWriter(path, ["total"], dt_fs=DT, temperature_K=T, volume_A3=V) as w:
        w.append(DT * np.arange(n), x)
    return str(path)


def _table(path):
    names = path.read_text().splitlines()[0].split(",")
    return dict(zip(names, np.loadtxt(path, delimiter=",", skiprows=1).T))


def _reference(nu):
    eps = lorentz(nu, EPS_INF, S, NU0, GAMMA)
    return eps, from_eps(nu, eps.real, eps.imag, EPS_INF)


def _sampled_alpha_n(nu):
    """α n (cm⁻¹) of the Lorentz line as a spectrum of samples every DT sees it: folded at the Nyquist wavenumber
    (the Langevin Ṁ is not smooth, its αn falls only as 1/ν̃², and ε'' = αn/2πν̃ magnifies that at low ν̃)."""
    period = 1.0 / (units.C_CM_PER_FS * DT)
    return sum(2 * np.pi * v * lorentz(v, EPS_INF, S, NU0, GAMMA).imag
               for v in (np.abs(nu + k * period) for k in range(-200, 201)))


@pytest.mark.parametrize("pad", [1, 4])
def test_exact_correlation_gives_the_lorentz_eps(pad):
    """The analytic correlation through line shape, prefactor and Kramers–Kronig: the fluctuation–dissipation
    strength S = β⟨|M|²⟩/(3Vε₀) and the line come out right. Over 100–4000 cm⁻¹: ε', n within 2·10⁻⁴ (measured
    4·10⁻⁵, 8·10⁻⁵); ε'' within 10⁻⁴ of its peak (measured 8·10⁻⁶) of the sampled (folded) line, within 3·10⁻³ of
    the unfolded Lorentz (measured 2.7·10⁻³ at 100 cm⁻¹: the aliasing of the sampled Langevin process)."""
    lags = int(1000 / DT)
    corr = 3 * _velocity_correlation(np.arange(lags + 1) * DT)
    omega, shape = line_shape(corr, DT, window("none", lags + 1), pad)
    nu = units.omega_to_wavenumber(omega)
    d = from_alpha_n(nu, shape * prefactor(T, V)[0], EPS_INF)
    eps, ref = _reference(nu)
    sel = (nu >= 100) & (nu <= 4000)
    assert np.max(np.abs(d.eps_real - eps.real)[sel] / eps.real[sel]) < 2e-4
    assert np.max(np.abs(d.n - ref.n)[sel] / ref.n[sel]) < 2e-4
    folded = _sampled_alpha_n(nu)[sel] / (2 * np.pi * nu[sel])
    assert np.max(np.abs(d.eps_imag[sel] - folded)) < 1e-4 * eps.imag.max()
    assert np.max(np.abs(d.eps_imag - eps.imag)[sel]) < 3e-3 * eps.imag.max()
    np.testing.assert_allclose(d.alpha_n[sel], _sampled_alpha_n(nu)[sel], rtol=2e-3)


def test_langevin_stream_through_the_command_line_matches_lorentz(tmp_path):
    """Phase-randomised Langevin oscillator (2¹⁸ frames of 2 fs) → aptnn spectrum --eps-inf → CSV: ε', n within
    1 % over 200–3000 cm⁻¹ (measured 2.2·10⁻³, 6.8·10⁻⁴), ε'' and α within 1 % of their peak there (measured
    1.3·10⁻³, 1.1·10⁻³) and pointwise within 1 % across the band ν̃₀ ± 2Γ (measured 6.4·10⁻³: the residual of the
    finite-run correlation estimate). Far in the wings the sampled line's own aliasing (Lorentz tails ∝ 1/ν̃², folded
    at the Nyquist wavenumber) dominates the tiny ε''."""
    path = _langevin_stream(tmp_path / "lorentz.dmdt.h5", 1 << 18, seed=1, gaussian=False)
    out = tmp_path / "eps.csv"
    res = CliRunner().invoke(main, ["spectrum", path, "-o", str(out), "--eps-inf", str(EPS_INF), "--window", "none",
                                    "--max-lag", "1000"])
    assert res.exit_code == 0, res.output
    table = _table(out)
    nu = table["wavenumber_cm-1"]
    eps, ref = _reference(nu)
    sel, band = (nu >= 200) & (nu <= 3000), np.abs(nu - NU0) <= 2 * GAMMA
    assert np.max(np.abs(table["eps_real_dimensionless"] - eps.real)[sel] / eps.real[sel]) < 0.01
    assert np.max(np.abs(table["n_dimensionless"] - ref.n)[sel] / ref.n[sel]) < 0.01
    assert np.max(np.abs(table["eps_imag_dimensionless"] - eps.imag)[sel]) < 0.01 * eps.imag.max()
    assert np.max(np.abs(table["alpha_cm-1"] - ref.alpha)[sel]) < 0.01 * ref.alpha.max()
    assert np.max(np.abs(table["alpha_cm-1"] - ref.alpha)[band] / ref.alpha[band]) < 0.01
    assert np.max(np.abs(table["eps_imag_dimensionless"] - eps.imag)[band] / eps.imag[band]) < 0.01


def test_langevin_realisation_agrees_within_its_statistical_error(tmp_path):
    """A genuine (Gaussian) realisation of the same process, 2¹⁸ frames (524 ps): its statistical noise, ≈ 3 % of
    the peak per point (the block error), makes 1 % impossible at this length (it needs ~10× more frames per halving).
    Asserted: α n consistent with its block errors across ν̃₀ ± 2Γ (mean |z| ≤ 1.5, max ≤ 8: 8 blocks give a t
    distribution with 7 degrees of freedom), and over 200–3000 cm⁻¹ ε'' and α within 8 % of their peaks, n within
    5 %, ε' within 15 % (8 seeds: at most 4.4 %, 5.7 %, 4.3 %, 14 %, max |z| 6; this seed: 3.6 %, 3.1 %, 1.3 %,
    4.4 %, mean |z| 0.85, max 3.2)."""
    path = _langevin_stream(tmp_path / "langevin.dmdt.h5", 1 << 18, seed=0, gaussian=True)
    spec = compute_spectrum([path], max_lag_fs=600, window_name="none", eps_inf=EPS_INF)
    nu, d = spec.wavenumber, spec.dielectric
    eps, ref = _reference(nu)
    sel, band = (nu >= 200) & (nu <= 3000), np.abs(nu - NU0) <= 2 * GAMMA
    z = np.abs(spec.total - ref.alpha * ref.n)[band] / spec.error[band]
    assert z.mean() <= 1.5 and z.max() <= 8
    assert np.max(np.abs(d.eps_imag - eps.imag)[sel]) < 0.08 * eps.imag.max()
    assert np.max(np.abs(d.alpha - ref.alpha)[sel]) < 0.08 * ref.alpha.max()
    assert np.max(np.abs(d.n - ref.n)[sel] / ref.n[sel]) < 0.05
    assert np.max(np.abs(d.eps_real - eps.real)[sel] / eps.real[sel]) < 0.15


def test_bad_dielectric_inputs(tmp_path):
    from test_spectrum import write

    x = np.random.default_rng(3).normal(size=(200, 1, 3))
    with pytest.raises(InputError, match="needs α n in cm⁻¹"):
        compute_spectrum([write(tmp_path / "gas.h5", x, volume_A3=None)], max_lag_fs=5, eps_inf=EPS_INF)
    with_volume = write(tmp_path / "box.h5", x)
    for bad in (-1.0, 0.0, 0.5, np.nan, np.inf):
        with pytest.raises(InputError, match="--eps-inf"):
            compute_spectrum([with_volume], max_lag_fs=5, eps_inf=bad)
    nu = np.arange(0, 100.0, 1.0)
    with pytest.raises(InputError, match="uniform wavenumber grid"):
        kramers_kronig(nu + 1.0, np.zeros_like(nu))
    with pytest.raises(InputError, match="uniform wavenumber grid"):
        kramers_kronig(nu ** 1.5, np.zeros_like(nu))
    with pytest.raises(InputError, match="NaN"):
        kramers_kronig(nu, np.full_like(nu, np.nan))
    with pytest.raises(InputError, match="shape"):
        from_alpha_n(nu, np.zeros(5), EPS_INF)
    with pytest.raises(InputError, match="≥ 1"):
        from_alpha_n(nu, np.zeros_like(nu), 0.9)
    res = CliRunner().invoke(main, ["spectrum", str(tmp_path / "gas.h5"), "-o", str(tmp_path / "o.csv"),
                                    "--max-lag", "5", "--eps-inf", "1.77"])
    assert res.exit_code == 2 and "--volume" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o.csv").exists()
