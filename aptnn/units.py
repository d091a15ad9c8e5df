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

# --- spectroscopy (SI values from scipy.constants) ---------------------------------------------------------
from scipy import constants as _si  # noqa: E402

#: speed of light in cm/fs (wavenumber ν̃ = ω / (2π c))
C_CM_PER_FS: float = _si.c * 100 * 1e-15
#: 1 e·Å/fs in C·m/s
DMDT_TO_SI: float = _si.e * 1e-10 / 1e-15
FS_TO_S: float = 1e-15
A3_TO_M3: float = 1e-30
HBAR_SI: float = _si.hbar
KB_SI: float = _si.k
EPSILON0_SI: float = _si.epsilon_0
C_SI: float = _si.c
M_TO_CM: float = 100.0
M2_TO_CM2: float = 1e4


def omega_to_wavenumber(omega_rad_per_fs):
    """Angular frequency in rad/fs → wavenumber in cm⁻¹."""
    import numpy as np

    return np.asarray(omega_rad_per_fs) / (2 * np.pi * C_CM_PER_FS)
