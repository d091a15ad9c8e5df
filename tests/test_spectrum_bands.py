"""Committee model bands: member series never averaged in, member spectra with the same settings in the same pass,
σ_model = scale × std (ddof 1), combined with the block error, CSV/plot/summary, checks across files, array API."""
import re

import numpy as np
import pytest
from click.testing import CliRunner
from test_spectrum import oscillatory, write

from aptnn.cli import main
from aptnn.errors import InputError
from aptnn.spectrum import compute_spectrum, select_series
from aptnn.spectrum_bands import committee_spectrum

AMPLITUDES = (0.8, 1.0, 1.1, 1.3)   # member k's dM/dt = a_k · x: member spectra a_k² S_x exactly


def base_signal(n=3000, dt=0.5, seed=0):
    return oscillatory(n, dt, [1600, 3400], [0.05, 0.1], damp_fs=200, seed=seed)[1][:, 0]   # (n, 3) e·Å/fs


def committee_stream(path, x, amplitudes=AMPLITUDES, extra=(), **attrs):
    """Stream with total = mean of the members, the ``extra`` series (name, values) and member0… = a_k · x."""
    members = [a * x for a in amplitudes]
    series = ["total", *[name for name, _ in extra], *[f"member{k}" for k in range(len(members))]]
    data = np.stack([np.mean(members, 0), *[v for _, v in extra], *members], axis=1)
    return write(path, data, series=series, **attrs)


def test_select_series_never_averages_members_unless_named():
    available = ["total", "group:O", "group:H", "member0", "member1"]
    assert select_series(available, None) == ["total"]
    assert select_series(available, ["*"]) == ["total", "group:O", "group:H"]
    assert select_series(available, ["member1"]) == ["member1"]
    assert select_series(available, ["member*"]) == ["member0", "member1"]
    for pattern in ("m*", "*0", "*member*"):
        with pytest.raises(InputError, match="no series matches"):
            select_series(available, [pattern])
    assert select_series(["member0", "member1", "bead0", "bead1"], None) == ["bead0"]


