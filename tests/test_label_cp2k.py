"""CP2K backend: Berry-phase finite-field and finite-displacement APTs of a periodic box agree, in one convention.

System: a hydrogen-bonded water dimer (O···O 2.8 Å) in a 5.5 Å cubic box, PBE, SZV-MOLOPT-SR-GTH, 250 Ry: about
2 s per single point on one core. The donor H and O have clearly non-symmetric APTs (|P − Pᵀ| ≈ 0.1 and 0.05 e),
so a transposed tensor, like a flipped field sign, would break the field/displacement agreement (≈ 5e-4 e).
"""
import os
import shutil
import subprocess

import numpy as np
import pytest
from ase import Atoms
from ase import units as ase_units
from ase.build import molecule
from scipy.spatial.transform import Rotation

if shutil.which("cp2k.psmp") is None:
    pytest.skip("cp2k.psmp not on PATH (install the Debian package cp2k or load a cp2k module)",
                allow_module_level=True)

from aptnn.label.cp2k import (  # noqa: E402
    FORCE_AU_TO_EV_PER_A,
    check_output,
    collect,
    displacement_route_cp2k,
    field_route_cp2k,
    parse_dipole,
    parse_forces,
    run_cp2k,
    write_input,
    write_jobs,
)
from aptnn.label.routes import LabelError  # noqa: E402

OPTIONS = {"basis": "SZV-MOLOPT-SR-GTH", "cutoff_ry": 250}
DISPLACED = [0, 1]  # donor O and the H-bonded H: the most non-symmetric tensors


def dimer(box: float = 5.5, roo: float = 2.8) -> Atoms:
    """Water dimer, donor H along the O···O axis, rotated off the cell axes, in a cubic box (Å)."""
    donor = molecule("H2O")
    donor.positions -= donor.positions[0]
    align, _ = Rotation.align_vectors([[1.0, 0.0, 0.0]], [donor.positions[1] / np.linalg.norm(donor.positions[1])])
    donor.positions = align.apply(donor.positions)
    acceptor = molecule("H2O")
    acceptor.positions -= acceptor.positions[0]
    acceptor.rotate(20, "y")
    acceptor.rotate(30, "x")
    acceptor.positions += [roo, 0.0, 0.0]
    atoms = donor + acceptor
    atoms.rotate(25, "z")
    atoms.rotate(15, "y")
    atoms.positions += np.array([0.3, 0.5, 0.5]) * box - atoms.positions.mean(axis=0)
    atoms.cell = np.eye(3) * box
    atoms.pbc = True
    return atoms


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cp2k_field")
    return field_route_cp2k(dimer(), workdir, field_au=5e-4, timeout=600, **OPTIONS), workdir


