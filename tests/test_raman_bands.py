"""Raman group decomposition and committee model band: groups + cross terms add up to the total (iso, aniso, VV,
VH), a group without dα/dt contributes nothing, member spectra give σ_model = scale × std (ddof 1), the array API
gives the numbers of the files, and `aptnn spectrum --raman` writes (or with --no-decompose / --no-members omits)
the new columns. Streams are synthetic (StreamWriter), a few thousand frames, short correlations."""
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from aptnn import units
from aptnn.cli import main
from aptnn.errors import InputError
from aptnn.io.stream_writer import StreamWriter
from aptnn.raman import POLARISATIONS, VOIGT, compute_raman, raman_spectrum

DT = 0.5          # fs
N = 3000          # frames
MAX_LAG = 250.0   # fs
UNIT = "A4_amu-1_per_cm-1"


def signal(n, seed, wavenumbers=(1000.0, 1600.0, 3400.0)):
    """dα/dt (n, 6) Voigt, e·Å²/(V·fs): damped-free oscillations with random symmetric tensors plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * DT
    out = 0.02 * rng.normal(size=(n, 3, 3))
    for nu in wavenumbers:
        w = 2 * np.pi * units.C_CM_PER_FS * nu
        a = rng.normal(size=(3, 3))
        out = out + np.sin(w * t + rng.uniform(0, 6))[:, None, None] * (a + a.T)
    return np.stack([(out[:, i, j] + out[:, j, i]) / 2 for i, j in VOIGT], axis=1)


def write(path, series, dadt, temperature_K=300.0, **attrs):
    """Stream with ``series`` and dα/dt (n, len(series), 6); dM/dt is noise (not used here)."""
    n = len(dadt)
    dmdt = np.random.default_rng(9).normal(size=(n, len(series), 3))
    with StreamWriter(path, series, dt_fs=DT, temperature_K=temperature_K, volume_A3=1000.0, polarizability=True,
                      **attrs) as w:
        w.append(DT * np.arange(n), dmdt, dadt=dadt)
    return str(path)


def group_stream(path, n=N, seed=0, **attrs):
    """total = O + H (+ Z, which is zero)."""
    o, h = signal(n, seed), signal(n, seed + 1, (1200.0, 3000.0))
    z = np.zeros_like(o)
    return write(path, ["total", "group:O", "group:H", "group:Z"], np.stack([o + h, o, h, z], axis=1), **attrs)


def committee_stream(path, factors, n=N, seed=5, **attrs):
    """total = x, member k = factors[k] · x: member spectra are factors[k]² × the total's, exactly."""
    x = signal(n, seed)
    series = ["total", *[f"member{k}" for k in range(len(factors))]]
    return write(path, series, np.stack([x, *[f * x for f in factors]], axis=1), **attrs)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    d = tmp_path_factory.mktemp("groups")
    return group_stream(d / "a.h5"), group_stream(d / "b.h5", n=2500, seed=7, temperature_K=350.0)


@pytest.mark.parametrize("kw", [{}, {"form": "absolute", "laser_nm": 532.0, "qcf": "standard", "n_blocks": 3}])
def test_groups_and_cross_terms_add_up_to_the_total(groups, kw):
    spec = compute_raman(list(groups), max_lag_fs=MAX_LAG, **kw)   # two runs at different temperatures
    names = ["group:O", "group:H", "group:Z", "group:O|group:H", "group:O|group:Z", "group:H|group:Z"]
    assert list(spec.components) == names
    for pol in POLARISATIONS:
        total = getattr(spec, pol)
        summed = sum(spec.components[c][pol] for c in names)
        scale = np.nanmax(np.abs(total))
        assert scale > 0
        np.testing.assert_allclose(summed, total, rtol=0, atol=1e-10 * scale, equal_nan=True, err_msg=pol)
        for c in ("group:Z", "group:O|group:Z", "group:H|group:Z"):   # a group without dα/dt contributes nothing
            np.testing.assert_allclose(spec.components[c][pol][1:], 0.0, atol=1e-14 * scale, err_msg=f"{c} {pol}")
    plain = compute_raman(list(groups), max_lag_fs=MAX_LAG, decompose=False, **kw)
    assert plain.components == {}
    np.testing.assert_array_equal(plain.vv, spec.vv)
    np.testing.assert_array_equal(plain.error["vh"], spec.error["vh"])


