"""Spectrum engine: correlations against direct sums, sum rule, peaks, decomposition, absolute units."""
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import constants as si

from aptnn import units
from aptnn.correlation import CorrelationAccumulator
from aptnn.errors import InputError
from aptnn.io.stream_writer import StreamWriter
from aptnn.spectrum import compute_spectrum, line_shape, prefactor, qcf_factor, window


def direct(a, b, max_lag, biased):
    """O(N²) reference: ⟨a(0)·a(t)⟩ if b is None, else the symmetrised ⟨a(0)·b(t)⟩ + ⟨b(0)·a(t)⟩."""
    n = len(a)
    out = []
    for tau in range(max_lag + 1):
        if b is None:
            s = np.sum(a[: n - tau] * a[tau:])
        else:
            s = np.sum(a[: n - tau] * b[tau:]) + np.sum(b[: n - tau] * a[tau:])
        out.append(s / (n if biased else n - tau))
    return np.array(out)


def write(path, dmdt, dt=0.5, series=("total",), t0=0.0, **attrs):
    attrs.setdefault("temperature_K", 300.0)
    attrs.setdefault("volume_A3", 1000.0)
    with StreamWriter(path, list(series), dt_fs=dt, **attrs) as w:
        w.append(t0 + dt * np.arange(len(dmdt)), dmdt)
    return str(path)


@pytest.mark.parametrize("biased", [False, True])
def test_streamed_correlation_equals_direct_sum(biased):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2, 3))
    acc = CorrelationAccumulator([(0, 0), (1, 1), (0, 1)], max_lag=40)
    acc.start_trajectory()
    for s in range(0, 300, 23):  # chunks shorter than the lag range too
        if s in (92, 207):
            acc.new_block()
        acc.add(x[s:s + 23])
    corr = acc.correlation(biased)
    np.testing.assert_allclose(corr[0], direct(x[:, 0], None, 40, biased), atol=1e-10)
    np.testing.assert_allclose(corr[1], direct(x[:, 1], None, 40, biased), atol=1e-10)
    np.testing.assert_allclose(corr[2], direct(x[:, 0], x[:, 1], 40, biased), atol=1e-10)
    assert acc.correlation(biased, blocks=True).shape == (3, 3, 41)