@pytest.fixture(scope="module")
def displacement(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cp2k_disp")
    return displacement_route_cp2k(dimer(), workdir, delta=0.01, indices=DISPLACED, timeout=600, **OPTIONS)


@pytest.mark.slow
def test_field_and_displacement_routes_agree(field, displacement):
    f, d = field[0][DISPLACED], displacement[DISPLACED]
    assert np.isnan(np.delete(displacement, DISPLACED, axis=0)).all()
    assert np.abs(f - d).max() < 5e-3  # measured 4.7e-4 e
    asym = np.abs(d - d.transpose(0, 2, 1)).max(axis=(1, 2))
    assert (asym > 0.04).all()  # measured 0.054 (O) and 0.099 (H): a transposition is caught
    assert np.abs(f - d.transpose(0, 2, 1)).max() > 0.04
    assert np.abs(f + d).max() > 0.5  # the opposite field sign would differ by ~1.5 e
    # physical signs, independent of the field convention: O negative, H positive dynamic charge
    assert np.trace(d[0]) < -1.5 and np.trace(d[1]) > 0.8


@pytest.mark.slow
def test_acoustic_sum_rule_and_linearity(field):
    apt, workdir = field
    # Σ_i P_i = Q·1 = 0 for a neutral cell. The real-space grid breaks translation invariance (CP2K's SUM OF ATOMIC
    # FORCES is ~5e-3 Ha/bohr here); its field derivative is the residual: measured 6.2e-3 e at 250 Ry,
    # 3.4e-3 e at 400 Ry (it shrinks with the cutoff). Tolerance 0.02 e, while an APT is ~0.3-0.8 e.
    assert np.abs(apt.sum(axis=0)).max() < 0.02
    assert np.abs(apt).max() > 0.3
    f0 = parse_forces(workdir / "ref.out")
    for xi, ax in enumerate("xyz"):  # linear regime: even part ~2e-3 of the odd part at 5e-4 a.u.
        fp, fm = parse_forces(workdir / f"e{ax}_p.out"), parse_forces(workdir / f"e{ax}_m.out")
        assert np.abs(fp + fm - 2 * f0).max() < 0.01 * np.abs(fp - fm).max()
        np.testing.assert_allclose((fp - fm) / FORCE_AU_TO_EV_PER_A / 1e-3, apt[:, xi, :], atol=1e-9)


@pytest.mark.slow
def test_inputs_and_parsers_on_real_files(field, tmp_path):
    _, workdir = field
    text = (workdir / "ex_m.inp").read_text()
    assert "SCF_GUESS RESTART" in text and "WFN_RESTART_FILE_NAME ref-RESTART.wfn" in text
    assert "INTENSITY 5.000000000000e-04" in text and "POLARISATION -1.000000000000000 0.0" in text
    assert "PERIODIC_EFIELD" not in (workdir / "ref.inp").read_text()
    out = workdir / "ref.out"
    forces = parse_forces(out)
    assert forces.shape == (6, 3)
    np.testing.assert_array_equal(forces, parse_forces(out.read_text()))
    summed = [line.split()[4:7] for line in out.read_text().splitlines() if "SUM OF ATOMIC FORCES" in line][-1]
    np.testing.assert_allclose(forces.sum(axis=0), np.array(summed, float) * FORCE_AU_TO_EV_PER_A, atol=1e-6)
    moments = (workdir / "ref.moments").read_text()
    dipole = parse_dipole(workdir / "ref.moments")
    total = float(moments.split("Total=")[-1].split()[0])  # |M| in Debye as CP2K prints it
    assert abs(np.linalg.norm(dipole) / ase_units.Debye - total) < 1e-6

    half = tmp_path / "truncated.out"
    half.write_text(out.read_text()[: out.read_text().index("SUM OF ATOMIC FORCES")])
    with pytest.raises(LabelError, match="truncated.out.*truncated"):
        parse_forces(half)
    with pytest.raises(LabelError, match="truncated.out"):
        check_output(half)
    cut = tmp_path / "cut.moments"
    cut.write_text(moments[: moments.index("Y=")])
    with pytest.raises(LabelError, match="cut.moments"):
        parse_dipole(cut)
    with pytest.raises(LabelError, match="missing.out.*cannot read"):
        parse_forces(tmp_path / "missing.out")


def test_missing_binary_is_named(tmp_path, monkeypatch):
    path = write_input(dimer(), tmp_path / "x.inp", project="x", **OPTIONS)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(LabelError, match="cp2k.psmp not found.*Debian package cp2k"):
        run_cp2k(path, tmp_path, timeout=60)


def test_failed_and_unconverged_runs_name_the_output(tmp_path):
    with pytest.raises(LabelError, match="periodic box"):
        write_input(molecule("H2O"), tmp_path / "mol.inp", project="mol")
    bad = write_input(dimer(), tmp_path / "bad.inp", project="bad", **OPTIONS)
    bad.write_text(bad.read_text().replace("EPS_DEFAULT", "NO_SUCH_KEYWORD"))
    with pytest.raises(LabelError, match="bad.out.*failed"):
        run_cp2k(bad, tmp_path, timeout=120)
    short = write_input(dimer(), tmp_path / "short.inp", project="short", **OPTIONS)
    short.write_text(short.read_text().replace("MAX_SCF 50", "MAX_SCF 2").replace("MAX_SCF 20", "MAX_SCF 1"))
    with pytest.raises(LabelError, match="short.out: the SCF did not converge"):
        run_cp2k(short, tmp_path, timeout=120)


def test_dispersion_input_runs(field, tmp_path):
    path = write_input(dimer(), tmp_path / "d3.inp", project="d3", dispersion="D3", data_dir="/usr/share/cp2k",
                       **OPTIONS)
    assert "/usr/share/cp2k/dftd3.dat" in path.read_text()
    d3 = parse_forces(run_cp2k(path, tmp_path, timeout=300))
    plain = parse_forces(field[1] / "ref.out")
    assert 1e-4 < np.abs(d3 - plain).max() < 0.1  # D3 forces: small but present (eV/Å)


@pytest.mark.slow
def test_job_folder_mode_runs_and_collects(field, tmp_path):
    workdir = write_jobs(dimer(), tmp_path / "jobs", "displacement", delta=0.01, indices=[3], **OPTIONS)
    names = sorted(p.stem for p in workdir.glob("*.inp"))
    assert names == sorted(["ref"] + [f"d3{ax}_{s}" for ax in "xyz" for s in "pm"])
    with pytest.raises(LabelError, match="ref.out"):
        collect(workdir)  # not run yet
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(["bash", str(workdir / "run.sh")], check=True, env=env, capture_output=True, timeout=600)
    apt = collect(workdir)
    assert np.isnan(np.delete(apt, 3, axis=0)).all()
    assert np.abs(apt[3] - field[0][3]).max() < 5e-3  # the acceptor O, against the field route


@pytest.mark.slow
def test_cli_label_jobs_then_collect(field, tmp_path):
    from click.testing import CliRunner

    from aptnn.cli import main
    from aptnn.io import read_frames, write_frames

    write_frames(tmp_path / "box.extxyz", [dimer()])
    args = ["label", str(tmp_path / "box.extxyz"), "-o", str(tmp_path / "out.extxyz"), "--backend", "cp2k",
            "--basis", "SZV-MOLOPT-SR-GTH", "--cutoff", "250", "--quiet"]
    res = CliRunner().invoke(main, [*args, "--jobs-only"])
    assert res.exit_code == 0 and "then rerun with --collect" in res.output, res.output
    frame = tmp_path / "out.extxyz.cp2k" / "frame00000"
    assert not (tmp_path / "out.extxyz").exists()
    subprocess.run(["bash", str(frame / "run.sh")], check=True, capture_output=True, timeout=600,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    res = CliRunner().invoke(main, [*args, "--collect"])
    assert res.exit_code == 0 and "labelled 1 of 1" in res.output, res.output
    apt = read_frames(str(tmp_path / "out.extxyz"))[0].arrays["apt"].reshape(-1, 3, 3)
    # the same single points as the Python route; CP2K prints forces to 1e-8 Ha/bohr, i.e. APTs to 1e-5 e at
    # 5e-4 a.u., and FFTW's run-time planning can change the last digit
    np.testing.assert_allclose(apt, field[0], atol=3e-5)
    write_frames(tmp_path / "mol.extxyz", [molecule("H2O")])
    res = CliRunner().invoke(main, ["label", str(tmp_path / "mol.extxyz"), "-o", str(tmp_path / "m.extxyz"),
                                    "--backend", "cp2k"])
    assert res.exit_code == 2 and "periodic boxes" in res.output


def test_missing_binary_stops_labelling_instead_of_failing_each_frame(tmp_path, monkeypatch):
    from aptnn.label.routes import BackendMissing
    from aptnn.label.run import label_frames

    monkeypatch.setenv("PATH", "")
    with pytest.raises(BackendMissing, match="cp2k.psmp not found"):
        label_frames([dimer(), dimer()], "cp2k", workdir=tmp_path, progress=False, **OPTIONS)