def test_member_band_is_the_scaled_std_over_members(tmp_path):
    d = 0.1
    path = committee_stream(tmp_path / "c.h5", (1 - d, 1 + d), uncertainty_scale=1.5)
    spec = compute_raman([path], max_lag_fs=MAX_LAG, n_blocks=4)
    assert spec.member_series == ["member0", "member1"] and spec.n_members == 2 and spec.uncertainty_scale == 1.5
    assert spec.components == {}
    for pol in POLARISATIONS:
        total = getattr(spec, pol)
        scale = np.max(np.abs(total))
        for k, f in enumerate((1 - d, 1 + d)):
            np.testing.assert_allclose(spec.member_values[pol][k], f**2 * total, rtol=0, atol=1e-10 * scale)
        # std (ddof 1) of (1 ∓ d)²·S is |4d·S|/√2; × the stream's uncertainty_scale
        np.testing.assert_allclose(spec.model_std(pol), 1.5 * 2 * np.sqrt(2) * d * np.abs(total), rtol=0,
                                   atol=1e-10 * scale, err_msg=pol)
        np.testing.assert_allclose(spec.combined_std(pol), np.hypot(spec.model_std(pol), spec.error[pol]))
    assert spec.integral_model_std() == pytest.approx(1.5 * 2 * np.sqrt(2) * d * spec.integral(), rel=1e-9)
    line = spec.summary()
    assert "model band: 2 members × 1.5" in line and "statistical: 4 blocks" in line and "Å⁴·amu⁻¹" in line
    override = compute_raman([path], max_lag_fs=MAX_LAG, n_blocks=4, model_band_scale=2.0)
    np.testing.assert_allclose(override.model_std("vv"), spec.model_std("vv") / 1.5 * 2.0, rtol=1e-12)
    np.testing.assert_array_equal(override.vv, spec.vv)
    off = compute_raman([path], max_lag_fs=MAX_LAG, n_blocks=4, members=False)
    assert off.member_values is None and off.model_std() is None and "model" not in off.summary()
    np.testing.assert_array_equal(off.vv, spec.vv)
    np.testing.assert_array_equal(off.error["vv"], spec.error["vv"])
    with pytest.raises(InputError, match="model band scale"):
        compute_raman([path], max_lag_fs=MAX_LAG, model_band_scale=-1.0)


