"""CP2K (Quickstep, GPW, periodic boxes) as a labelling backend: finite Berry-phase field and finite displacement.

Units: positions and cells in Å, forces returned in eV/Å, dipoles in e·Å (Berry phase, defined modulo e·cell),
fields in atomic units (1 a.u. = 51.42 V/Å), APTs P_i[ξ,ζ] = ∂M_ξ/∂r_iζ in e, shape (N, 3, 3).

Field route: P_i[ξ,ζ] = ∂F_iζ/∂E_ξ; with forces in Hartree/bohr and E in a.u. the ratio is already in e.
CP2K's ``&PERIODIC_EFIELD`` with ``INTENSITY`` I and unit ``POLARISATION`` p applies the physical field E = +I·p
(the energy gains −M·E); measured in ``tests/test_label_cp2k.py`` by comparing with the displacement route,
where a flipped sign or a transposed tensor shows up as a difference of ~1 e.

Every single point is one input ``<name>.inp`` in one folder (:func:`write_jobs`), run in order by ``run.sh``
(the zero-field reference first: the others restart from its wavefunction) or by :func:`run_cp2k`;
:func:`collect` parses the finished folder back into APTs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from ase import Atoms

from aptnn import units
from aptnn.label.routes import BackendMissing, LabelError, wrap_dipole_difference

BINARY = "cp2k.psmp"
FORCE_AU_TO_EV_PER_A: float = units.FORCE_AU_TO_EV_PER_ANGSTROM
#: sign s in E_physical = s · INTENSITY · POLARISATION, determined against the displacement route (see the tests)
FIELD_SIGN: float = 1.0
_AXES = "xyz"


def write_input(atoms: Atoms, path: str | Path, *, project: str, field_au=None, basis: str = "DZVP-MOLOPT-SR-GTH",
                potential: str = "GTH-PBE", xc: str = "PBE", cutoff_ry: float = 400, rel_cutoff_ry: float = 50,
                dispersion: str | None = None, restart_wfn: str | Path | None = None, print_dipole: bool = True,
                data_dir: str | Path | None = None, eps_scf: float = 1e-7,
                extra_force_eval: list[str] | tuple[str, ...] = ()) -> Path:
    """Write a CP2K ENERGY_FORCE input for one single point of the periodic box ``atoms`` (Å) and return its path.

    ``field_au``: uniform field (3-vector, a.u.) through the Berry-phase ``&PERIODIC_EFIELD`` (OT only);
    ``dispersion``: None or "D3"; ``restart_wfn``: a ``*-RESTART.wfn`` to start from; ``data_dir``: folder of
    BASIS_MOLOPT, GTH_POTENTIALS and dftd3.dat (default: CP2K's own data directory). The Berry-phase dipole
    (``&MOMENTS PERIODIC``, Debye) goes to ``<project>.moments``, the forces (a.u.) to the output.
    ``eps_scf``: SCF convergence (inner and outer loop, a.u.); ``extra_force_eval``: input lines appended inside
    ``&FORCE_EVAL`` (e.g. a ``&PROPERTIES`` section).
    """
    if not atoms.pbc.all() or abs(atoms.cell.volume) < 1e-6:
        raise LabelError(f"{path}: the cp2k backend needs a periodic box (pbc on all axes and a cell with volume)")
    if dispersion not in (None, "D3"):
        raise LabelError(f"unknown dispersion {dispersion!r} (None or 'D3')")

    def data(name: str) -> str:
        return str(Path(data_dir) / name) if data_dir is not None else name

    dft = [f"BASIS_SET_FILE_NAME {data('BASIS_MOLOPT')}", f"POTENTIAL_FILE_NAME {data('GTH_POTENTIALS')}",
           f"CHARGE {int(round(atoms.info.get('charge', 0)))}"]
    if restart_wfn is not None:
        dft.append(f"WFN_RESTART_FILE_NAME {restart_wfn}")
    eps = f"{eps_scf:.1E}".replace("E-0", "E-")  # 1.0E-7 as before
    dft += ["&MGRID", f"  CUTOFF {cutoff_ry}", f"  REL_CUTOFF {rel_cutoff_ry}", "&END MGRID",
            "&QS", "  EPS_DEFAULT 1.0E-12", "&END QS",
            "&SCF", f"  SCF_GUESS {'RESTART' if restart_wfn is not None else 'ATOMIC'}", f"  EPS_SCF {eps}",
            "  MAX_SCF 50", "  &OT", "    MINIMIZER DIIS", "    PRECONDITIONER FULL_SINGLE_INVERSE", "  &END OT",
            "  &OUTER_SCF", f"    EPS_SCF {eps}", "    MAX_SCF 20", "  &END OUTER_SCF", "&END SCF",
            "&XC", f"  &XC_FUNCTIONAL {xc}", "  &END XC_FUNCTIONAL"]
    if dispersion == "D3":
        dft += ["  &VDW_POTENTIAL", "    POTENTIAL_TYPE PAIR_POTENTIAL", "    &PAIR_POTENTIAL", "      TYPE DFTD3",
                f"      PARAMETER_FILE_NAME {data('dftd3.dat')}", f"      REFERENCE_FUNCTIONAL {xc}",
                "    &END PAIR_POTENTIAL", "  &END VDW_POTENTIAL"]
    dft.append("&END XC")
    field = np.zeros(3) if field_au is None else np.asarray(field_au, dtype=float).reshape(3) * FIELD_SIGN
    strength = float(np.linalg.norm(field))
    if strength > 0:
        pol = field / strength
        dft += ["&PERIODIC_EFIELD", f"  INTENSITY {strength:.12e}",
                "  POLARISATION " + " ".join(f"{p:.15f}" for p in pol), "&END PERIODIC_EFIELD"]
    if print_dipole:
        dft += ["&PRINT", "  &MOMENTS ON", "    PERIODIC .TRUE.", "    REFERENCE ZERO",
                f"    FILENAME ={project}.moments", "  &END MOMENTS", "&END PRINT"]
    subsys = ["&CELL"] + [f"  {n} " + " ".join(f"{x:.10f}" for x in v) for n, v in zip("ABC", atoms.cell.array)]
    subsys += ["  PERIODIC XYZ", "&END CELL", "&COORD"]
    symbols = atoms.get_chemical_symbols()
    subsys += [f"  {s} " + " ".join(f"{x:.10f}" for x in r) for s, r in zip(symbols, atoms.positions)]
    subsys.append("&END COORD")
    for s in sorted(set(symbols)):
        subsys += [f"&KIND {s}", f"  BASIS_SET {basis}", f"  POTENTIAL {potential}", "&END KIND"]
    lines = ["&GLOBAL", f"  PROJECT {project}", "  RUN_TYPE ENERGY_FORCE", "  PRINT_LEVEL LOW", "&END GLOBAL",
             "&FORCE_EVAL", "  METHOD QUICKSTEP", "  &DFT", *("    " + x for x in dft), "  &END DFT",
             "  &PRINT", "    &FORCES ON", "    &END FORCES", "  &END PRINT",
             "  &SUBSYS", *("    " + x for x in subsys), "  &END SUBSYS", *("  " + x for x in extra_force_eval),
             "&END FORCE_EVAL"]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def _read(source: str | Path) -> tuple[str, str]:
    """(text, name) of a path, or of text given directly (a string with a line break)."""
    if isinstance(source, str) and "\n" in source:
        return source, "<text>"
    try:
        return Path(source).read_text(errors="replace"), str(source)
    except OSError as err:
        raise LabelError(f"{source}: cannot read the CP2K file ({err.strerror or err})") from None


_FORCE_ROW = re.compile(r"^\s*(\d+)\s+\d+\s+[A-Za-z]\w*\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def _forces_au(source: str | Path) -> np.ndarray:
    text, name = _read(source)
    start = text.rfind("ATOMIC FORCES in [a.u.]")
    if start < 0:
        raise LabelError(f"{name}: no 'ATOMIC FORCES in [a.u.]' block (the CP2K run did not finish)")
    block = text[start:].splitlines()[1:]
    rows = []
    for line in block:
        if line.strip().startswith("SUM OF ATOMIC FORCES"):
            break
        m = _FORCE_ROW.match(line)
        if m:
            if int(m.group(1)) != len(rows) + 1:
                raise LabelError(f"{name}: garbled force block (atom {m.group(1)} after {len(rows)} atoms)")
            try:
                rows.append([float(v) for v in m.group(2, 3, 4)])
            except ValueError:
                raise LabelError(f"{name}: garbled force row {line.strip()!r}") from None
        elif line.strip() and not line.strip().startswith("#"):
            raise LabelError(f"{name}: garbled force row {line.strip()!r}")
    else:
        raise LabelError(f"{name}: the force block ends before 'SUM OF ATOMIC FORCES' (truncated output)")
    if not rows:
        raise LabelError(f"{name}: empty force block")
    return np.array(rows)


def parse_forces(source: str | Path) -> np.ndarray:
    """Forces (N, 3) in eV/Å from the last 'ATOMIC FORCES in [a.u.]' block of a CP2K output (path or text)."""
    return _forces_au(source) * FORCE_AU_TO_EV_PER_A


_DIPOLE = re.compile(r"Dipole moment \[Debye\]\s*\n\s*X=\s*(\S+)\s+Y=\s*(\S+)\s+Z=\s*(\S+)\s+Total=")


def parse_dipole(source: str | Path) -> np.ndarray:
    """Dipole (3,) in e·Å from the last 'Dipole moment [Debye]' of a CP2K ``&MOMENTS`` file or output."""
    text, name = _read(source)
    found = _DIPOLE.findall(text)
    if not found:
        raise LabelError(f"{name}: no complete 'Dipole moment [Debye]' line (missing, truncated or garbled)")
    try:
        return np.array([float(v) for v in found[-1]]) * units.DEBYE_TO_E_ANGSTROM
    except ValueError:
        raise LabelError(f"{name}: garbled dipole line {found[-1]}") from None


def run_cp2k(input_path: str | Path, cwd: str | Path, timeout: float | None = 3600) -> Path:
    """Run ``cp2k.psmp -i input -o output`` (one rank, OMP_NUM_THREADS=1) in ``cwd``; returns the output path
    (``<input stem>.out``). Raises :class:`LabelError` naming the output if the run fails or the SCF does not
    converge."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise BackendMissing(f"{BINARY} not found on PATH: install the Debian package cp2k or load your cluster's cp2k "
                         "module")
    cwd = Path(cwd)
    input_path = Path(input_path)
    output = cwd / (input_path.stem + ".out")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for stale in (output, cwd / (input_path.stem + ".moments")):  # CP2K appends to existing files
        stale.unlink(missing_ok=True)
    try:
        proc = subprocess.run([binary, "-i", str(input_path.resolve()), "-o", output.name], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabelError(f"{output}: {BINARY} ran past the {timeout} s timeout") from None
    check_output(output, returncode=proc.returncode, stderr=proc.stderr)
    return output


def check_output(output: str | Path, returncode: int = 0, stderr: str = "") -> None:
    """Raise :class:`LabelError` naming ``output`` unless the CP2K run ended normally with a converged SCF."""
    text, name = _read(output)
    tail = (stderr.strip().splitlines() or [""])[-1]
    if returncode != 0 or "PROGRAM ENDED AT" not in text:
        raise LabelError(f"{name}: {BINARY} failed (exit code {returncode}) {tail}".rstrip())
    outer = re.findall(r"outer SCF loop (converged|FAILED)", text)
    if not outer or outer[-1] != "converged":
        raise LabelError(f"{name}: the SCF did not converge")


def _plan(route: str, n: int, indices) -> list[tuple[str, str, int, int, int]]:
    """[(name, kind, atom, axis, sign)]; the zero-field reference "ref" first."""
    jobs = [("ref", "ref", -1, -1, 0)]
    pm = ((1, "p"), (-1, "m"))
    if route == "field":
        jobs += [(f"e{_AXES[ax]}_{s}", "field", -1, ax, sign) for ax in range(3) for sign, s in pm]
    elif route == "displacement":
        for i in range(n) if indices is None else indices:
            if not 0 <= int(i) < n:
                raise LabelError(f"atom index {i} out of range for {n} atoms")
            jobs += [(f"d{int(i)}{_AXES[ax]}_{s}", "disp", int(i), ax, sign) for ax in range(3) for sign, s in pm]
    else:
        raise LabelError(f"unknown route {route!r} (field or displacement)")
    return jobs


def write_jobs(atoms: Atoms, workdir: str | Path, route: str = "field", *, field_au: float = 5e-4,
               delta: float = 0.01, indices: list[int] | None = None, **input_options) -> Path:
    """Write every single point of a route (inputs, ``jobs.json``, ``run.sh``) into ``workdir``; returns it.

    ``field_au``: field strength in a.u. (field route); ``delta``: displacement in Å (displacement route);
    ``input_options`` go to :func:`write_input`. ``run.sh`` runs the reference first, then the rest (each restarts
    from ``ref-RESTART.wfn``; they are independent of each other). Set ``CP2K`` to change the command, e.g.
    ``CP2K="srun cp2k.psmp" ./run.sh``. Read the results with :func:`collect`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = _plan(route, len(atoms), indices)
    for name, kind, i, ax, sign in jobs:
        a, field = atoms.copy(), None
        if kind == "disp":
            a.positions[i, ax] += sign * delta
        elif kind == "field":
            field = np.zeros(3)
            field[ax] = sign * field_au
        write_input(a, workdir / f"{name}.inp", project=name, field_au=field,
                    restart_wfn=None if kind == "ref" else "ref-RESTART.wfn", **input_options)
    manifest = {"route": route, "field_au": field_au, "delta": delta, "indices": indices, "jobs": [j[0] for j in jobs],
                "symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.tolist(),
                "cell": atoms.cell.array.tolist(), "units": {"positions": "angstrom", "field": "atomic units"}}
    (workdir / "jobs.json").write_text(json.dumps(manifest, indent=1))
    script = workdir / "run.sh"
    script.write_text("#!/bin/bash\n# CP2K single points of an aptnn APT route; the reference first.\nset -e\n"
                      'cd "$(dirname "$0")"\nexport OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}\n'
                      f"CP2K=${{CP2K:-{BINARY}}}\n"
                      f"for job in {' '.join(j[0] for j in jobs)}; do\n"
                      '  $CP2K -i "$job.inp" -o "$job.out"\ndone\n')
    script.chmod(0o755)
    return workdir


def collect(workdir: str | Path, linear_tolerance: float = 0.05) -> np.ndarray:
    """APTs (N, 3, 3) in e from a finished :func:`write_jobs` folder (NaN rows for atoms not displaced).

    Field route: P_i[ξ,ζ] = (F_iζ(+E_ξ) − F_iζ(−E_ξ)) / (2E) with F in Hartree/bohr and E in a.u.; the even part
    F(+E) + F(−E) − 2F(0) must stay below ``linear_tolerance`` times the odd part, else the field is too strong.
    Displacement route: P_i[ξ,ζ] = (M_ξ(+δ) − M_ξ(−δ)) / (2δ), the difference wrapped by the polarization quantum.
    """
    workdir = Path(workdir)
    try:
        manifest = json.loads((workdir / "jobs.json").read_text())
    except (OSError, ValueError) as err:
        raise LabelError(f"{workdir / 'jobs.json'}: not a CP2K job folder manifest ({err})") from None
    atoms = Atoms(manifest["symbols"], positions=manifest["positions"], cell=manifest["cell"], pbc=True)
    n = len(atoms)
    for name in manifest["jobs"]:
        check_output(workdir / f"{name}.out")
    if manifest["route"] == "field":
        strength = float(manifest["field_au"])
        f0 = _forces_au(workdir / "ref.out")
        apt = np.empty((n, 3, 3))
        for xi, ax in enumerate(_AXES):
            fp, fm = (_forces_au(workdir / f"e{ax}_{s}.out") for s in "pm")
            if fp.shape != (n, 3) or fm.shape != (n, 3) or f0.shape != (n, 3):
                raise LabelError(f"{workdir}: force blocks do not have {n} atoms")
            odd, even = fp - fm, fp + fm - 2 * f0
            if np.abs(even).max() > linear_tolerance * max(np.abs(odd).max(), 1e-12):
                raise LabelError(f"{workdir}: field {strength} a.u. along {ax} is outside the linear regime (even "
                                 f"response {np.abs(even).max():.3g} vs odd {np.abs(odd).max():.3g} Ha/bohr)")
            apt[:, xi, :] = odd / (2 * strength)  # Ha/bohr per a.u. of field = e
        return apt
    delta = float(manifest["delta"])
    apt = np.full((n, 3, 3), np.nan)
    for i in range(n) if manifest["indices"] is None else manifest["indices"]:
        for zeta, ax in enumerate(_AXES):
            mp, mm = (parse_dipole(workdir / f"d{i}{ax}_{s}.moments") for s in "pm")
            apt[i, :, zeta] = wrap_dipole_difference(mp - mm, atoms) / (2 * delta)
    return apt


def _run_route(atoms: Atoms, workdir, route: str, timeout: float | None, **kw) -> np.ndarray:
    workdir = write_jobs(atoms, workdir, route, **kw)
    for name in json.loads((workdir / "jobs.json").read_text())["jobs"]:
        run_cp2k(workdir / f"{name}.inp", workdir, timeout)
    return collect(workdir)


def field_route_cp2k(atoms: Atoms, workdir: str | Path, field_au: float = 5e-4, timeout: float | None = 3600,
                     **input_options) -> np.ndarray:
    """APTs (N, 3, 3) in e from 7 CP2K single points: zero field, then ±``field_au`` (a.u.) along x, y, z, each
    restarted from the zero-field wavefunction; with the linearity check of :func:`collect`."""
    return _run_route(atoms, workdir, "field", timeout, field_au=field_au, **input_options)


def displacement_route_cp2k(atoms: Atoms, workdir: str | Path, delta: float = 0.01, indices: list[int] | None = None,
                            timeout: float | None = 3600, **input_options) -> np.ndarray:
    """APTs (N, 3, 3) in e from Berry-phase dipoles at ±``delta`` Å per atom in ``indices`` and axis (NaN rows
    for the others); 1 + 6·len(indices) single points restarted from the reference wavefunction."""
    return _run_route(atoms, workdir, "displacement", timeout, delta=delta, indices=indices, **input_options)
