"""Reference APTs with GFN2-xTB (tblite): the field and displacement routes agree, in one index convention."""
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import water_box

from aptnn.cli import main
from aptnn.io import read_frames, write_frames
from aptnn.label.routes import LabelError, displacement_route, field_route, wrap_dipole_difference

pytest.importorskip("tblite", reason="tblite (pip install tblite) provides the xtb backend")
from aptnn.label.xtb import patch_tblite_field, xtb_factory  # noqa: E402


@pytest.fixture(scope="module")
def trimer():
    atoms = water_box(n_per_side=2, spacing=3.0, seed=2, pbc=False)[:9]  # (H2O)3: non-symmetric APTs
    return atoms


@pytest.fixture(scope="module")
def routes(trimer):
    make = xtb_factory()
    return field_route(trimer, make), displacement_route(trimer, make(None))


def test_field_and_displacement_routes_agree(routes):
    field, disp = routes
    assert np.abs(field - disp).max() < 0.01
    asym = np.abs(field - field.transpose(0, 2, 1)).max()
    assert asym > 0.02  # the tensors are far from symmetric, so a transposition would show:
    assert np.abs(field.transpose(0, 2, 1) - disp).max() > 0.5 * asym


def test_sum_rule_of_the_references(routes):
    field, disp = routes
    np.testing.assert_allclose(field.sum(0), 0, atol=1e-8)
    np.testing.assert_allclose(disp.sum(0), 0, atol=5e-3)


def test_tblite_field_shim_is_applied_and_works():
    import tblite.library

    patch_tblite_field()
    assert getattr(tblite.library.new_electric_field, "_aptnn_patched", True)
    from ase.build import molecule

    water = molecule("H2O")
    make = xtb_factory()
    f0 = water.copy()
    f0.calc = make(None)
    f1 = water.copy()
    f1.calc = make(np.array([0.0, 0.0, 0.05]))
    assert np.abs(f1.get_forces() - f0.get_forces()).max() > 1e-4  # the field really acts


def test_field_outside_the_linear_regime_is_refused(trimer):
    with pytest.raises(LabelError, match="linear regime"):
        field_route(trimer, xtb_factory(), strength=3.0, linear_tolerance=1e-4)


def test_dipole_differences_wrap_by_the_polarization_quantum():
    from ase import Atoms

    atoms = Atoms("H", positions=[[0, 0, 0]], cell=np.diag([10.0, 12.0, 14.0]), pbc=True)
    jumped = np.array([0.03 - 10.0, 0.02, 0.01 + 14.0])  # a branch jump by e·a and e·c
    np.testing.assert_allclose(wrap_dipole_difference(jumped, atoms), [0.03, 0.02, 0.01], atol=1e-12)


def test_cli_label_and_partial_labels(tmp_path, trimer):
    write_frames(tmp_path / "c.extxyz", [trimer, trimer])
    res = CliRunner().invoke(main, ["label", str(tmp_path / "c.extxyz"), "-o", str(tmp_path / "l.extxyz"),
                                    "--quiet", "--atoms", "0,1,2"])
    assert res.exit_code == 0, res.output
    frames = read_frames(tmp_path / "l.extxyz")
    apt = frames[0].arrays["apt"]
    assert np.isfinite(apt[:3]).all() and np.isnan(apt[3:]).all()
    periodic = trimer.copy()
    periodic.cell = np.eye(3) * 9
    periodic.pbc = True
    write_frames(tmp_path / "p.extxyz", [periodic])
    res = CliRunner().invoke(main, ["label", str(tmp_path / "p.extxyz"), "-o", str(tmp_path / "x.extxyz")])
    assert res.exit_code == 2 and "clusters only" in res.output
