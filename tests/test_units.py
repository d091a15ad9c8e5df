"""Units live in one module: its constants against CODATA (scipy), and no physical constant written elsewhere."""
import re
import tokenize
from pathlib import Path

import pytest
from scipy import constants as si

from aptnn import units

ROOT = Path(__file__).resolve().parents[1]


def test_constants_against_codata():
    bohr = si.physical_constants["Bohr radius"][0] * 1e10
    hartree = si.physical_constants["Hartree energy in eV"][0]
    assert units.BOHR_TO_ANGSTROM == pytest.approx(bohr, rel=1e-8)
    assert units.FIELD_AU_TO_V_PER_ANGSTROM == pytest.approx(hartree / bohr, rel=1e-8)  # 51.42 V/Å
    assert units.AU_TIME_TO_FS == pytest.approx(si.physical_constants["atomic unit of time"][0] * 1e15, rel=1e-8)
    assert units.ANGSTROM_PER_FS_TO_M_PER_S == pytest.approx(1e5)
    assert units.C_CM_PER_FS == pytest.approx(si.c * 100 * 1e-15)
    assert units.DMDT_TO_SI == pytest.approx(si.e * 1e5)  # e·Å/fs → C·m/s
    assert units.AVOGADRO == si.Avogadro


# literals of physical constants that must come from aptnn/units.py (or scipy/ASE through it)
CONSTANTS = re.compile(r"(6\.022\d*e23|0\.5291\d+|27\.211\d*|1\.602\d*e-19|2\.9979\d*e\+?\d+|1\.0545\d*e-34|"
                       r"1\.3806\d*e-23|51\.42\d*|41\.341\d*)")


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "aptnn").rglob("*.py")) +
                         sorted((ROOT / "drivers").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_physical_constant_outside_units(path):
    if path.name in ("units.py", "lammps_units.py"):
        return
    with open(path, "rb") as fh:  # number literals only: comments and help texts may cite values
        numbers = [t.string for t in tokenize.tokenize(fh.readline) if t.type == tokenize.NUMBER]
    bad = [n for n in numbers if CONSTANTS.fullmatch(n)]
    assert not bad, f"{path}: {bad} belong in aptnn/units.py"
