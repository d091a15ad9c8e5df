"""Command-line PGT labels and training (issue 17): ``aptnn label --pgt`` with xTB (route C, 19 field single
points) and PySCF (route B, analytic APTs in ±E) writes the per-atom ``pgt`` array (e·Å/V, row-major
G[ξ,η,ζ] = ∂α_ξη/∂r_ζ) equal to the library routes, and ``aptnn train --targets`` learns APTs and PGTs together,
with one clear error for missing labels or an unknown target."""
import numpy as np
import pytest
import torch
from ase.build import molecule
from click.testing import CliRunner

from aptnn.cli import main
from aptnn.io import read_frames, write_frames
from aptnn.label.run import label_frames

pytest.importorskip("tblite", reason="tblite (pip install tblite) provides the xtb backend")
from aptnn.label.pgt import get_pgt, pgt_field, pgt_field_forces  # noqa: E402
from aptnn.label.xtb import xtb_factory  # noqa: E402

TINY = ["--epochs", "2", "--channels", "4", "--cutoff", "4.0", "--quiet", "--threads", "1"]


def waters():
    """Four distorted water molecules and one (H2O)2 dimer, open boundaries, seeded."""
    rng = np.random.default_rng(5)
    out = []
    for _ in range(4):
        a = molecule("H2O")
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        out.append(a)
    b = molecule("H2O")
    b.rotate(90, "x")
    b.positions += [2.9, 0.0, 0.0]
    dimer = molecule("H2O") + b
    dimer.positions += rng.normal(scale=0.03, size=dimer.positions.shape)
    out.append(dimer)
    for a in out:
        a.pbc = False
    return out


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """(input file, output file) of ``aptnn label --backend xtb --pgt`` on the five frames."""
    folder = tmp_path_factory.mktemp("pgt")
    write_frames(folder / "in.extxyz", waters())
    res = invoke("label", folder / "in.extxyz", "-o", folder / "out.extxyz", "--backend", "xtb", "--pgt", "--quiet")
    assert res.exit_code == 0, res.output
    assert "PGTs in e·Å/V, field-forces route" in res.output
    return folder / "in.extxyz", folder / "out.extxyz"


#: extxyz stores per-atom floats as %16.8f: the file's labels are exact to half of 1e-8 (e, e·Å/V)
FILE_ATOL = 5.1e-9


def test_xtb_pgt_labels_match_the_library_route(labelled):
    source, out = labelled
    frames, done = read_frames(source), read_frames(out)
    assert len(done) == len(frames)
    make = xtb_factory(accuracy=1e-3)
    (dimer,), failed = label_frames(frames[4:], "xtb", apt=False, pgt=True, progress=False)
    assert not failed and "apt" not in dimer.arrays
    np.testing.assert_allclose(get_pgt(dimer), pgt_field_forces(frames[4], make, 0.2), rtol=0, atol=1e-10)
    for k in (0, 4):  # a monomer and the dimer
        a = done[k]
        assert a.arrays["pgt"].shape == (len(a), 27) and np.isfinite(a.arrays["apt"]).all()
        assert a.info["pgt_backend"] == "xtb" and a.info["pgt_route"] == "field-forces"
        g = get_pgt(a)
        np.testing.assert_allclose(g, pgt_field_forces(frames[k], make, 0.2), rtol=0, atol=FILE_ATOL)
        assert np.abs(g.sum(0)).max() < 1e-6 * np.abs(g).max()  # translational sum rule Σ_i G_i = 0
        np.testing.assert_allclose(g, g.transpose(0, 2, 1, 3), atol=1e-12)


def test_xtb_pgt_only_with_partial_labels(tmp_path):
    write_frames(tmp_path / "w.extxyz", waters()[:1])
    res = invoke("label", tmp_path / "w.extxyz", "-o", tmp_path / "p.extxyz", "--pgt-only", "--atoms", "0",
                 "--pgt-field", "0.15", "--quiet")
    assert res.exit_code == 0, res.output
    (a,) = read_frames(tmp_path / "p.extxyz")
    assert "apt" not in a.arrays
    assert np.isfinite(a.arrays["pgt"][0]).all() and np.isnan(a.arrays["pgt"][1:]).all()
    ref = pgt_field_forces(read_frames(tmp_path / "w.extxyz")[0], xtb_factory(accuracy=1e-3), 0.15)
    np.testing.assert_allclose(get_pgt(a)[0], ref[0], rtol=0, atol=FILE_ATOL)