@pytest.mark.parametrize("biased", [False, True])
def test_correlation_parts_add_up_per_trajectory(biased):
    rng = np.random.default_rng(14)
    acc = CorrelationAccumulator([(0, 0)], max_lag=10)
    for n in (50, 80, 30):
        acc.start_trajectory()
        x = rng.normal(size=(n, 1, 3))
        acc.add(x[:n // 2])
        acc.new_block()
        acc.add(x[n // 2:])
    parts = acc.correlation_parts(biased)
    assert parts.shape == (3, 1, 11) and acc.block_trajectory == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(parts.sum(0), acc.correlation(biased), rtol=1e-12)


def test_window_shapes():
    for name in ("hann", "hamming", "blackman", "gaussian", "none"):
        w = window(name, 50)
        assert w[0] == pytest.approx(1.0) and np.all(np.diff(w) <= 1e-12)
    assert window("hann", 50)[-1] < 0.01
    with pytest.raises(InputError, match="unknown window"):
        window("kaiser-bessel", 5)


def test_line_shape_matches_direct_fourier_sum():
    rng = np.random.default_rng(1)
    c = rng.normal(size=33)
    w = window("hann", 33)
    omega, shape = line_shape(c, 0.5, w, pad=3)
    tau = np.arange(-32, 33) * 0.5
    cw = np.concatenate([(c * w)[:0:-1], c * w])
    ref = [np.sum(cw * np.cos(o * tau)) * 0.5 / (2 * np.pi) for o in omega[::7]]
    np.testing.assert_allclose(shape[::7], ref, atol=1e-12)


def oscillatory(n, dt, freqs_cm, amps, damp_fs=400.0, seed=0):
    """Sum of randomly phased damped oscillations (each a stationary AR-like process) at given wavenumbers."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * dt
    x = np.zeros((n, 1, 3))
    for f, a in zip(freqs_cm, amps):
        omega = 2 * np.pi * units.C_CM_PER_FS * f
        # a stochastic oscillator: white noise filtered by a damped resonance (Lorentzian line)
        noise = rng.normal(size=(n, 3))
        y = np.zeros((n, 3))
        r = np.exp(-dt / damp_fs)
        c1, c2 = 2 * r * np.cos(omega * dt), -r * r
        for k in range(2, n):
            y[k] = c1 * y[k - 1] + c2 * y[k - 2] + noise[k]
        x[:, 0] += a * y / y.std()
    return t, x


@pytest.mark.parametrize("window_name", ["hann", "none", "gaussian"])
@pytest.mark.parametrize("kind", ["random", "oscillatory"])
def test_sum_rule(tmp_path, window_name, kind):
    dt, temperature, volume = 0.5, 300.0, 2000.0
    if kind == "random":
        x = np.random.default_rng(2).normal(size=(4000, 1, 3))
    else:
        x = oscillatory(4000, dt, [1600, 3400], [1.0, 2.0])[1]
    path = write(tmp_path / "s.h5", x, dt, temperature_K=temperature, volume_A3=volume)
    spec = compute_spectrum([path], max_lag_fs=500, window_name=window_name, pad=2)
    mean_sq = np.mean(np.sum((x[:, 0] - x[:, 0].mean(0)) ** 2, axis=1)) * units.DMDT_TO_SI**2
    beta = 1 / (si.k * temperature)
    expected = np.pi * beta * mean_sq / (6 * volume * 1e-30 * si.c * si.epsilon_0) / 100  # cm⁻¹ · rad/s
    omega_si = 2 * np.pi * si.c * 100 * spec.wavenumber  # rad/s
    integral = np.trapezoid(spec.total, omega_si)
    assert integral == pytest.approx(expected, rel=0.01)


def test_peaks_and_relative_intensities(tmp_path):
    dt = 0.5
    x = oscillatory(40000, dt, [1600, 3400], [1.0, 2.0], damp_fs=300)[1]
    path = write(tmp_path / "p.h5", x, dt)
    spec = compute_spectrum([path], max_lag_fs=1500, pad=4)
    peaks = spec.peaks(2)
    resolution = 1 / (units.C_CM_PER_FS * 1500)
    assert peaks[0] == pytest.approx(1600, abs=2 * resolution)
    assert peaks[1] == pytest.approx(3400, abs=2 * resolution)
    nu = spec.wavenumber
    low = np.trapezoid(spec.total[(nu > 1000) & (nu < 2500)], nu[(nu > 1000) & (nu < 2500)])
    high = np.trapezoid(spec.total[(nu > 2500) & (nu < 4500)], nu[(nu > 2500) & (nu < 4500)])
    assert high / low == pytest.approx(4.0, rel=0.15)  # intensity ∝ amplitude² = 4 : 1


def test_decomposition_adds_up_to_total(tmp_path):
    rng = np.random.default_rng(3)
    g = rng.normal(size=(3000, 3, 3))
    g[:, 1] += 0.7 * g[:, 0]  # correlated groups: non-zero cross terms
    g[:, 2] -= 0.3 * np.roll(g[:, 1], 3, axis=0)
    total = g.sum(1, keepdims=True)
    data = np.concatenate([total, g], axis=1)
    path = write(tmp_path / "d.h5", data, series=["total", "group:O", "group:H", "group:X"])
    spec = compute_spectrum([path], max_lag_fs=100, n_blocks=4)
    parts = sum(spec.components.values())
    assert set(spec.components) == {"group:O", "group:H", "group:X", "group:O|group:H", "group:O|group:X",
                                    "group:H|group:X"}
    assert np.abs(spec.components["group:O|group:H"]).max() > 0.1 * np.abs(spec.total).max()
    np.testing.assert_allclose(parts, spec.total, atol=1e-10 * np.abs(spec.total).max())


def test_absolute_units_classical_harmonic_oscillators(tmp_path):
    """N independent charged classical oscillators: ∫₀^∞ α n dω = π N q² / (2 V c ε₀ m) (rad/s)."""
    rng = np.random.default_rng(4)
    n_osc, temperature, volume_A3 = 400, 300.0, 5000.0
    mass = 16 * si.atomic_mass
    charge = 0.8  # e
    omega0_fs = 2 * np.pi * units.C_CM_PER_FS * 1000.0  # 1000 cm⁻¹ in rad/fs
    sigma_v = np.sqrt(si.k * temperature / mass) * 1e-5  # Å/fs
    sigma_x = sigma_v / omega0_fs
    x0, v0 = rng.normal(scale=sigma_x, size=(n_osc, 3)), rng.normal(scale=sigma_v, size=(n_osc, 3))
    t = np.arange(20000) * 1.0
    v = (-x0[None] * omega0_fs * np.sin(omega0_fs * t)[:, None, None] + v0[None] * np.cos(omega0_fs * t)[:, None, None])
    dmdt = charge * v.sum(1)[:, None, :]  # e·Å/fs
    path = write(tmp_path / "o.h5", dmdt, dt=1.0, temperature_K=temperature, volume_A3=volume_A3)
    spec = compute_spectrum([path], max_lag_fs=2000, remove_mean=False)
    omega_si = 2 * np.pi * si.c * 100 * spec.wavenumber
    integral = np.trapezoid(spec.total * 100, omega_si)  # (m⁻¹)·(rad/s)
    closed = np.pi * n_osc * (charge * si.e) ** 2 / (2 * volume_A3 * 1e-30 * si.c * si.epsilon_0 * mass)
    assert integral == pytest.approx(closed, rel=0.1)  # finite sample of N thermal oscillators
    assert spec.peaks(1)[0] == pytest.approx(1000, abs=15)


def test_cross_section_without_volume(tmp_path):
    x = np.random.default_rng(5).normal(size=(1000, 1, 3))
    with_v = compute_spectrum([write(tmp_path / "a.h5", x, volume_A3=1234.0)], max_lag_fs=50)
    no_v = compute_spectrum([write(tmp_path / "b.h5", x, volume_A3=None)], max_lag_fs=50)
    assert with_v.quantity == "alpha_n_cm-1" and no_v.quantity == "cross_section_cm2"
    np.testing.assert_allclose(no_v.total, with_v.total * 1234.0 * 1e-24, rtol=1e-10)  # σ = α n V (cm)


def test_qcf_factors():
    omega = np.array([0.0, 1e-4, 0.3])
    for name in ("harmonic", "standard", "schofield", "none"):
        f = qcf_factor(name, omega, 300.0)
        assert f[0] == pytest.approx(1.0)
    assert qcf_factor("standard", omega, 300.0)[2] < 1 < qcf_factor("schofield", omega, 300.0)[2]
    assert qcf_factor("none", omega, 300.0)[2] < qcf_factor("standard", omega, 300.0)[2]


def test_blocks_give_error_bars_and_files_average(tmp_path):
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2000, 1, 3)), rng.normal(size=(3000, 1, 3))
    pa, pb = write(tmp_path / "a.h5", a), write(tmp_path / "b.h5", b)
    one = compute_spectrum([pa, pb], max_lag_fs=20, n_blocks=1, remove_mean=False)
    both = compute_spectrum([write(tmp_path / "ab.h5", np.concatenate([a, b]))], max_lag_fs=20, n_blocks=1,
                            remove_mean=False)
    assert not np.allclose(one.total, both.total)  # files are not concatenated (no spurious cross pairs)
    acc_a = direct(a[:, 0], None, 40, False) * np.arange(2000, 1959, -1)
    acc_b = direct(b[:, 0], None, 40, False) * np.arange(3000, 2959, -1)
    corr = (acc_a + acc_b) / (np.arange(2000, 1959, -1) + np.arange(3000, 2959, -1))
    _, shape = line_shape(corr, 0.5, window("hann", 41), pad=4)
    np.testing.assert_allclose(one.total, shape * prefactor(300.0, 1000.0)[0], rtol=1e-8)
    multi = compute_spectrum([pa, pb], max_lag_fs=20, n_blocks=4)
    assert multi.n_blocks == 8 and np.all(multi.error[:50] > 0)


def test_bad_stream_input(tmp_path):
    import h5py
    x = np.random.default_rng(7).normal(size=(100, 1, 3))
    t = 0.5 * np.arange(100)
    t[60:] += 0.5  # a gap
    with StreamWriter(tmp_path / "gap.h5", ["total"], temperature_K=300.0) as w:
        w.append(t, x)
    with pytest.raises(InputError, match=r"frame 60.*|non-uniform") as err:
        compute_spectrum([str(tmp_path / "gap.h5")], max_lag_fs=5)
    assert "frame 60" in str(err.value) and "gap.h5" in str(err.value)
    y = x.copy()
    y[42, 0, 1] = np.nan
    with pytest.raises(InputError, match="frame 42"):
        compute_spectrum([write(tmp_path / "nan.h5", y)], max_lag_fs=5)
    with h5py.File(tmp_path / "missing.h5", "w") as f:
        f["dMdt"] = x
    with pytest.raises(InputError, match="missing dataset 'time'"):
        compute_spectrum([str(tmp_path / "missing.h5")])
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["dMdt"] = x[:, :, :2]
        f["time"] = 0.5 * np.arange(100)
    with pytest.raises(InputError, match="expected \\(n_frames, n_series, 3\\)"):
        compute_spectrum([str(tmp_path / "shape.h5")])
    with pytest.raises(InputError, match="temperature"):
        compute_spectrum([write(tmp_path / "not.h5", x, temperature_K=None)], max_lag_fs=5)


@pytest.mark.parametrize("qcf", ["harmonic", "standard"])
@pytest.mark.parametrize("biased, lengths", [(True, (2000, 3000)), (False, (2500, 2500))])
def test_files_at_different_volume_and_temperature(tmp_path, qcf, biased, lengths):
    """Each file keeps its own β/V (and QCF, finite-difference response): order-independent pair-count average.

    Biased, the pair-count weight of file f is N_f/ΣN at every lag; unbiased with equal lengths it is 1/2.
    """
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(lengths[0], 1, 3)), 3 * rng.normal(size=(lengths[1], 1, 3))
    pa = write(tmp_path / "a.h5", a, temperature_K=300.0, volume_A3=1000.0)
    pb = write(tmp_path / "b.h5", b, temperature_K=600.0, volume_A3=8000.0, velocity_source="central-difference",
               fd_step_fs=0.5)
    kw = dict(max_lag_fs=20, n_blocks=2, biased=biased, qcf=qcf)
    ab, ba = compute_spectrum([pa, pb], **kw), compute_spectrum([pb, pa], **kw)
    one_a, one_b = compute_spectrum([pa], **kw), compute_spectrum([pb], **kw)
    wa, wb = lengths[0] / sum(lengths), lengths[1] / sum(lengths)
    expected = wa * one_a.total + wb * one_b.total
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ab.total, expected, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(ba.total, expected, rtol=1e-9, atol=1e-12 * scale)
    assert ab.integral() == pytest.approx(ba.integral(), rel=1e-12)
    assert ab.integral() == pytest.approx(wa * one_a.integral() + wb * one_b.integral(), rel=1e-9)
    assert ab.n_blocks == 4 and np.isfinite(ab.error).all()
    np.testing.assert_allclose(ab.error, ba.error, rtol=1e-9, atol=1e-12 * scale)
    # an explicit temperature and volume override every file's
    same = compute_spectrum([write(tmp_path / "a1.h5", a, temperature_K=450.0, volume_A3=2000.0),
                             write(tmp_path / "b1.h5", b, temperature_K=450.0, volume_A3=2000.0,
                                   velocity_source="central-difference", fd_step_fs=0.5)], **kw)
    forced = compute_spectrum([pb, pa], temperature_K=450.0, volume_A3=2000.0, **kw)
    np.testing.assert_allclose(forced.total, same.total, rtol=1e-9, atol=1e-12 * np.abs(same.total).max())


def test_files_with_and_without_volume_are_refused(tmp_path):
    x = np.random.default_rng(9).normal(size=(200, 1, 3))
    pv, pn = write(tmp_path / "periodic.h5", x), write(tmp_path / "cluster.h5", x, volume_A3=None)
    for order in ([pv, pn], [pn, pv]):
        with pytest.raises(InputError, match="no volume_A3") as err:
            compute_spectrum(order, max_lag_fs=5)
        assert "periodic.h5" in str(err.value) and "cluster.h5" in str(err.value)
    assert compute_spectrum([pv, pn], max_lag_fs=5, volume_A3=500.0).quantity == "alpha_n_cm-1"


def test_file_lengths_cap_the_lag_whatever_the_order(tmp_path):
    rng = np.random.default_rng(10)
    pa = write(tmp_path / "a.h5", rng.normal(size=(30, 1, 3)))
    pb = write(tmp_path / "b.h5", rng.normal(size=(300, 1, 3)))
    ab = compute_spectrum([pa, pb], max_lag_fs=50, n_blocks=2)
    ba = compute_spectrum([pb, pa], max_lag_fs=50, n_blocks=2)
    capped = compute_spectrum([pb, pa], max_lag_fs=29 * 0.5, n_blocks=2)  # 30 frames: 29 lags of 0.5 fs
    for spec in (ba, capped):
        np.testing.assert_allclose(spec.total, ab.total, rtol=1e-9, atol=1e-12 * np.abs(ab.total).max())


# (id, changes to the stream file, CLI arguments, compute_spectrum keywords (None: CLI only), message pattern)
BAD_INPUTS = [
    ("temperature-zero", {}, ["--temperature", "0"], {"temperature_K": 0.0}, "temperature"),
    ("temperature-negative", {}, ["--temperature", "-5"], {"temperature_K": -5.0}, "temperature"),
    ("temperature-nan", {}, ["--temperature", "nan"], {"temperature_K": np.nan}, "temperature"),
    ("temperature-inf", {}, ["--temperature", "inf"], {"temperature_K": np.inf}, "temperature"),
    ("file-temperature-zero", {"temperature_K": 0.0}, [], {}, "temperature_K"),
    ("file-temperature-nan", {"temperature_K": np.nan}, [], {}, "temperature_K"),
    ("file-temperature-inf", {"temperature_K": np.inf}, [], {}, "temperature_K"),
    ("file-temperature-negative", {"temperature_K": -300.0}, [], {}, "temperature_K"),
    ("volume-zero", {}, ["--volume", "0"], {"volume_A3": 0.0}, "volume"),
    ("volume-negative", {}, ["--volume", "-1e3"], {"volume_A3": -1e3}, "volume"),
    ("volume-nan", {}, ["--volume", "nan"], {"volume_A3": np.nan}, "volume"),
    ("volume-inf", {}, ["--volume", "inf"], {"volume_A3": np.inf}, "volume"),
    ("file-volume-zero", {"volume_A3": 0.0}, [], {}, "volume_A3"),
    ("file-volume-negative", {"volume_A3": -1.0}, [], {}, "volume_A3"),
    ("file-volume-nan", {"volume_A3": np.nan}, [], {}, "volume_A3"),
    ("file-volume-inf", {"volume_A3": np.inf}, [], {}, "volume_A3"),
    ("blocks-zero", {}, ["--blocks", "0"], {"n_blocks": 0}, "blocks"),
    ("blocks-negative", {}, ["--blocks", "-3"], {"n_blocks": -3}, "blocks"),
    ("blocks-too-many", {}, ["--blocks", "101"], {"n_blocks": 101}, "at least 2 frames"),
    ("max-lag-zero", {}, ["--max-lag", "0"], {"max_lag_fs": 0.0}, "maximum lag"),
    ("max-lag-negative", {}, ["--max-lag", "-10"], {"max_lag_fs": -10.0}, "maximum lag"),
    ("max-lag-nan", {}, ["--max-lag", "nan"], {"max_lag_fs": np.nan}, "maximum lag"),
    ("max-lag-inf", {}, ["--max-lag", "inf"], {"max_lag_fs": np.inf}, "maximum lag"),
    ("max-lag-below-step", {}, ["--max-lag", "0.1"], {"max_lag_fs": 0.1}, "shorter than one time step"),
    ("pad-zero", {}, ["--pad", "0"], {"pad": 0}, "pad"),
    ("pad-negative", {}, ["--pad", "-2"], {"pad": -2}, "pad"),
    ("pad-huge", {}, ["--pad", "1000000000"], {"pad": 10**9}, "pad"),
    ("pad-grid-too-large", {}, ["--pad", "100000", "--max-lag", "20"], {"pad": 100000, "max_lag_fs": 20.0},
     "padded grid"),
    ("file-dt-zero", {"dt_fs": 0.0, "step": 0.0}, [], {}, "dt_fs attribute"),
    ("file-dt-negative", {"dt_fs": -0.5, "step": -0.5}, [], {}, "dt_fs attribute"),
    ("file-dt-nan", {"dt_fs": np.nan}, [], {}, "dt_fs attribute"),
    ("file-dt-inf", {"dt_fs": np.inf}, [], {}, "dt_fs attribute"),
    ("time-column-decreasing", {"dt_fs": None, "step": -0.5}, [], {}, "'time' column"),
    ("time-column-constant", {"dt_fs": None, "step": 0.0}, [], {}, "'time' column"),
    ("max-wavenumber-zero", {}, ["--max-wavenumber", "0"], None, "wavenumber"),
    ("max-wavenumber-negative", {}, ["--max-wavenumber", "-1"], None, "wavenumber"),
    ("max-wavenumber-nan", {}, ["--max-wavenumber", "nan"], None, "wavenumber"),
    ("mixed-volume", {"second": {"volume_A3": None}}, [], {}, "no volume_A3"),
    ("eps-inf-negative", {}, ["--eps-inf", "-1.77"], {"eps_inf": -1.77}, "--eps-inf"),
    ("eps-inf-zero", {}, ["--eps-inf", "0"], {"eps_inf": 0.0}, "--eps-inf"),
    ("eps-inf-below-one", {}, ["--eps-inf", "0.5"], {"eps_inf": 0.5}, "must be ≥ 1"),
    ("eps-inf-nan", {}, ["--eps-inf", "nan"], {"eps_inf": np.nan}, "--eps-inf"),
    ("eps-inf-without-volume", {"volume_A3": None}, ["--eps-inf", "1.77"], {"eps_inf": 1.77}, "needs α n in cm⁻¹"),
    ("model-band-scale-zero", {}, ["--model-band-scale", "0"], {"model_band_scale": 0.0}, "--model-band-scale"),
    ("model-band-scale-negative", {}, ["--model-band-scale", "-1"], {"model_band_scale": -1.0},
     "--model-band-scale"),
    ("model-band-scale-inf", {}, ["--model-band-scale", "inf"], {"model_band_scale": np.inf}, "--model-band-scale"),
]


def bad_streams(tmp_path, changes) -> list[str]:
    """A 200-frame stream (dt 0.5 fs, 300 K, 1000 Å³) with ``changes``; 'second' adds another file."""
    changes = dict(changes)
    second = changes.pop("second", None)
    step = changes.pop("step", 0.5)
    attrs = dict(dt_fs=0.5, temperature_K=300.0, volume_A3=1000.0) | changes
    x = np.random.default_rng(11).normal(size=(200, 1, 3))
    paths = [str(tmp_path / "bad.h5")]
    with StreamWriter(paths[0], ["total"], **attrs) as w:
        w.append(step * np.arange(len(x)), x)
    if second is not None:
        paths.append(write(tmp_path / "other.h5", x, **second))
    return paths


@pytest.mark.parametrize("changes, args, kwargs, pattern", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_spectrum_input_cli(tmp_path, changes, args, kwargs, pattern):
    from click.testing import CliRunner

    from aptnn.cli import main

    paths = bad_streams(tmp_path, changes)
    out = str(tmp_path / "spectrum.csv")
    result = CliRunner().invoke(main, ["spectrum", *paths, "-o", out, "--max-lag", "5", *args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.stderr and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith(("aptnn: error:", "Error:"))]
    assert len(errors) == 1, result.stderr
    assert pattern in errors[0], errors[0]
    assert not (tmp_path / "spectrum.csv").exists()


@pytest.mark.parametrize("changes, kwargs, pattern", [(c[1], c[3], c[4]) for c in BAD_INPUTS if c[3] is not None],
                         ids=[c[0] for c in BAD_INPUTS if c[3] is not None])
def test_bad_spectrum_input_python(tmp_path, changes, kwargs, pattern):
    paths = bad_streams(tmp_path, changes)
    with pytest.raises(InputError, match=pattern):
        compute_spectrum(paths, **({"max_lag_fs": 5.0} | kwargs))


def test_bad_plot_limit(tmp_path):
    spec = compute_spectrum([write(tmp_path / "p.h5", np.random.default_rng(12).normal(size=(100, 1, 3)))],
                            max_lag_fs=5)
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(InputError, match="wavenumber"):
            spec.plot(tmp_path / "p.png", max_wavenumber=bad)


def test_default_blocks_fit_short_files(tmp_path):
    """Default 8 blocks per file, fewer (frames // 2 of the shortest file) for short files; explicit is strict."""
    rng = np.random.default_rng(13)
    pa, pb = write(tmp_path / "a.h5", rng.normal(size=(6, 1, 3))), write(tmp_path / "b.h5", rng.normal(size=(9, 1, 3)))
    spec = compute_spectrum([pa, pb], max_lag_fs=1.0)
    assert spec.n_blocks == 6 and np.isfinite(spec.total).all() and np.isfinite(spec.error).all()
    assert compute_spectrum([write(tmp_path / "c.h5", rng.normal(size=(40, 1, 3)))], max_lag_fs=2).n_blocks == 8
    with pytest.raises(InputError, match="a.h5: 4 blocks .* use at most 3 blocks"):
        compute_spectrum([pa, pb], max_lag_fs=1.0, n_blocks=4)


def test_sampling_too_coarse_for_4000_cm_is_refused_unless_the_range_is_lowered(tmp_path):
    """Every 10th step of 0.5 fs (5 fs) represents only 3336 cm⁻¹: the O–H stretch would alias."""
    from aptnn.cli import main

    x = np.random.default_rng(3).normal(size=(400, 1, 3))
    path = tmp_path / "coarse.h5"
    with StreamWriter(path, ["total"], dt_fs=5.0, temperature_K=300.0, volume_A3=1000.0) as w:
        w.append(5.0 * np.arange(400), x)
    with pytest.raises(InputError, match="represents only up to 3336 cm⁻¹"):
        compute_spectrum([path], max_lag_fs=200)
    res = CliRunner().invoke(main, ["spectrum", str(path), "-o", str(tmp_path / "s.csv")])
    assert res.exit_code == 2 and "--max-wavenumber 3335" in res.stderr
    res = CliRunner().invoke(main, ["spectrum", str(path), "-o", str(tmp_path / "s.csv"),
                                                    "--max-wavenumber", "3300"])
    assert res.exit_code == 0, res.stderr
    assert compute_spectrum([path], max_lag_fs=200, required_wavenumber=3300).wavenumber[-1] == pytest.approx(
        3335.6, abs=0.1)
