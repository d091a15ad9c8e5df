"""Raman spectra from dα/dt: invariants, VV/VH/ρ, rotational invariance, input layouts, peaks, absolute units."""
import numpy as np
import pytest
from scipy import constants as si
from scipy.spatial.transform import Rotation

from aptnn import units
from aptnn.errors import InputError
from aptnn.raman import VOIGT, invariant_components, raman_of_runs, raman_spectrum
from aptnn.spectrum import Run

DT = 0.5   # fs


def omega(wavenumber_cm):
    return 2 * np.pi * units.C_CM_PER_FS * wavenumber_cm   # rad/fs


def oscillation(n, wavenumber_cm, tensor, phase=0.0):
    """dα/dt (n, 3, 3) of α(t) = cos(ωt + φ)·tensor, sampled exactly every DT fs."""
    t = np.arange(n) * DT
    w = omega(wavenumber_cm)
    return (-w * np.sin(w * t + phase))[:, None, None] * np.asarray(tensor, dtype=float)


def to_voigt(x):
    return np.stack([x[:, i, j] for i, j in VOIGT], axis=1)


def random_series(n=3000, seed=0):
    """Symmetric dα/dt (n, 3, 3): three oscillators with random tensors and phases plus white noise."""
    rng = np.random.default_rng(seed)
    out = 0.1 * rng.normal(size=(n, 3, 3))
    for nu in (800.0, 1650.0, 3300.0):
        out += oscillation(n, nu, rng.normal(size=(3, 3)), rng.uniform(0, 2 * np.pi))
    return (out + out.transpose(0, 2, 1)) / 2


def band(spec, values, lo, hi):
    sel = (spec.wavenumber > lo) & (spec.wavenumber < hi)
    return np.trapezoid(values[sel], spec.wavenumber[sel])


def test_invariants_give_mean_and_long_anisotropy():
    v = np.random.default_rng(1).normal(size=(50, 6))
    xx, yy, zz, yz, xz, xy = v.T
    gamma2 = 0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3 * (xy ** 2 + yz ** 2 + xz ** 2)
    c = invariant_components(v)
    np.testing.assert_allclose(c[:, 0], (xx + yy + zz) / 3, rtol=1e-14)
    np.testing.assert_allclose((c[:, 1:] ** 2).sum(1), gamma2, rtol=1e-12)
    full = np.zeros((50, 3, 3))
    for k, (i, j) in enumerate(VOIGT):
        full[:, i, j] = full[:, j, i] = v[:, k]
    beta = full - c[:, 0, None, None] * np.eye(3)
    np.testing.assert_allclose(gamma2, 1.5 * np.einsum("nij,nji->n", beta, beta), rtol=1e-12)


def test_isotropic_oscillation_is_polarised():
    spec = raman_spectrum(oscillation(8000, 1000.0, np.eye(3)), DT, 300.0, max_lag_fs=1000)
    step = spec.wavenumber[1]
    peak = np.argmax(spec.iso)
    assert spec.wavenumber[peak] == pytest.approx(1000.0, abs=2 * step)
    assert np.argmax(spec.vv) == peak
    np.testing.assert_array_equal(spec.vv, spec.iso)
    np.testing.assert_array_equal(spec.aniso, 0.0)
    np.testing.assert_array_equal(spec.vh, 0.0)
    assert spec.depolarization[peak] == 0.0
    assert np.nanmax(np.abs(spec.depolarization)) == 0.0


def test_anisotropic_oscillation_is_depolarised():
    traceless = [[1.0, 0.3, 0.0], [0.3, -0.4, 0.2], [0.0, 0.2, -0.6]]
    spec = raman_spectrum(oscillation(8000, 1500.0, traceless), DT, 300.0, max_lag_fs=1000)
    peak = np.argmax(spec.vv)
    assert spec.wavenumber[peak] == pytest.approx(1500.0, abs=2 * spec.wavenumber[1])
    assert np.max(np.abs(spec.iso)) < 1e-12 * np.max(spec.aniso)
    assert spec.depolarization[peak] == pytest.approx(0.75, rel=1e-9)
    assert spec.vh[peak] / spec.vv[peak] == pytest.approx(0.75, rel=1e-9)


def test_rotation_leaves_spectra_unchanged():
    x = random_series()
    rotation = Rotation.from_euler("zyx", [0.7, -1.1, 2.3]).as_matrix()
    rotated = np.einsum("ia,nab,jb->nij", rotation, x, rotation)
    ref, rot = (raman_spectrum(d, DT, 300.0, max_lag_fs=500, pad=2) for d in (x, rotated))
    for name in ("iso", "aniso", "vv", "vh"):
        a, b = getattr(ref, name), getattr(rot, name)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * np.max(np.abs(a)), err_msg=name)


