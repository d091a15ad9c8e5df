import numpy as np
from ase import units
from ase.build import molecule
from ase.calculators.mixing import SumCalculator
from ase.calculators.tip3p import TIP3P
from ase.constraints import FixBondLengths
from ase.md.verlet import VelocityVerlet

from aptnn import APTCalculator, DipoleDerivative

# --- APTCalculator: APTs, dM/dt and the force of a static field in ASE ------------------------------------
water = molecule("H2O") + molecule("H2O")
water.positions[3:] += (2.9, 0.0, 0.0)                      # a water dimer, Å
rng = np.random.default_rng(0)                              # 300 K velocities (ASE units)
water.set_velocities(rng.normal(size=(6, 3)) * np.sqrt(300 * units.kB / water.get_masses())[:, None])

aptnn_calc = APTCalculator("water-rpbe-d3", external_field=(0.0, 0.0, 0.1))   # field E in V/Å
apt = aptnn_calc.get_apt(water)                   # (6, 3, 3) e, apt[i, ξ, ζ] = ∂M_ξ/∂r_iζ
dmdt = aptnn_calc.get_dipole_derivative(water)    # (3,) e·Å/fs, Σ_i P_i·v_i
field_forces = aptnn_calc.get_forces(water)       # (6, 3) eV/Å, F_i = P_iᵀ·E (energy: 0, see docs)

# MD in the field: a force field (rigid TIP3P) plus the field's force on the dipole
water.constraints = FixBondLengths([(3 * m + j, 3 * m + (j + 1) % 3) for m in range(2) for j in range(3)])
water.calc = SumCalculator([TIP3P(rc=9.0), aptnn_calc])
frames = []
md = VelocityVerlet(water, timestep=1.0 * units.fs)
md.attach(lambda: frames.append(water.copy()), interval=1)  # frames keep positions and velocities
md.run(40)

# --- DipoleDerivative: dM/dt of a trajectory --------------------------------------------------------------
# source: a list of ASE Atoms (as here), an MDAnalysis Universe (e.g. mda.Universe("topol.tpr", "traj.trr"),
# Å/ps velocities converted) or a trajectory file (extxyz, H5MD, LAMMPS dump, i-PI); velocities are required
dd = DipoleDerivative(frames, "water-rpbe-d3", timestep=1.0,           # fs between frames
                      output="dimer.dmdt.h5", overwrite=True, in_memory=True).run(start=0, step=1)
print(dd.results.series)           # ['total', 'group:O', 'group:H']
print(dd.results.dmdt.shape)       # (41, 3, 3): frames, series, xyz in e·Å/fs; times in dd.results.time (fs)
spectrum = dd.results.spectrum(max_lag_fs=20.0)   # aptnn.spectrum.Spectrum, as `aptnn spectrum dimer.dmdt.h5`
print(spectrum.quantity, spectrum.wavenumber.shape)
