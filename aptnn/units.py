"""Every physical unit and conversion used by aptnn, in one place.

Internal units (used everywhere unless a name says otherwise):
    length            Å
    time              fs
    charge            e (elementary charge)
    dipole            e·Å
    APT  P[ξ,ζ]       e          (∂M_ξ/∂r_ζ: e·Å per Å)
    dM/dt             e·Å/fs
    energy            eV
    temperature       K
"""
from __future__ import annotations

from ase import units as _ase

#: Names written into file headers and HDF5 ``units`` attributes.
LENGTH = "angstrom"
TIME = "fs"
CHARGE = "e"
APT = "e"
DIPOLE = "e*angstrom"
DIPOLE_DERIVATIVE = "e*angstrom/fs"

#: 1 bohr in Å (CODATA 2014 via ASE).
BOHR_TO_ANGSTROM: float = _ase.Bohr
ANGSTROM_TO_BOHR: float = 1.0 / _ase.Bohr
#: 1 atomic unit of time in fs.
AU_TIME_TO_FS: float = _ase._aut * 1e15
#: Boltzmann constant in eV/K.
KB_EV_PER_K: float = _ase.kB
