"""aptnn.raman against harmonic Raman activities (aptnn.raman_harmonic): normal modes and activities of a diatomic
by hand, xTB water activities by two PGT routes, and low-temperature xTB MD of HDO whose Raman bands (α by finite
fields along the trajectory) integrate to the harmonic activities (benchmarks/raman_harmonic.py is the long run)."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from aptnn import raman_harmonic as rh
from aptnn import units
from aptnn.raman import raman_spectrum


def tblite_make():
    pytest.importorskip("tblite", reason="tblite (GFN2-xTB) is not installed: pip install tblite")
    from aptnn.label.xtb import xtb_factory

    return xtb_factory(accuracy=1e-6)


def test_diatomic_mode_and_activity_by_hand():
    """Spring k along z: one vibration at √(k/μ); dα/dR = D gives α′ = D/√μ (Q = √μ·R)."""
    atoms = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])
    m1, m2 = atoms.get_masses()
    mu, k = m1 * m2 / (m1 + m2), 120.0                        # amu, eV/Å²
    hess = np.zeros((6, 6))
    hess[np.ix_([2, 5], [2, 5])] = k * np.array([[1, -1], [-1, 1]])
    modes = rh.normal_modes(atoms, hess)
    assert modes.wavenumber.shape == (1,)                     # 5 rigid-body motions removed
    omega = np.sqrt(k / mu) / units.ASE_TIME_TO_FS            # rad/fs
    assert modes.wavenumber[0] == pytest.approx(omega / (2 * np.pi * units.C_CM_PER_FS), rel=1e-10)
    d = np.array([[0.3, 0.05, 0.0], [0.05, 0.2, 0.0], [0.0, 0.0, 0.9]])   # dα/dR, e·Å/V
    g = np.zeros((2, 3, 3, 3))
    g[0, :, :, 2], g[1, :, :, 2] = -d, d
    act = rh.raman_activities(g, modes)
    dq = d / np.sqrt(mu) * units.POLARIZABILITY_TO_A3
    a2 = (np.trace(dq) / 3) ** 2
    gamma2 = 0.5 * ((dq[0, 0] - dq[1, 1]) ** 2 + (dq[1, 1] - dq[2, 2]) ** 2 + (dq[2, 2] - dq[0, 0]) ** 2) \
        + 3 * (dq[0, 1] ** 2 + dq[0, 2] ** 2 + dq[1, 2] ** 2)
    np.testing.assert_allclose([act.a2[0], act.gamma2[0]], [a2, gamma2], rtol=1e-12)
    assert act.activity[0] == pytest.approx(45 * a2 + 7 * gamma2, rel=1e-12)
    assert act.depolarization[0] == pytest.approx(3 * gamma2 / (45 * a2 + 4 * gamma2), rel=1e-12)


def test_water_harmonic_activities_two_routes():
    make = tblite_make()
    atoms, modes, pgt, act = rh.harmonic_reference(molecule("H2O"), make, route="C")
    np.testing.assert_allclose(modes.wavenumber, [1539.3, 3643.0, 3651.1], atol=1.0)   # GFN2-xTB
    act_a = rh.raman_activities(rh.harmonic_reference(atoms, make, route="A")[2], modes)
    np.testing.assert_allclose(act_a.activity, act.activity, rtol=1e-3)
    assert act.depolarization[2] == pytest.approx(0.75, abs=1e-6)       # b2 antisymmetric stretch
    assert act.a2[2] < 1e-10 * act.a2[1]
    assert act.depolarization[1] < 0.3                                  # a1 symmetric stretch: polarised


def test_hdo_md_bands_match_harmonic_activities():
    """20 K NVE, every mode at k_BT, α by finite fields every 0.5 fs. Measured with seeds 0–2: ρ within 0.6 %,
    band integrals within 0.8 % (a′² of the stretches 1.3 %) of the harmonic S_k·T_k/T (T_k the mode's kinetic
    temperature in the run), relative ones within 12 % of S_k alone (the modes exchange energy), peaks within
    3.4 cm⁻¹; the tolerances keep a margin of 2–4×."""
    make = tblite_make()
    hdo = molecule("H2O")
    hdo.set_masses([15.999, 1.008, 2.014])
    atoms, modes, pgt, act = rh.harmonic_reference(hdo, make)
    temperature = 20.0
    traj = rh.md_polarizability(atoms, make, modes, temperature, 2000, np.random.default_rng(0))
    assert np.ptp(traj.energy) < 1e-4                                   # eV: NVE conserved
    t_modes = traj.mode_temperature(modes, atoms.positions)
    spec = raman_spectrum(traj.dadt_direct(), traj.dt_fs, temperature, max_lag_fs=500.0)
    bands = rh.harmonic_bands(act, [[0], [1], [2]])
    weighted = rh.harmonic_bands(act, [[0], [1], [2]], weights=t_modes / temperature)
    md = rh.band_summary(spec, [(b["lo"], b["hi"]) for b in bands])
    for b, w, m in zip(bands, weighted, md):
        assert m["peak"] == pytest.approx(b["peak"], abs=15.0)
        assert m["activity"] == pytest.approx(w["activity"], rel=0.03)   # absolute Å⁴/amu
        assert m["rho_peak"] == pytest.approx(b["rho"], rel=0.02)
        assert m["rho"] == pytest.approx(b["rho"], rel=0.02)
        assert m["gamma2"] == pytest.approx(w["gamma2"], rel=0.03)
    for i in (0, 1):
        rel_md = md[i]["activity"] / md[2]["activity"]
        assert rel_md == pytest.approx(weighted[i]["activity"] / weighted[2]["activity"], rel=0.03)
        assert rel_md == pytest.approx(bands[i]["activity"] / bands[2]["activity"], rel=0.25)
    for i in (1, 2):   # the bend's a′² is ~0.2 % of its band: too small to test
        assert md[i]["a2"] == pytest.approx(weighted[i]["a2"], rel=0.03)
