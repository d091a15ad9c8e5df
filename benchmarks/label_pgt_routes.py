"""Every PGT labelling route against its cross-check, in one table (G[i,ξ,η,ζ] = ∂α_ξη/∂r_iζ in e·Å/V).

    OMP_NUM_THREADS=1 python benchmarks/label_pgt_routes.py [--cutoff 250] [--no-molecule]
        > benchmarks/results/label_pgt_routes.txt

Periodic box (CP2K, :mod:`aptnn.label.cp2k_pgt`): one water rotated off the axes in a 5 Å cubic box, PBE,
SZV-MOLOPT-SR-GTH (the settings of tests/test_label_cp2k_pgt.py): the Berry-phase field-pairs route (19 single
points, all atoms) against linear-response polarisabilities (``&LINRES &POLAR``) at ±0.01 Å along every
coordinate of every atom (1 + 18 single points). Molecules (:mod:`aptnn.label.pgt`, skipped when PySCF or tblite
is missing): PySCF HF/6-31G* water, routes A (analytic α at ±δ), B (analytic APTs at ±E) and C (forces in 19
fields); GFN2-xTB water, route C against route A with finite-field α.

Numbers per comparison: max_rel = max|G − G_ref| / max|G_ref|, rms_rel = rms(G − G_ref) / rms(G_ref); per route:
sum_rule = max|Σ_i G_i| / max|G|, asymmetry = max|G[ξη] − G[ηξ]| / max|G|, single points, wall time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import molecule

from aptnn.label.cp2k_pgt import (
    FIELD_PAIRS_AU,
    PAIR_SINGLE_POINTS,
    field_pair_closure,
    pgt_diagnostics,
    pgt_field_pairs_cp2k,
    pgt_linres_cp2k,
    route_difference,
)


def water_box(box: float = 5.0):
    atoms = molecule("H2O")
    atoms.rotate(25, "z")
    atoms.rotate(15, "y")
    atoms.rotate(10, "x")
    atoms.positions += np.array([0.45, 0.5, 0.55]) * box - atoms.positions.mean(axis=0)
    atoms.cell = np.eye(3) * box
    atoms.pbc = True
    return atoms


def tilted_water():
    w = molecule("H2O")
    w.rotate(30, "x")
    w.rotate(20, "z")
    w.positions += [0.3, -0.2, 0.1]
    return w


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def route_line(name: str, g: np.ndarray, points: int, wall: float, extra: str = "") -> str:
    d = pgt_diagnostics(g)
    return (f"  {name:<40} max|G| {d['max_abs']:.4f} e·Å/V  sum_rule {d['sum_rule']:.2e}  asymmetry "
            f"{d['asymmetry']:.2e}  single points {points:>3}  wall {wall:6.1f} s{extra}")


def compare_line(name: str, g: np.ndarray, ref: np.ndarray) -> str:
    d = route_difference(g, ref)
    return f"  {name:<40} max_rel {d['max_rel']:.2e}  rms_rel {d['rms_rel']:.2e}  max_abs {d['max_abs']:.2e} e·Å/V"


def periodic(cutoff: float, workdir: Path) -> None:
    options = {"basis": "SZV-MOLOPT-SR-GTH", "cutoff_ry": cutoff}
    atoms = water_box()
    print(f"periodic box: H2O in a 5 Å cube, CP2K PBE/SZV-MOLOPT-SR-GTH, {cutoff:g} Ry, one core")
    pairs, t_pairs = timed(pgt_field_pairs_cp2k, atoms, workdir / "pairs", timeout=1800, **options)
    closure = field_pair_closure(workdir / "pairs")
    print(route_line(f"field pairs (h = {FIELD_PAIRS_AU:g} a.u.)", pairs, PAIR_SINGLE_POINTS, t_pairs,
                     f"  closure {closure:.2e}"))
    lr, t_lr = timed(pgt_linres_cp2k, atoms, workdir / "linres", delta=0.01, linres_eps=1e-7, timeout=1800,
                     **options)
    print(route_line("linres α at ±0.01 Å (all atoms)", lr, 1 + 6 * len(atoms), t_lr))
    print(compare_line("field pairs vs linres", pairs, lr))
    sys.stdout.flush()


def molecules() -> None:
    from importlib.util import find_spec

    w = tilted_water()
    if find_spec("pyscf") is not None:
        from aptnn.label.pgt import pgt_displacement, pgt_field, pgt_field_forces
        from aptnn.label.pyscf_backend import pyscf_factory

        print("molecule: H2O, PySCF HF/6-31G*")
        a, t_a = timed(pgt_displacement, w, "hf", "6-31g*", delta=0.005)
        (b, asym_b), t_b = timed(pgt_field, w, "hf", "6-31g*", strength=0.05)
        c, t_c = timed(pgt_field_forces, w, pyscf_factory("hf", "6-31g*"), strength=0.1)
        print(route_line("A: analytic α at ±0.005 Å", a, 6 * len(w), t_a, "  (α calculations)"))
        print(route_line("B: analytic APTs at ±0.05 V/Å", b, 6, t_b,
                         f"  (APT calculations; asymmetry before symmetrising {asym_b:.2e})"))
        print(route_line("C: forces in fields, h = 0.1 V/Å", c, PAIR_SINGLE_POINTS, t_c))
        print(compare_line("B vs A", b, a))
        print(compare_line("C vs A", c, a))
        print(compare_line("C vs B", c, b))
    else:
        print("molecule: PySCF not installed, skipped")
    if find_spec("tblite") is not None:
        from aptnn.label.pgt import pgt_displacement, pgt_field_forces, polarizability_field
        from aptnn.label.xtb import xtb_factory

        print("molecule: H2O, GFN2-xTB (tblite, accuracy 1e-3)")
        make = xtb_factory(accuracy=1e-3)
        c, t_c = timed(pgt_field_forces, w, make, strength=0.2)
        a, t_a = timed(pgt_displacement, w, delta=0.01, alpha=lambda x: polarizability_field(x, make, 0.2))
        print(route_line("C: forces in fields, h = 0.2 V/Å", c, PAIR_SINGLE_POINTS, t_c))
        print(route_line("A: finite-field α (0.2 V/Å) at ±0.01 Å", a, 36 * len(w), t_a))
        print(compare_line("C vs A", c, a))
    else:
        print("molecule: tblite not installed, skipped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cutoff", type=float, action="append", help="CP2K cutoff (Ry), repeatable; default 250")
    parser.add_argument("--no-molecule", action="store_true", help="only the periodic CP2K box")
    parser.add_argument("--workdir", type=Path, help="keep the CP2K folders here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        for cutoff in args.cutoff or [250.0]:
            periodic(cutoff, root / f"cutoff{cutoff:g}")
    if not args.no_molecule:
        molecules()


if __name__ == "__main__":
    main()