def test_vv_and_vh_are_orientational_averages_of_lab_components():
    """The 4/45 and 3/45: VV (VH) equals the spectrum of α̇_zz (α̇_zx) averaged over the 60 rotations of the
    icosahedral group, which average every polynomial of degree ≤ 5 in the rotation matrix exactly."""
    x = random_series(1500, seed=2)
    spec = raman_spectrum(x, DT, 300.0, max_lag_fs=300, pad=1)
    vv = vh = 0.0
    group = Rotation.create_group("I").as_matrix()
    for r in group:
        lab = np.einsum("ia,nab,jb->nij", r, x, r)
        for comp, (i, j) in ((0, (2, 2)), (1, (2, 0))):
            scalar = lab[:, i, j, None, None] * np.eye(3)   # a(t)·I: its iso spectrum is that of the scalar
            part = raman_spectrum(scalar, DT, 300.0, max_lag_fs=300, pad=1).iso / len(group)
            vv, vh = (vv + part, vh) if comp == 0 else (vv, vh + part)
    np.testing.assert_allclose(vv, spec.vv, rtol=0, atol=1e-10 * np.max(spec.vv))
    np.testing.assert_allclose(vh, spec.vh, rtol=0, atol=1e-10 * np.max(spec.vv))


def test_voigt_and_tensor_inputs_agree():
    x = random_series(2000, seed=3)
    a = raman_spectrum(x, DT, 300.0, max_lag_fs=400, n_blocks=4)
    b = raman_spectrum(to_voigt(x), DT, 300.0, max_lag_fs=400, n_blocks=4)
    for name in ("wavenumber", "iso", "aniso", "vv", "vh", "depolarization"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in a.error:
        np.testing.assert_array_equal(a.error[name], b.error[name])
    assert np.isfinite(a.error["vv"]).all() and a.n_blocks == 4


def test_two_oscillators_intensity_ratio_is_amplitude_squared():
    n = 20000
    x = oscillation(n, 1600.0, np.eye(3) / omega(1600.0)) + oscillation(n, 3400.0, 2 * np.eye(3) / omega(3400.0))
    spec = raman_spectrum(x, DT, 300.0, max_lag_fs=1500)  # dα/dt amplitudes 1 and 2 (e·Å²/(V·fs))
    low, high = spec.wavenumber < 2500, spec.wavenumber > 2500
    peaks = [spec.wavenumber[low][np.argmax(spec.vv[low])], spec.wavenumber[high][np.argmax(spec.vv[high])]]
    assert peaks[0] == pytest.approx(1600.0, abs=2 * spec.wavenumber[1])
    assert peaks[1] == pytest.approx(3400.0, abs=2 * spec.wavenumber[1])
    for values in (spec.iso, spec.vv):
        assert band(spec, values, 2500, 4500) / band(spec, values, 1000, 2500) == pytest.approx(4.0, rel=0.02)


@pytest.mark.parametrize("window_name", ["hann", "none"])
def test_reduced_sum_rule_in_absolute_units(window_name):
    """∫R_iso dν̃ = β⟨ȧ²⟩ (Å⁴/amu) exactly, with ȧ in Å³/fs (α/4πε₀) and k_BT in amu·Å²/fs²."""
    x = random_series(2000, seed=4)
    temperature = 250.0
    spec = raman_spectrum(x, DT, temperature, max_lag_fs=400, pad=2, window_name=window_name)
    a = np.trace(x, axis1=1, axis2=2) / 3
    a = (a - a.mean()) * si.e * 1e-20 / (4 * np.pi * si.epsilon_0 * 1e-30)   # Å³/fs
    kt = si.k * temperature / (si.atomic_mass * 1e-20 / 1e-30)                # amu·Å²/fs²
    assert np.trapezoid(spec.iso, spec.wavenumber) == pytest.approx(np.mean(a ** 2) / kt, rel=1e-10)


@pytest.mark.parametrize("volume", [None, 800.0])
def test_absolute_form_is_reduced_times_documented_factor(volume):
    x = random_series(2000, seed=5)
    temperature, laser = 310.0, 532.0
    kw = dict(max_lag_fs=400, volume_A3=volume)
    red = raman_spectrum(x, DT, temperature, **kw)
    ab = raman_spectrum(x, DT, temperature, form="absolute", laser_nm=laser, **kw)
    nu = red.wavenumber * 100                        # m⁻¹
    nu0 = 1 / (laser * 1e-9)                         # m⁻¹
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = ((2 * np.pi) ** 4 * (nu0 - nu) ** 4 * si.h / (8 * np.pi ** 2 * si.c * nu)
                  / (1 - np.exp(-si.h * si.c * nu / (si.k * temperature))))   # m⁻⁴ · kg·m² (per Å⁴/amu·cm → m³)
    factor = factor * 1e-40 / si.atomic_mass * 1e-2 * 1e6                     # → cm²·sr⁻¹ per cm⁻¹
    if volume is not None:
        factor = factor / (volume * 1e-24)                                    # per cm³
    inside = (nu > 0) & (nu < nu0)
    assert inside.sum() > 100 and (nu >= nu0).any()
    for name in ("iso", "aniso", "vv", "vh"):
        np.testing.assert_allclose(getattr(ab, name)[inside], getattr(red, name)[inside] * factor[inside],
                                   rtol=1e-10, err_msg=name)
        assert np.isnan(getattr(ab, name)[0]) and np.all(getattr(ab, name)[nu >= nu0] == 0)
        np.testing.assert_allclose(ab.error[name][inside], red.error[name][inside] * factor[inside], rtol=1e-10)
    np.testing.assert_array_equal(ab.depolarization, red.depolarization)
    assert red.unit == "A4_amu-1_per_cm-1"
    assert ab.unit == ("cm2_sr-1_per_cm-1" if volume is None else "cm-1_sr-1_per_cm-1")
    assert ab.units["dadt"] == units.POLARIZABILITY_DERIVATIVE


def test_runs_are_pooled_with_their_own_temperature():
    a, b = random_series(1500, seed=6), random_series(1500, seed=7)
    both = raman_spectrum([a, b], DT, [300.0, 400.0], max_lag_fs=300)
    one, two = raman_spectrum(a, DT, 300.0, max_lag_fs=300), raman_spectrum(b, DT, 400.0, max_lag_fs=300)
    for name in ("iso", "aniso", "vv", "vh"):   # equal lengths: pair-count weights ½, ½
        np.testing.assert_allclose(getattr(both, name), (getattr(one, name) + getattr(two, name)) / 2,
                                   rtol=0, atol=1e-12 * np.max(np.abs(getattr(one, name))))


def test_engine_averages_the_series_of_a_run():
    a, b = to_voigt(random_series(1200, seed=8)), to_voigt(random_series(1200, seed=9))
    run = Run("beads", 1200, 300.0, None, lambda names, start, stop: iter([np.stack([a, b], 1)[start:stop]]))
    both = raman_of_runs([run], DT, max_lag=400, n_blocks=1, series=["bead0", "bead1"])
    one, two = (raman_spectrum(x, DT, 300.0, max_lag_fs=200, n_blocks=1) for x in (a, b))
    for name in ("iso", "aniso", "vv", "vh"):
        np.testing.assert_allclose(getattr(both, name), (getattr(one, name) + getattr(two, name)) / 2,
                                   rtol=0, atol=1e-12 * np.max(np.abs(getattr(one, name))))


def test_csv_columns(tmp_path):
    spec = raman_spectrum(random_series(1000), DT, 300.0, max_lag_fs=200)
    path = tmp_path / "raman.csv"
    spec.write_csv(path)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["wavenumber_cm-1", "iso_A4_amu-1_per_cm-1", "iso_A4_amu-1_per_cm-1_err"]
    assert header[-1] == "depolarization_ratio_dimensionless"
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_allclose(data[:, header.index("vh_A4_amu-1_per_cm-1")], spec.vh)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dadt=np.zeros((100, 5))), "expected"),
    (dict(dadt=np.full((100, 6), np.nan)), "NaN"),
    (dict(form="stokes"), "unknown Raman form"),
    (dict(form="absolute"), "laser_nm"),
    (dict(form="absolute", laser_nm=-1.0), "laser wavelength"),
    (dict(dt_fs=5.0), "represents only"),
    (dict(temperature_K=0.0), "temperature_K"),
    (dict(window_name="kaiser"), "unknown window"),
])
def test_bad_inputs(kwargs, message):
    args = dict(dadt=np.ones((100, 6)), dt_fs=DT, temperature_K=300.0) | kwargs
    with pytest.raises(InputError, match=message):
        raman_spectrum(args.pop("dadt"), args.pop("dt_fs"), args.pop("temperature_K"), **args)