def test_identical_members_give_no_band_and_the_array_api_agrees(tmp_path):
    path = committee_stream(tmp_path / "same.h5", (1.0, 1.0, 1.0))
    spec = compute_raman([path], max_lag_fs=MAX_LAG)
    assert spec.n_members == 3 and spec.uncertainty_scale == 1.0
    for pol in POLARISATIONS:
        np.testing.assert_allclose(spec.model_std(pol), 0.0, atol=1e-12 * np.max(getattr(spec, pol)))
    # arrays: the same numbers as the file (members given, the total their mean)
    x = signal(N, 5)
    arrays = raman_spectrum(None, DT, 300.0, max_lag_fs=MAX_LAG, member_dadt=np.stack([x, 0.8 * x]),
                            uncertainty_scale=2.0)
    path = committee_stream(tmp_path / "ab.h5", (1.0, 0.8))   # total x, not the mean 0.9 x: compare members
    files = compute_raman([path], max_lag_fs=MAX_LAG, model_band_scale=2.0)
    for pol in POLARISATIONS:
        scale = np.max(files.member_values[pol])
        np.testing.assert_allclose(arrays.member_values[pol], files.member_values[pol], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(arrays.model_std(pol), files.model_std(pol), rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(getattr(arrays, pol), 0.81 * getattr(files, pol), rtol=0, atol=1e-12 * scale)
    with pytest.raises(InputError, match="M ≥ 2"):
        raman_spectrum(x, DT, 300.0, member_dadt=x[None])


def test_one_member_and_a_band_beside_a_group_average_warn(tmp_path):
    one = committee_stream(tmp_path / "one.h5", (1.0,))
    with pytest.warns(UserWarning, match="single committee member"):
        spec = compute_raman([one], max_lag_fs=MAX_LAG)
    assert spec.member_values is None
    x = signal(N, 3)
    path = write(tmp_path / "g.h5", ["total", "group:O", "member0", "member1"], np.stack([x, x, x, 1.1 * x], 1))
    with pytest.warns(UserWarning, match="model band comes from the member series"):
        compute_raman([path], max_lag_fs=MAX_LAG, series=["group:O"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_raman([path], max_lag_fs=MAX_LAG)


def test_cli_columns_options_and_plot(tmp_path):
    x, o = signal(N, 11), signal(N, 12, (1200.0, 3000.0))
    series = ["total", "group:O", "group:H", "member0", "member1"]
    path = write(tmp_path / "s.h5", series, np.stack([x, o, x - o, 0.9 * x, 1.1 * x], axis=1),
                 uncertainty_scale=1.2)

    def header(*args):
        out = tmp_path / "r.csv"
        res = CliRunner().invoke(main, ["spectrum", path, "--raman", "-o", str(out), "--max-lag", str(MAX_LAG),
                                        *args])
        assert res.exit_code == 0, res.output
        return out.read_text().splitlines()[0].split(","), res.output, out

    names, output, out = header("--plot", str(tmp_path / "r.png"))
    for pol in POLARISATIONS:
        for col in (f"{pol}_group:O", f"{pol}_group:H", f"{pol}_group:O|group:H", f"{pol}_member0", f"{pol}_member1",
                    f"{pol}_model_std", f"{pol}_combined_std"):
            assert f"{col}_{UNIT}" in names, col
    assert names[:10] == ["wavenumber_cm-1"] + [f"{p}_{UNIT}{e}" for p in POLARISATIONS for e in ("", "_err")] + [
        "depolarization_ratio_dimensionless"]
    assert "model band: 2 members × 1.2" in output and (tmp_path / "r.png").stat().st_size > 10_000
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    col = dict(zip(names, table.T))
    summed = sum(col[f"vv_{c}_{UNIT}"] for c in ("group:O", "group:H", "group:O|group:H"))
    np.testing.assert_allclose(summed, col[f"vv_{UNIT}"], rtol=0, atol=1e-10 * col[f"vv_{UNIT}"].max())
    np.testing.assert_allclose(col[f"vh_model_std_{UNIT}"], 1.2 * 0.4 / np.sqrt(2) * np.abs(col[f"vh_{UNIT}"]),
                               rtol=1e-6, atol=1e-9 * col[f"vh_{UNIT}"].max())
    names, output, _ = header("--no-decompose")
    assert not any("group:" in n for n in names) and f"vv_model_std_{UNIT}" in names
    names, output, _ = header("--no-members")
    assert not any("member" in n or "model_std" in n for n in names) and f"vv_group:O_{UNIT}" in names
    assert "model" not in output
    names, output, out = header("--model-band-scale", "3", "--no-decompose")
    assert "model band: 2 members × 3" in output
    col = dict(zip(names, np.loadtxt(out, delimiter=",", skiprows=1).T))
    np.testing.assert_allclose(col[f"vv_model_std_{UNIT}"], 3 * 0.4 / np.sqrt(2) * np.abs(col[f"vv_{UNIT}"]), rtol=1e-6,
                               atol=1e-9 * col[f"vv_{UNIT}"].max())
    res = CliRunner().invoke(main, ["spectrum", path, "--raman", "-o", str(tmp_path / "x.csv"), "--eps-inf", "1.7"])
    assert res.exit_code == 2 and "--eps-inf" in res.stderr
    # the plot draws the band and the groups' VV
    spec = compute_raman([path], max_lag_fs=MAX_LAG)
    legend = spec.plot(tmp_path / "p.png", max_wavenumber=4000.0)["legend"]
    assert "± model (2 members × 1.2)" in legend and "VV group:O" in legend and "VV group:O|group:H" in legend
    assert not any("s.e." in t for t in legend)
