"""Reference APTs with PySCF: analytic (coupled-perturbed SCF), finite-field and finite-displacement routes agree."""
import numpy as np
import pytest
from ase.build import molecule
from click.testing import CliRunner

from aptnn.cli import main
from aptnn.io import read_frames, write_frames
from aptnn.label.routes import LabelError, displacement_route, field_route
from aptnn.label.run import label_frames

pytest.importorskip("pyscf", reason="PySCF (pip install pyscf) provides the pyscf backend")
from aptnn.label.pyscf_backend import analytic_apt, pyscf_factory  # noqa: E402


def tilted_water():
    w = molecule("H2O")
    w.rotate(30, "x")
    w.rotate(20, "z")
    w.positions += [0.3, -0.2, 0.1]  # off the origin: the field integrals' origin must not matter
    return w


@pytest.fixture(scope="module")
def hf_routes():
    w = tilted_water()
    make = pyscf_factory("hf", "6-31g*")
    return analytic_apt(w, "hf", "6-31g*"), field_route(w, make, 0.01), displacement_route(w, make(None), 0.005)


def test_three_routes_agree_in_one_index_convention(hf_routes):
    analytic, field, disp = hf_routes
    assert np.abs(analytic - field).max() < 1e-3
    assert np.abs(analytic - disp).max() < 1e-3
    asym = np.abs(analytic - analytic.transpose(0, 2, 1)).max()
    assert asym > 0.02  # non-symmetric tensors: a transposed route would differ by this much
    assert np.abs(analytic - field.transpose(0, 2, 1)).max() > 0.02


def test_sum_rule_and_rotation(hf_routes):
    analytic = hf_routes[0]
    np.testing.assert_allclose(analytic.sum(0), 0, atol=1e-8)  # neutral molecule: Σ_i P_i = 0
    w = tilted_water()
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    turned = w.copy()
    turned.positions = w.positions @ rot.T
    np.testing.assert_allclose(analytic_apt(turned, "hf", "6-31g*"), rot @ analytic @ rot.T, atol=1e-6)


@pytest.mark.slow
def test_dft_analytic_matches_the_field_route():
    w = tilted_water()
    analytic = analytic_apt(w, "b3lyp", "6-31g*")
    field = field_route(w, pyscf_factory("b3lyp", "6-31g*"), 0.01)
    assert np.abs(analytic - field).max() < 0.01  # acceptance; measured 1.2e-4 e
    np.testing.assert_allclose(analytic.sum(0), 0, atol=1e-5)  # DFT grid: sum rule to ~1e-7


def test_cli_label_with_pyscf_and_bad_requests(tmp_path):
    frames = [tilted_water(), molecule("H2O")]
    write_frames(tmp_path / "in.extxyz", frames)
    res = CliRunner().invoke(main, ["label", str(tmp_path / "in.extxyz"), "-o", str(tmp_path / "out.extxyz"),
                                    "--backend", "pyscf", "--route", "analytic", "--method", "hf", "--quiet"])
    assert res.exit_code == 0, res.output
    out = read_frames(str(tmp_path / "out.extxyz"))
    np.testing.assert_allclose(out[0].arrays["apt"].reshape(-1, 3, 3), analytic_apt(frames[0], "hf", "6-31g*"),
                               atol=1e-8)
    assert out[1].info["apt_route"] == "analytic" and out[1].info["apt_backend"] == "pyscf"
    with pytest.raises(LabelError, match="analytic route needs the pyscf"):
        label_frames(frames, "xtb", "analytic")
    box = tilted_water()
    box.cell, box.pbc = [8, 8, 8], True
    with pytest.raises(LabelError, match="clusters only"):
        label_frames([box], "pyscf", "field", method="hf")