def test_pyscf_pgt_labels_match_the_analytic_field_route(tmp_path):
    pytest.importorskip("pyscf")
    write_frames(tmp_path / "w.extxyz", waters()[:1])
    res = invoke("label", tmp_path / "w.extxyz", "-o", tmp_path / "p.extxyz", "--backend", "pyscf", "--method",
                 "hf", "--basis", "sto-3g", "--route", "analytic", "--pgt", "--quiet")
    assert res.exit_code == 0, res.output
    (a,) = read_frames(tmp_path / "p.extxyz")
    g = get_pgt(a)
    assert a.info["pgt_route"] == "field" and a.info["pgt_asymmetry"] < 1e-3
    np.testing.assert_allclose(g, g.transpose(0, 2, 1, 3), atol=1e-12)
    ref, _ = pgt_field(read_frames(tmp_path / "w.extxyz")[0], "hf", "sto-3g", strength=0.05)
    np.testing.assert_allclose(g, ref, rtol=0, atol=FILE_ATOL)
    assert np.abs(g.sum(0)).max() < 1e-3 * np.abs(g).max()
    assert np.isfinite(a.arrays["apt"]).all()


def test_label_refuses_a_pgt_route_the_backend_lacks(tmp_path):
    write_frames(tmp_path / "w.extxyz", waters()[:1])
    res = invoke("label", tmp_path / "w.extxyz", "-o", tmp_path / "x.extxyz", "--pgt", "--pgt-route", "field")
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "xtb backend has no PGT route 'field'" in res.output
    res = invoke("label", tmp_path / "w.extxyz", "-o", tmp_path / "x.extxyz", "--pgt-field", "0.1")
    assert res.exit_code == 2 and "need --pgt" in res.output


def test_train_apt_and_pgt(labelled, tmp_path):
    torch.set_num_threads(1)
    _, data = labelled
    res = invoke("train", data, "--targets", "apt,pgt", "-o", tmp_path / "m.pt", *TINY)
    assert res.exit_code == 0, res.output
    assert " e, PGT " in res.output and " e·Å/V" in res.output and "best validation RMSE APT" in res.output
    from aptnn.model.checkpoint import load_checkpoint

    members, training = load_checkpoint(tmp_path / "m.pt", torch.float64)
    assert members[0].config.targets == ["apt", "pgt"] and training["members"][0]["targets"] == ["apt", "pgt"]
    header = (tmp_path / "m.csv").read_text().splitlines()[0]
    assert header.endswith("valid_rmse_e,train_rmse_pgt,valid_rmse_pgt")


def test_train_pgt_alone(labelled, tmp_path):
    _, data = labelled
    frames = read_frames(data)
    for a in frames:
        del a.arrays["apt"]
    write_frames(tmp_path / "pgt.extxyz", frames)
    res = invoke("train", tmp_path / "pgt.extxyz", "--targets", "pgt", "-o", tmp_path / "p.pt", "--epochs", "1",
                 *TINY[2:])
    assert res.exit_code == 0, res.output
    assert "best validation RMSE PGT" in res.output and "e·Å/V" in res.output
    from aptnn.model.checkpoint import load_checkpoint

    members, _ = load_checkpoint(tmp_path / "p.pt", torch.float64)
    assert members[0].config.targets == ["pgt"]
    # the default target (apt) is missing from these frames: one line naming the file
    res = invoke("train", tmp_path / "pgt.extxyz", "-o", tmp_path / "q.pt", *TINY)
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert str(tmp_path / "pgt.extxyz") in res.output and "'apt'" in res.output


def test_train_errors(labelled, tmp_path):
    source, data = labelled  # the unlabelled input has no `pgt` array
    res = invoke("train", source, "--targets", "pgt", "-o", tmp_path / "m.pt", *TINY)
    assert res.exit_code != 0 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"aptnn: error: {source}: ") and "'pgt'" in res.output
    res = invoke("train", data, "--targets", "apt,raman", "-o", tmp_path / "m.pt", *TINY)
    assert res.exit_code == 2 and "unknown target 'raman'" in res.output
    res = invoke("train", data, "--targets", "pgt", "-o", tmp_path / "m.pt", *TINY, "--layers", "1")
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "--lmax >= 2 and --layers >= 2" in res.output
    assert not (tmp_path / "m.pt").exists()


def test_cp2k_pgt_refused_where_the_module_is_missing(tmp_path, monkeypatch):
    import sys

    import aptnn.label
    from aptnn.errors import LabelError

    box = molecule("H2O")
    box.cell, box.pbc = [6.0, 6.0, 6.0], True
    monkeypatch.delattr(aptnn.label, "cp2k_pgt", raising=False)
    monkeypatch.setitem(sys.modules, "aptnn.label.cp2k_pgt", None)  # as in a version without it
    with pytest.raises(LabelError, match="PGT labels with cp2k: not available in this version"):
        label_frames([box], "cp2k", pgt=True, workdir=tmp_path, mode="jobs", progress=False)
    assert not any(tmp_path.iterdir())  # refused before any job folder
