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
VOLUME = "angstrom^3"

#: 1 bohr in Å (CODATA 2014 via ASE).
BOHR_TO_ANGSTROM: float = _ase.Bohr
ANGSTROM_TO_BOHR: float = 1.0 / _ase.Bohr
#: 1 hartree in eV; atomic units of force (hartree/bohr) in eV/Å and of electric field in V/Å (same number).
HARTREE_TO_EV: float = _ase.Hartree
FORCE_AU_TO_EV_PER_ANGSTROM: float = _ase.Hartree / _ase.Bohr
FIELD_AU_TO_V_PER_ANGSTROM: float = _ase.Hartree / _ase.Bohr
#: 1 debye in e·Å.
DEBYE_TO_E_ANGSTROM: float = _ase.Debye
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
ANGSTROM_PER_FS_TO_M_PER_S: float = 1e-10 / FS_TO_S
AVOGADRO: float = _si.Avogadro
A3_TO_M3: float = 1e-30
HBAR_SI: float = _si.hbar
KB_SI: float = _si.k
EPSILON0_SI: float = _si.epsilon_0
C_SI: float = _si.c
M_TO_CM: float = 100.0
M2_TO_CM2: float = 1e4
M3_TO_CM3: float = 1e6
ANGSTROM_TO_M: float = 1e-10
#: 1 nm in cm (a laser wavelength λ in nm is the wavenumber 1/(λ·NM_TO_CM) in cm⁻¹)
NM_TO_CM: float = 1e-7
#: atomic mass unit in kg
AMU_KG: float = _si.atomic_mass

# --- Raman: polarisability α in e·Å²/V (dipole e·Å per field V/Å), dα/dt in e·Å²/(V·fs) -------------------------
POLARIZABILITY = "e*angstrom^2/V"
POLARIZABILITY_DERIVATIVE = "e*angstrom^2/(V*fs)"
#: 1 e·Å²/V as a polarisability volume α/(4πε₀) in Å³ (≈ 14.40 Å³)
POLARIZABILITY_TO_A3: float = _si.e * 1e-20 / (4 * _si.pi * _si.epsilon_0 * 1e-30)
#: 1 amu·Å²/fs² in J: k_B·T in these units is the thermal ⟨Q̇²⟩ of a mass-weighted coordinate Q (amu^½·Å)
AMU_A2_PER_FS2_TO_J: float = _si.atomic_mass * 1e-20 / 1e-30
#: polarisability-gradient tensor G[ξ,η,ζ] = ∂α_ξη/∂r_ζ (aptnn.label.pgt): e·Å²/V per Å
PGT = "e*angstrom/V"
#: 1 atomic unit of polarisability, e·a0²/(E_h/e), in e·Å²/V (≈ 0.0102908): a0² per hartree-in-volts
POLARIZABILITY_AU_TO_E_A2_PER_V: float = _ase.Bohr**2 / _ase.Hartree


def omega_to_wavenumber(omega_rad_per_fs):
    """Angular frequency in rad/fs → wavenumber in cm⁻¹."""
    import numpy as np

    return np.asarray(omega_rad_per_fs) / (2 * np.pi * C_CM_PER_FS)

# --- MD engine unit systems: factor to Å, fs and Å/fs ---------------------------------------------------------
#: LAMMPS `units` styles: (length → Å, time → fs, velocity → Å/fs). Checked against LAMMPS itself
#: (tests/test_lammps_dumps.py: `velocity create 300` read back as 300 K in every style). Electron velocities
#: are bohr/fs (LAMMPS integrates x += v·dt with dt in fs), whatever the manual's "atomic time units" suggests.
LAMMPS_UNITS: dict[str, tuple[float, float, float]] = {
    "real": (1.0, 1.0, 1.0),
    "metal": (1.0, 1e3, 1e-3),
    "si": (1e10, 1e15, 1e-5),
    "cgs": (1e8, 1e15, 1e-7),
    "electron": (BOHR_TO_ANGSTROM, 1.0, BOHR_TO_ANGSTROM),
    "micro": (1e4, 1e9, 1e-5),
    "nano": (10.0, 1e6, 1e-5),
}
#: LAMMPS unit styles in words: (length, time, velocity) of positions, timestep/time and velocities
LAMMPS_UNIT_NAMES: dict[str, tuple[str, str, str]] = {
    "real": ("Å", "fs", "Å/fs"), "metal": ("Å", "ps", "Å/ps"), "si": ("m", "s", "m/s"), "cgs": ("cm", "s", "cm/s"),
    "electron": ("bohr", "fs", "bohr/fs"), "micro": ("µm", "µs", "µm/µs"), "nano": ("nm", "ns", "nm/ns"),
}


def lammps_styles() -> str:
    """The LAMMPS unit styles aptnn converts, in words: ``real (Å, fs, Å/fs), metal (Å, ps, Å/ps), …``."""
    return ", ".join(f"{k} ({', '.join(v)})" for k, v in LAMMPS_UNIT_NAMES.items())
#: lengths in H5MD/MDAnalysis unit strings → Å
LENGTH_TO_ANGSTROM = {"angstrom": 1.0, "a": 1.0, "å": 1.0, "nm": 10.0, "pm": 0.01, "bohr": BOHR_TO_ANGSTROM,
                      "m": 1e10, "cm": 1e8}
#: times in H5MD/MDAnalysis unit strings → fs
TIME_TO_FS = {"fs": 1.0, "ps": 1e3, "ns": 1e6, "s": 1e15, "au": AU_TIME_TO_FS, "atomic_unit": AU_TIME_TO_FS}
#: ASE's internal time unit in fs (ASE velocities are Å per this unit)
ASE_TIME_TO_FS: float = 1.0 / _ase.fs


def _lookup(table: dict[str, float], unit: str | None, default: float, kind: str) -> float:
    if not unit:
        return default
    key = unit.strip().lower()
    if key not in table:
        from aptnn.errors import InputError

        raise InputError(f"unknown {kind} unit {unit!r} (known: {', '.join(sorted(table))})")
    return table[key]


def parse_length(unit: str | None, default: float = 1.0) -> float:
    """Factor converting a length given in ``unit`` (e.g. "nm", "Angstrom") to Å."""
    return _lookup(LENGTH_TO_ANGSTROM, unit, default, "length")


def parse_time(unit: str | None, default: float = 1.0) -> float:
    """Factor converting a time given in ``unit`` (e.g. "ps") to fs."""
    return _lookup(TIME_TO_FS, unit, default, "time")


def parse_velocity(unit: str | None, default: float = 1.0) -> float:
    """Factor converting a velocity unit such as "nm ps-1", "Angstrom/ps" or "A fs^-1" to Å/fs."""
    if not unit:
        return default
    text = unit.strip().lower().replace("^", "")
    if "/" in text:
        length, time = text.split("/", 1)
    else:
        parts = text.split()
        if len(parts) != 2 or not parts[1].endswith("-1"):
            from aptnn.errors import InputError

            raise InputError(f"unknown velocity unit {unit!r}")
        length, time = parts[0], parts[1][:-2]
    return parse_length(length) / parse_time(time)