def test_member_spectra_use_exactly_the_settings_of_the_total(tmp_path):
    """Two files at different β/V (one with a finite-difference response), standard QCF, 3 blocks: each member
    spectrum equals the spectrum of that series alone, the total and its error are those without members."""
    x, y = base_signal(seed=1), base_signal(2500, seed=2)
    pa = committee_stream(tmp_path / "a.h5", x, temperature_K=300.0, volume_A3=1000.0, uncertainty_scale=1.5)
    pb = committee_stream(tmp_path / "b.h5", y, temperature_K=350.0, volume_A3=1500.0, uncertainty_scale=1.5,
                          velocity_source="central-difference", fd_step_fs=0.5)
    kw = dict(max_lag_fs=300, qcf="standard", n_blocks=3, pad=2)
    spec = compute_spectrum([pa, pb], **kw)
    plain = compute_spectrum([pa, pb], members=False, **kw)
    assert spec.member_series == ["member0", "member1", "member2", "member3"] and plain.member_values is None
    np.testing.assert_array_equal(spec.total, plain.total)
    np.testing.assert_array_equal(spec.error, plain.error)
    scale = np.abs(spec.member_values).max()
    for k in range(4):
        alone = compute_spectrum([pa, pb], series=[f"member{k}"], members=False, **kw)
        np.testing.assert_allclose(spec.member_values[k], alone.total, rtol=1e-10, atol=1e-13 * scale)
    assert spec.uncertainty_scale == 1.5
    np.testing.assert_allclose(spec.model_std, 1.5 * spec.member_values.std(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(spec.combined_std, np.sqrt(spec.model_std**2 + spec.stat_std**2), rtol=1e-12)
    assert spec.stat_std is spec.error and spec.n_blocks == 6
    integrals = np.trapezoid(spec.member_values, spec.wavenumber, axis=1)
    assert spec.integral_model_std() == pytest.approx(1.5 * integrals.std(ddof=1), rel=1e-12)
    assert 0 < spec.integral_error < spec.integral()


def test_member_spread_is_exact_for_scaled_members(tmp_path):
    """Members a_k·x: member spectra a_k² S, total (mean a)² S, σ_model = std(a², ddof 1) S to rounding."""
    x = base_signal(seed=3)
    single = compute_spectrum([write(tmp_path / "x.h5", x[:, None, :])], max_lag_fs=300)
    spec = compute_spectrum([committee_stream(tmp_path / "c.h5", x)], max_lag_fs=300)
    a = np.array(AMPLITUDES)
    tol = 1e-12 * np.abs(single.total).max()
    np.testing.assert_allclose(spec.member_values, a[:, None] ** 2 * single.total, rtol=1e-10, atol=tol)
    np.testing.assert_allclose(spec.total, a.mean() ** 2 * single.total, rtol=1e-10, atol=tol)
    np.testing.assert_allclose(spec.model_std, np.std(a**2, ddof=1) * np.abs(single.total), rtol=1e-9, atol=tol)
    same = compute_spectrum([committee_stream(tmp_path / "s.h5", x, amplitudes=(1.0, 1.0, 1.0))], max_lag_fs=300)
    assert np.abs(same.model_std).max() <= 1e-12 * np.abs(same.total).max()


def test_members_are_read_in_the_same_pass(tmp_path, monkeypatch):
    from aptnn import spectrum

    path = committee_stream(tmp_path / "c.h5", base_signal(seed=4))
    calls = []
    original = spectrum.read_chunks

    def counting(path, names, *args, **kwargs):
        calls.append(list(names))
        return original(path, names, *args, **kwargs)

    monkeypatch.setattr(spectrum, "read_chunks", counting)
    compute_spectrum([path], max_lag_fs=100, members=False)
    without = len(calls)
    calls.clear()
    compute_spectrum([path], max_lag_fs=100)
    assert len(calls) == without and all(names[-4:] == [f"member{k}" for k in range(4)] for names in calls)


def test_uncertainty_scale_attribute_override_and_checks(tmp_path):
    x = base_signal(800, seed=5)
    plain = committee_stream(tmp_path / "plain.h5", x)
    assert compute_spectrum([plain], max_lag_fs=50).uncertainty_scale == 1.0
    scaled = committee_stream(tmp_path / "scaled.h5", x, uncertainty_scale=1.5)
    one, other = compute_spectrum([scaled], max_lag_fs=50), compute_spectrum([plain], max_lag_fs=50)
    np.testing.assert_allclose(one.model_std, 1.5 * other.model_std, rtol=1e-12)
    assert compute_spectrum([scaled], max_lag_fs=50, model_band_scale=2.0).uncertainty_scale == 2.0
    with pytest.raises(InputError, match=r"uncertainty_scale 1 differs from 1.5 .*--model-band-scale"):
        compute_spectrum([scaled, plain], max_lag_fs=50)
    assert compute_spectrum([scaled, plain], max_lag_fs=50, model_band_scale=1.2).uncertainty_scale == 1.2
    for bad in (-1.0, 0.0, np.nan):
        path = committee_stream(tmp_path / f"bad{bad}.h5", x, uncertainty_scale=bad)
        with pytest.raises(InputError, match="uncertainty_scale attribute") as err:
            compute_spectrum([path], max_lag_fs=50)
        assert f"bad{bad}.h5" in str(err.value)
        with pytest.raises(InputError, match="--model-band-scale"):
            compute_spectrum([plain], max_lag_fs=50, model_band_scale=bad)
    assert compute_spectrum([path], max_lag_fs=50, members=False).member_values is None  # not read: no band


def test_committees_must_agree_between_files(tmp_path):
    x = base_signal(800, seed=6)
    four = committee_stream(tmp_path / "four.h5", x)
    two = committee_stream(tmp_path / "two.h5", x, amplitudes=(0.9, 1.1))
    for order in ([four, two], [two, four]):
        with pytest.raises(InputError, match="same committee in every file") as err:
            compute_spectrum(order, max_lag_fs=50)
        assert "four.h5" in str(err.value) and "two.h5" in str(err.value) and "--no-members" in str(err.value)
    assert compute_spectrum([four, two], max_lag_fs=50, members=False).member_values is None
    out = tmp_path / "o.csv"
    res = CliRunner().invoke(main, ["spectrum", four, two, "-o", str(out), "--max-lag", "50"])
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("aptnn: error:")]
    assert len(errors) == 1 and "same committee" in errors[0] and not out.exists()
    res = CliRunner().invoke(main, ["spectrum", four, two, "-o", str(out), "--max-lag", "50", "--no-members"])
    assert res.exit_code == 0, res.stderr


def test_member_names_must_run_from_zero(tmp_path):
    x = base_signal(300, seed=7)[:, None, :]
    path = write(tmp_path / "gap.h5", np.concatenate([x, x, x], 1), series=["total", "member0", "member2"])
    with pytest.raises(InputError, match=r"gap.h5: .*expected member0…member1"):
        compute_spectrum([path], max_lag_fs=20)
    single = write(tmp_path / "one.h5", np.concatenate([x, x], 1), series=["total", "member0"])
    with pytest.warns(UserWarning, match="single committee member"):
        assert compute_spectrum([single], max_lag_fs=20).member_values is None


def test_pimd_committee_band_of_the_centroid(tmp_path):
    x = base_signal(1500, seed=8)
    beads = [("bead0", 1.01 * x), ("bead1", 0.99 * x)]
    members = [a * x for a in AMPLITUDES]
    series = ["centroid", "bead0", "bead1", *[f"member{k}" for k in range(4)]]
    data = np.stack([np.mean(members, 0), *[b for _, b in beads], *members], axis=1)
    path = write(tmp_path / "pimd.h5", data, series=series)
    spec = compute_spectrum([path], max_lag_fs=200)
    assert spec.series == ["centroid"] and spec.n_members == 4
    with pytest.warns(UserWarning, match="model band comes from the member series"):
        assert compute_spectrum([path], max_lag_fs=200, series=["*"]).series == ["centroid", "bead0", "bead1"]
    with pytest.warns(UserWarning, match="model band comes from the member series"):
        beads_spec = compute_spectrum([path], max_lag_fs=200, series=["bead*"])
    np.testing.assert_array_equal(beads_spec.model_std, spec.model_std)


def test_command_line_columns_plot_and_summary(tmp_path):
    path = committee_stream(tmp_path / "c.dmdt.h5", base_signal(seed=9), uncertainty_scale=1.5,
                            extra=[("group:O", 0.4 * base_signal(seed=9)), ("group:H", 0.6 * base_signal(seed=9))])
    out, png = tmp_path / "s.csv", tmp_path / "s.png"
    res = CliRunner().invoke(main, ["spectrum", path, "-o", str(out), "--plot", str(png), "--max-lag", "300"])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["wavenumber_cm-1", "alpha_n_cm-1", "alpha_n_cm-1_err", "group:O_cm-1", "group:H_cm-1",
                      "group:O|group:H_cm-1", "member0_cm-1", "member1_cm-1", "member2_cm-1", "member3_cm-1",
                      "model_std_cm-1", "stat_std_cm-1", "combined_std_cm-1"]
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    spec = compute_spectrum([path], max_lag_fs=300)
    np.testing.assert_allclose(table[:, 10], spec.model_std, rtol=1e-7)
    np.testing.assert_allclose(table[:, 11], spec.error, rtol=1e-7)
    np.testing.assert_allclose(table[:, 12], spec.combined_std, rtol=1e-7)
    match = re.search(r"integrated intensity ([\d.e+-]+) cm⁻² ± ([\d.e+-]+) \(model: 4 members × 1.5\) ± "
                      r"([\d.e+-]+) \(statistical: 8 blocks\)", res.output)
    assert match, res.output
    assert float(match.group(2)) == pytest.approx(spec.integral_model_std(), rel=1e-2)
    assert float(match.group(3)) == pytest.approx(spec.integral_error, rel=1e-2)
    assert png.stat().st_size > 10_000
    info = spec.plot(tmp_path / "p.png")
    assert info["legend"][:3] == ["total", "± combined (model ⊕ statistical, 8 blocks)", "± model (4 members × 1.5)"]
    res = CliRunner().invoke(main, ["spectrum", path, "-o", str(out), "--max-lag", "300", "--model-band-scale", "3"])
    assert res.exit_code == 0 and "(model: 4 members × 3)" in res.output
    np.testing.assert_allclose(np.loadtxt(out, delimiter=",", skiprows=1)[:, 10], 2 * spec.model_std, rtol=1e-7)
    res = CliRunner().invoke(main, ["spectrum", path, "-o", str(out), "--max-lag", "300", "--no-members"])
    assert res.exit_code == 0 and "model" not in res.output
    assert out.read_text().splitlines()[0].split(",")[-1] == "group:O|group:H_cm-1"
    res = CliRunner().invoke(main, ["spectrum", path, "-o", str(out), "--max-lag", "300", "--model-band-scale", "0"])
    assert res.exit_code == 2 and "--model-band-scale" in res.stderr


def test_cross_section_committee_columns(tmp_path):
    path = committee_stream(tmp_path / "gas.h5", base_signal(600, seed=10), volume_A3=None)
    spec = compute_spectrum([path], max_lag_fs=50)
    spec.write_csv(tmp_path / "g.csv")
    header = (tmp_path / "g.csv").read_text().splitlines()[0].split(",")
    assert header[-3:] == ["model_std_cm2", "stat_std_cm2", "combined_std_cm2"]
    assert spec.summary().split("integrated intensity ")[1].split(" ± ")[0].endswith(" cm")


def test_array_api_equals_stream_files(tmp_path):
    """committee_spectrum on arrays (two runs, own T/V) = compute_spectrum on the same data in stream files."""
    x, y = base_signal(2000, seed=11), base_signal(1600, seed=12)
    runs = [np.stack([a * x for a in AMPLITUDES]), np.stack([a * y for a in AMPLITUDES])]
    files = [committee_stream(tmp_path / "a.h5", x, temperature_K=300.0, volume_A3=1000.0),
             committee_stream(tmp_path / "b.h5", y, temperature_K=320.0, volume_A3=1100.0)]
    kw = dict(max_lag_fs=250, n_blocks=4, eps_inf=1.77)
    arrays = committee_spectrum(runs, 0.5, [300.0, 320.0], [1000.0, 1100.0], uncertainty_scale=1.3, **kw)
    streams = compute_spectrum(files, model_band_scale=1.3, **kw)
    for name in ("total", "error", "member_values", "model_std", "combined_std", "wavenumber"):
        np.testing.assert_allclose(getattr(arrays, name), getattr(streams, name), rtol=1e-10,
                                   atol=1e-13 * np.abs(streams.total).max())
    assert arrays.integral_error == pytest.approx(streams.integral_error, rel=1e-10)
    np.testing.assert_allclose(arrays.dielectric.alpha, streams.dielectric.alpha, rtol=1e-9)
    # an explicit mean series (e.g. a committee mean computed in float32) is used as given
    one = committee_spectrum(runs[0], 0.5, 300.0, 1000.0, mean_dmdt=2 * x, max_lag_fs=250)
    ref = committee_spectrum(runs[0], 0.5, 300.0, 1000.0, max_lag_fs=250)
    np.testing.assert_allclose(one.total, 4 / np.mean(AMPLITUDES) ** 2 * ref.total, rtol=1e-9,
                               atol=1e-12 * np.abs(one.total).max())
    np.testing.assert_array_equal(one.member_values, ref.member_values)


def test_array_api_bad_inputs():
    x = base_signal(200, seed=13)
    members = np.stack([x, 1.1 * x])
    cases = [
        (dict(member_dmdt=x[None]), "n_members ≥ 2"),
        (dict(member_dmdt=members[:, :, :2]), "expected"),
        (dict(member_dmdt=[members, np.stack([x, x, x])]), "same in every run"),
        (dict(member_dmdt=np.where(np.arange(200)[None, :, None] == 7, np.nan, members)), "NaN"),
        (dict(member_dmdt=members, mean_dmdt=x[:100]), "mean dM/dt"),
        (dict(member_dmdt=members, uncertainty_scale=-1.0), "uncertainty_scale"),
        (dict(member_dmdt=members, volume_A3=None, eps_inf=1.77), "volume"),
        (dict(member_dmdt=members, eps_inf=0.5), "--eps-inf"),
        (dict(member_dmdt=members, dt_fs=0.0), "dt_fs"),
        (dict(member_dmdt=[members, members], temperature_K=[300.0, 300.0, 300.0]), "one per run"),
    ]
    for kwargs, pattern in cases:
        args = dict(dt_fs=0.5, temperature_K=300.0, volume_A3=1000.0, max_lag_fs=10) | kwargs
        with pytest.raises(InputError, match=pattern):
            committee_spectrum(**args)
