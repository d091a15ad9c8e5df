"""Polarisability-gradient tensors (PGTs, for Raman) of periodic boxes with CP2K (Quickstep, GPW, Berry phase).

Units (as in :mod:`aptnn.label.pgt`): G_i[ξ,η,ζ] = ∂α_ξη/∂r_iζ in e·Å/V, shape (N, 3, 3, 3); α in e·Å²/V;
positions in Å; CP2K fields in atomic units (1 a.u. = :data:`aptnn.units.FIELD_AU_TO_V_PER_ANGSTROM` ≈ 51.42 V/Å),
forces parsed in eV/Å, so that ∂²F/∂E² in eV/Å per (V/Å)² is already e·Å/V. 1 a.u. of PGT (e²a0/E_h) is
a0/E_h = 0.01945 e·Å/V.

Two independent routes, each a folder of CP2K inputs (:func:`write_pgt_jobs`; ``run.sh`` runs them, the zero-field
reference first, the others restart from its wavefunction) read back by :func:`collect_pgt`:

* ``field_pairs`` (:func:`pgt_field_pairs_cp2k`, all atoms): G_i[ξ,η,ζ] = ∂²F_iζ/∂E_ξ∂E_η from forces at
  19 Berry-phase field (``&PERIODIC_EFIELD``) single points: 0, ±h e_ξ and ±h(e_ξ ± e_η) for ξ < η.
  Diagonal: (F(+h e_ξ) + F(−h e_ξ) − 2F(0)) / h²; mixed: (F(h(e_ξ+e_η)) + F(−h(e_ξ+e_η)) − F(h(e_ξ−e_η))
  − F(−h(e_ξ−e_η))) / 4h². Both are even in E, so the sign convention of the field (cp2k.FIELD_SIGN) drops out,
  and the stencil is ξη-symmetric by construction. Its internal check is the *closure*: the mixed points alone
  also give G_ξξ + G_ηη = (F(s) + F(−s) + F(d) + F(−d) − 4F(0)) / 2h², which must match the diagonal points;
  the mismatch measures SCF noise (∝ ``eps_scf``/h²) and O(h²) nonlinearity.
* ``linres`` (:func:`pgt_linres_cp2k`, a subset of atoms): the analytic Berry-phase polarisability of CP2K's
  density-functional perturbation theory (``&PROPERTIES &LINRES &POLAR``) at ±δ along each coordinate of the
  chosen atoms, G_i[:,:,ζ] = (α(+δ e_iζ) − α(−δ e_iζ)) / 2δ; 1 + 6·len(indices) single points. No finite field
  at all, so it is an independent check of the first route.

Choice of h: G is small (~0.1 e·Å/V), so the even force response h²G is ~1e-5 Ha/bohr at h = 1e-3 a.u.; the
default h = 3e-3 a.u. with EPS_SCF 1e-9 gives a closure of 2.9e-3 (1.9e-3 at 1.5e-3, 8e-3 at 6e-3 a.u.: O(h²)
beyond). The Berry-phase field is stable while e·|E|·L (L the cell length; |E| up to √2·h) stays below the band
gap: at 3e-3 a.u. that is 3.3 eV for L = 15 Å, so lower h for larger boxes or small gaps. Measured on one water
in a 5 Å box (PBE/SZV-MOLOPT-SR-GTH; benchmarks/label_pgt_routes.py): the two routes agree to 1.4e-3 of
max|G| at 400 Ry (9e-3 on the O at 250 Ry, the real-space grid); sum rule max|Σ_i G_i| 0.26 % (400 Ry) and
0.8 % (250 Ry) of max|G|; about 1.5-2 s per field point, 3-5 s per linres point, on one core.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from ase import Atoms

from aptnn import units
from aptnn.label.cp2k import BINARY, check_output, parse_forces, run_cp2k, write_input
from aptnn.label.routes import LabelError

_AXES = "xyz"
#: default field step h in a.u. (0.154 V/Å): second differences amplify force noise by 1/h²
FIELD_PAIRS_AU: float = 3e-3
#: default SCF convergence of the field-pair single points (the CP2K APT route uses 1e-7)
EPS_SCF_PAIRS: float = 1e-9
PAIR_SINGLE_POINTS = 19


def field_pair_plan() -> list[tuple[str, np.ndarray]]:
    """The 19 single points of the field-pairs route: [(name, direction)] with the field h·direction (a.u.);
    "ref" (zero field) first, then ``ex_p``/``ex_m`` (±e_x), …, then ``exy_pp`` (+e_x+e_y), ``exy_mm``,
    ``exy_pm`` (+e_x−e_y), ``exy_mp``, … for the pairs xy, xz, yz."""
    eye = np.eye(3)
    plan = [("ref", np.zeros(3))]
    plan += [(f"e{_AXES[a]}_{s}", sign * eye[a]) for a in range(3) for sign, s in ((1, "p"), (-1, "m"))]
    for a in range(3):
        for b in range(a + 1, 3):
            for sa, sb, s in ((1, 1, "pp"), (-1, -1, "mm"), (1, -1, "pm"), (-1, 1, "mp")):
                plan.append((f"e{_AXES[a]}{_AXES[b]}_{s}", sa * eye[a] + sb * eye[b]))
    return plan


def linres_polar_section(eps: float = 1e-9, max_iter: int = 100) -> list[str]:
    """``&PROPERTIES`` lines for CP2K's linear-response Berry-phase polarisability (``&LINRES &POLAR``, the
    periodic dipole operator); ``eps`` is the response-equation convergence (a.u.)."""
    return ["&PROPERTIES", "  &LINRES", f"    EPS {eps:.1E}", f"    MAX_ITER {int(max_iter)}",
            "    PRECONDITIONER FULL_ALL", "    &POLAR", "      DO_RAMAN .TRUE.",
            "      PERIODIC_DIPOLE_OPERATOR .TRUE.", "      &PRINT", "        &POLAR_MATRIX ON",
            "        &END POLAR_MATRIX", "      &END PRINT", "    &END POLAR", "  &END LINRES", "&END PROPERTIES"]


_POLAR = re.compile(r"POLAR\| Polarizability tensor \[a\.u\.\]\s*\n"
                    r"\s*POLAR\| xx,yy,zz\s+(\S+)\s+(\S+)\s+(\S+)\s*\n"
                    r"\s*POLAR\| xy,xz,yz\s+(\S+)\s+(\S+)\s+(\S+)\s*\n"
                    r"\s*POLAR\| yx,zx,zy\s+(\S+)\s+(\S+)\s+(\S+)")


def parse_polarizability(source: str | Path) -> np.ndarray:
    """α (3, 3) in e·Å²/V from the last 'POLAR| Polarizability tensor [a.u.]' block of a CP2K output (path or
    text), α[ξ,η] as CP2K prints it (rows xx,yy,zz / xy,xz,yz / yx,zx,zy; not symmetrised)."""
    if isinstance(source, str) and "\n" in source:
        text, name = source, "<text>"
    else:
        try:
            text, name = Path(source).read_text(errors="replace"), str(source)
        except OSError as err:
            raise LabelError(f"{source}: cannot read the CP2K file ({err.strerror or err})") from None
    found = _POLAR.findall(text)
    if not found:
        raise LabelError(f"{name}: no complete 'POLAR| Polarizability tensor [a.u.]' block (no &LINRES &POLAR "
                         "section, or the run did not finish)")
    try:
        xx, yy, zz, xy, xz, yz, yx, zx, zy = (float(v) for v in found[-1])
    except ValueError:
        raise LabelError(f"{name}: garbled polarizability block {found[-1]}") from None
    alpha = np.array([[xx, xy, xz], [yx, yy, yz], [zx, zy, zz]])
    return alpha * units.POLARIZABILITY_AU_TO_E_A2_PER_V


def _linres_plan(n: int, indices) -> list[tuple[str, int, int, int]]:
    jobs = [("ref", -1, -1, 0)]
    for i in range(n) if indices is None else indices:
        if not 0 <= int(i) < n:
            raise LabelError(f"atom index {i} out of range for {n} atoms")
        jobs += [(f"d{int(i)}{_AXES[ax]}_{s}", int(i), ax, sign) for ax in range(3)
                 for sign, s in ((1, "p"), (-1, "m"))]
    return jobs


def write_pgt_jobs(atoms: Atoms, workdir: str | Path, route: str = "field_pairs", *, field_au: float = FIELD_PAIRS_AU,
                   eps_scf: float | None = None, delta: float = 0.01, indices: list[int] | None = None,
                   linres_eps: float = 1e-9, **input_options) -> Path:
    """Write every single point of a PGT route (inputs, ``jobs.json``, ``run.sh``) into ``workdir``; returns it.

    ``route`` "field_pairs": 19 fields of step ``field_au`` (a.u.; the mixed points have |E| = √2·h); "linres":
    ``&LINRES &POLAR`` at ±``delta`` Å along x, y, z of the atoms ``indices`` (None: all), response convergence
    ``linres_eps``. ``eps_scf``: SCF convergence (None: :data:`EPS_SCF_PAIRS` for field pairs, CP2K route's 1e-7
    for linres, whose α is a first derivative). ``input_options`` go to :func:`aptnn.label.cp2k.write_input`
    (basis, cutoff_ry, xc, …). Every job but "ref" restarts from ``ref-RESTART.wfn``. Read back with
    :func:`collect_pgt`.
    """
    if route not in ("field_pairs", "linres"):
        raise LabelError(f"unknown PGT route {route!r} (field_pairs or linres)")
    if not field_au > 0 or not delta > 0:
        raise LabelError(f"the field step ({field_au} a.u.) and displacement ({delta} Å) must be positive")
    if eps_scf is None:
        eps_scf = EPS_SCF_PAIRS if route == "field_pairs" else 1e-7
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    names = []
    if route == "field_pairs":
        for name, direction in field_pair_plan():
            write_input(atoms, workdir / f"{name}.inp", project=name, field_au=direction * field_au if name != "ref"
                        else None, restart_wfn=None if name == "ref" else "ref-RESTART.wfn", eps_scf=eps_scf,
                        print_dipole=False, **input_options)
            names.append(name)
    else:
        linres = linres_polar_section(linres_eps)
        for name, i, ax, sign in _linres_plan(len(atoms), indices):
            a = atoms.copy()
            if i >= 0:
                a.positions[i, ax] += sign * delta
            write_input(a, workdir / f"{name}.inp", project=name, restart_wfn=None if i < 0 else "ref-RESTART.wfn",
                        eps_scf=eps_scf, print_dipole=False, extra_force_eval=() if i < 0 else linres,
                        **input_options)
            names.append(name)
    manifest = {"kind": "pgt", "route": route, "field_au": field_au, "eps_scf": eps_scf, "delta": delta,
                "indices": indices, "jobs": names, "symbols": atoms.get_chemical_symbols(),
                "positions": atoms.positions.tolist(), "cell": atoms.cell.array.tolist(),
                "units": {"positions": "angstrom", "field": "atomic units", "delta": "angstrom", "pgt": units.PGT}}
    (workdir / "jobs.json").write_text(json.dumps(manifest, indent=1))
    script = workdir / "run.sh"
    script.write_text("#!/bin/bash\n# CP2K single points of an aptnn PGT route; the reference first.\nset -e\n"
                      'cd "$(dirname "$0")"\nexport OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}\n'
                      f"CP2K=${{CP2K:-{BINARY}}}\n"
                      f"for job in {' '.join(names)}; do\n"
                      '  $CP2K -i "$job.inp" -o "$job.out"\ndone\n')
    script.chmod(0o755)
    return workdir


def _manifest(workdir: Path) -> dict:
    try:
        manifest = json.loads((workdir / "jobs.json").read_text())
    except (OSError, ValueError) as err:
        raise LabelError(f"{workdir / 'jobs.json'}: not a CP2K job folder manifest ({err})") from None
    if manifest.get("kind") != "pgt":
        raise LabelError(f"{workdir / 'jobs.json'}: not a PGT job folder (written by write_pgt_jobs)")
    return manifest


def field_pair_forces(workdir: str | Path) -> tuple[dict[str, np.ndarray], float]:
    """({job name: forces (N, 3) in eV/Å}, field step h in V/Å) of a finished field-pairs folder."""
    workdir = Path(workdir)
    manifest = _manifest(workdir)
    n = len(manifest["symbols"])
    forces = {}
    for name in manifest["jobs"]:
        check_output(workdir / f"{name}.out")
        forces[name] = parse_forces(workdir / f"{name}.out")
        if forces[name].shape != (n, 3):
            raise LabelError(f"{workdir / (name + '.out')}: force block has {len(forces[name])} atoms, expected {n}")
    return forces, float(manifest["field_au"]) * units.FIELD_AU_TO_V_PER_ANGSTROM


def _field_pairs(f: dict[str, np.ndarray], h: float) -> tuple[np.ndarray, float]:
    """(G (N, 3, 3, 3) in e·Å/V, closure) from field-pair forces (eV/Å) at step h (V/Å)."""
    g = np.empty((len(f["ref"]), 3, 3, 3))
    for a, x in enumerate(_AXES):
        g[:, a, a, :] = (f[f"e{x}_p"] + f[f"e{x}_m"] - 2 * f["ref"]) / h**2
        for b in range(a + 1, 3):
            p = f"e{x}{_AXES[b]}_"
            g[:, a, b, :] = g[:, b, a, :] = (f[p + "pp"] + f[p + "mm"] - f[p + "pm"] - f[p + "mp"]) / (4 * h**2)
    worst = 0.0
    for a in range(3):
        for b in range(a + 1, 3):
            p = f"e{_AXES[a]}{_AXES[b]}_"
            both = (f[p + "pp"] + f[p + "mm"] + f[p + "pm"] + f[p + "mp"] - 4 * f["ref"]) / (2 * h**2)
            worst = max(worst, float(np.abs(both - g[:, a, a, :] - g[:, b, b, :]).max()))
    return g, worst / max(float(np.abs(g).max()), 1e-300)


def field_pair_closure(workdir: str | Path) -> float:
    """Closure of a finished field-pairs folder: max over pairs ξ<η of |(G_ξξ + G_ηη) from the mixed points −
    the same from the diagonal points|, relative to max|G| (dimensionless; 0 for exact second derivatives)."""
    return _field_pairs(*field_pair_forces(workdir))[1]


def collect_pgt(workdir: str | Path, closure_tolerance: float = 0.05) -> np.ndarray:
    """G (N, 3, 3, 3) in e·Å/V from a finished :func:`write_pgt_jobs` folder (linres: NaN for atoms not
    displaced). Raises :class:`LabelError` naming the output of a failed, unconverged or truncated run, and for
    field pairs whose :func:`field_pair_closure` exceeds ``closure_tolerance`` (field step too large for the
    quadratic regime, or SCF noise over h² too large: tighten ``eps_scf`` or enlarge the step)."""
    workdir = Path(workdir)
    manifest = _manifest(workdir)
    n = len(manifest["symbols"])
    if manifest["route"] == "field_pairs":
        g, closure = _field_pairs(*field_pair_forces(workdir))
        if closure > closure_tolerance:
            raise LabelError(f"{workdir}: field-pair closure {closure:.3g} of max|G| exceeds {closure_tolerance:g} "
                             f"(field step {manifest['field_au']} a.u. too large, or eps_scf too loose)")
        return g
    delta = float(manifest["delta"])
    for name in manifest["jobs"]:
        check_output(workdir / f"{name}.out")
    g = np.full((n, 3, 3, 3), np.nan)
    for i in range(n) if manifest["indices"] is None else manifest["indices"]:
        for zeta, x in enumerate(_AXES):
            ap, am = (parse_polarizability(workdir / f"d{i}{x}_{s}.out") for s in "pm")
            g[i, :, :, zeta] = (ap - am) / (2 * delta)
    return g


def _run(atoms: Atoms, workdir, route: str, timeout: float | None, **kw) -> np.ndarray:
    workdir = write_pgt_jobs(atoms, workdir, route, **kw)
    for name in _manifest(workdir)["jobs"]:
        run_cp2k(workdir / f"{name}.inp", workdir, timeout)
    return collect_pgt(workdir)


def pgt_field_pairs_cp2k(atoms: Atoms, workdir: str | Path, field_au: float = FIELD_PAIRS_AU,
                         timeout: float | None = 3600, eps_scf: float = EPS_SCF_PAIRS, **cp2k_options) -> np.ndarray:
    """G (N, 3, 3, 3) in e·Å/V of every atom of the periodic box ``atoms`` from 19 CP2K Berry-phase field single
    points (step ``field_au`` a.u., SCF converged to ``eps_scf``), run one after the other in ``workdir``;
    ``cp2k_options`` go to :func:`aptnn.label.cp2k.write_input`. ξη-symmetric by construction."""
    return _run(atoms, workdir, "field_pairs", timeout, field_au=field_au, eps_scf=eps_scf, **cp2k_options)


def pgt_linres_cp2k(atoms: Atoms, workdir: str | Path, delta: float = 0.01, indices: list[int] | None = None,
                    timeout: float | None = 3600, linres_eps: float = 1e-9, **cp2k_options) -> np.ndarray:
    """G (N, 3, 3, 3) in e·Å/V (NaN for atoms not in ``indices``) from CP2K's linear-response Berry-phase
    polarisability at ±``delta`` Å along each coordinate of the atoms ``indices`` (None: all): 1 + 6·len
    single points in ``workdir``. Not ξη-symmetrised (CP2K's α is symmetric to its response convergence)."""
    return _run(atoms, workdir, "linres", timeout, delta=delta, indices=indices, linres_eps=linres_eps,
                **cp2k_options)


def pgt_diagnostics(g: np.ndarray) -> dict[str, float]:
    """Checks of a PGT (N, 3, 3, 3) in e·Å/V, relative to max|G|: ``sum_rule`` max|Σ_i G_i| (0 for exact
    translational invariance; CP2K's real-space grid breaks it slightly), ``asymmetry`` max|G[ξη] − G[ηξ]|,
    and ``max_abs`` max|G| (e·Å/V). Atoms with NaN rows are left out of the asymmetry and sum (sum_rule NaN)."""
    g = np.asarray(g, dtype=float)
    scale = max(float(np.nanmax(np.abs(g))), 1e-300)
    ok = ~np.isnan(g).any(axis=(1, 2, 3))
    total = g.sum(axis=0) if ok.all() else np.full((3, 3, 3), np.nan)
    asym = np.abs(g[ok] - g[ok].transpose(0, 2, 1, 3)).max() if ok.any() else np.nan
    return {"max_abs": scale, "sum_rule": float(np.abs(total).max() / scale), "asymmetry": float(asym / scale)}


def route_difference(g: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Agreement of two PGTs (N, 3, 3, 3) on the atoms where both are finite: ``max_rel`` max|g − ref| / max|ref|
    and ``rms_rel`` rms(g − ref) / rms(ref) (dimensionless), ``max_abs`` max|g − ref| (e·Å/V)."""
    g, ref = np.asarray(g, dtype=float), np.asarray(ref, dtype=float)
    ok = ~(np.isnan(g).any(axis=(1, 2, 3)) | np.isnan(ref).any(axis=(1, 2, 3)))
    if not ok.any():
        raise LabelError("the two PGTs share no atom with finite values")
    d, r = g[ok] - ref[ok], ref[ok]
    return {"max_abs": float(np.abs(d).max()), "max_rel": float(np.abs(d).max() / np.abs(r).max()),
            "rms_rel": float(np.sqrt((d**2).mean() / (r**2).mean()))}
