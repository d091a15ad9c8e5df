"""Labelled GFN2-xTB water clusters (APTs and PGTs) cut from liquid-water frames (issue 17).

    OMP_NUM_THREADS=1 python benchmarks/raman_xtb/make_dataset.py --out /work/scratch/raman_xtb \
        --n-train 60 --n-valid 12 --n-test 24 [--time-only 3]

Geometry source: the 384-atom RPBE-D3 liquid-water frames in /work/shared/data/water-rpbe-d3 (cubic 15.6627 Å
box, positions Å); only the geometry is used. A cluster = the ``n`` (6–16, seeded) whole molecules whose oxygen
is nearest (minimum image) to a random centre, each molecule unwrapped next to its oxygen and the whole
cluster shifted to the minimum-image position around the centre; pbc False, cell zero.

Labels (GFN2-xTB, tblite, ``xtb_factory(accuracy=1e-3)``, one thread):

* ``pgt`` (N, 27) e·Å/V, route C :func:`aptnn.label.pgt.pgt_field_forces` (19 single points, h = 0.2 V/Å, the
  default the pgt.py docstring recommends for xTB);
* ``apt`` (N, 9) e from the same single points: P_i[ξ,ζ] = ∂F_iζ/∂E_ξ = (F(+h e_ξ) − F(−h e_ξ)) / 2h, the
  convention of :func:`aptnn.label.routes.field_route` (``--check`` compares both on one cluster; the O(h²)
  difference at h = 0.2 V/Å against field_route's 0.01 V/Å is reported).

Splits: train and valid (early stopping) from train10 frames, held-out test from pool19 frames only.
Outputs: OUT/{train,valid,test}.extxyz and OUT/dataset_log.txt.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from aptnn.label.pgt import pgt_field_forces, set_pgt
from aptnn.labels import set_apt

DATA = Path("/work/shared/data/water-rpbe-d3")
STRENGTH = 0.2  # V/Å, route C


def molecules(frame: Atoms) -> list[np.ndarray]:
    """Index triples (O, H, H) of the whole molecules of a periodic water frame (minimum image)."""
    cell = np.diag(frame.cell.array)
    pos = frame.positions
    o = np.where(frame.numbers == 8)[0]
    h = np.where(frame.numbers == 1)[0]
    d = pos[h][:, None, :] - pos[o][None, :, :]
    d -= np.round(d / cell) * cell
    owner = np.argmin(np.linalg.norm(d, axis=2), axis=1)
    mols = []
    for k, oi in enumerate(o):
        hs = h[owner == k]
        if len(hs) != 2:
            raise ValueError(f"oxygen {oi} has {len(hs)} hydrogens")
        mols.append(np.array([oi, *hs]))
    return mols


def cut_cluster(frame: Atoms, n: int, rng: np.random.Generator) -> Atoms:
    cell = np.diag(frame.cell.array)
    pos = frame.positions
    mols = molecules(frame)
    centre = rng.uniform(0, 1, 3) * cell
    d_o = np.array([pos[m[0]] for m in mols]) - centre
    d_o -= np.round(d_o / cell) * cell
    order = np.argsort(np.linalg.norm(d_o, axis=1))[:n]
    numbers, xyz = [], []
    for k in order:
        m = mols[k]
        o_pos = centre + d_o[k]
        for a in m:
            d = pos[a] - pos[m[0]]
            d -= np.round(d / cell) * cell
            numbers.append(frame.numbers[a])
            xyz.append(o_pos + d)
    xyz = np.array(xyz)
    atoms = Atoms(numbers=numbers, positions=xyz - xyz.mean(0), pbc=False)
    return atoms


def label(atoms: Atoms, make) -> tuple[np.ndarray, np.ndarray]:
    """(APT (N,3,3) e, PGT (N,3,3,3) e·Å/V) from the 19 route-C single points."""
    g, apt = pgt_field_forces(atoms, make, STRENGTH, with_apt=True)
    return apt, g


def check(make, log) -> None:
    """Route-C derived APTs and PGTs against field_route / pgt_field_forces on one cluster."""
    from aptnn.label.routes import field_route

    frame = read(DATA / "train10.extxyz", 0)
    atoms = cut_cluster(frame, 6, np.random.default_rng(99))
    apt, g = label(atoms, make)
    ref_apt = field_route(atoms, make)
    ref_g = pgt_field_forces(atoms, make, STRENGTH)

    def rel(a, b):
        return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))
    log(f"check (6 waters): APT from route-C points (h={STRENGTH}) vs field_route (h=0.01): rms_rel "
        f"{rel(apt, ref_apt):.2e}, max_abs {np.abs(apt - ref_apt).max():.2e} e; "
        f"transposed rms_rel {rel(apt.transpose(0, 2, 1), ref_apt):.2e}")
    log(f"check: PGT vs pgt_field_forces: max_abs {np.abs(g - ref_g).max():.2e} e·Å/V; sum rule "
        f"max|Σ G|/max|G| {np.abs(g.sum(0)).max() / np.abs(g).max():.2e}; APT sum rule (neutral) "
        f"max|Σ P| {np.abs(apt.sum(0)).max():.2e} e")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/work/scratch/raman_xtb")
    p.add_argument("--n-train", type=int, default=60)
    p.add_argument("--n-valid", type=int, default=12)
    p.add_argument("--n-test", type=int, default=24)
    p.add_argument("--min-waters", type=int, default=6)
    p.add_argument("--max-waters", type=int, default=16)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--time-only", type=int, default=0, help="label this many clusters, print timings, stop")
    p.add_argument("--check", action="store_true", help="compare the derived APTs with field_route first")
    args = p.parse_args()
    import torch  # noqa: F401 (keeps one thread when aptnn imports torch)
    torch.set_num_threads(1)

    from aptnn.label.xtb import xtb_factory

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / ("dataset_timing.txt" if args.time_only else "dataset_log.txt"), "w")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    log(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} argv={' '.join(sys.argv)}")
    make = xtb_factory(accuracy=1e-3)
    if args.check:
        check(make, log)
    rng = np.random.default_rng(args.seed)
    train_frames = read(DATA / "train10.extxyz", ":")
    pool_frames = read(DATA / "pool19.extxyz", ":")
    if args.time_only:
        for n in np.linspace(args.min_waters, args.max_waters, args.time_only).round().astype(int):
            atoms = cut_cluster(train_frames[0], int(n), rng)
            t = time.perf_counter()
            label(atoms, make)
            log(f"timing: {n} waters ({len(atoms)} atoms): {time.perf_counter() - t:.1f} s per cluster (19 points)")
        return
    plan = [("train", train_frames[:8], args.n_train), ("valid", train_frames[8:], args.n_valid),
            ("test", pool_frames, args.n_test)]
    t_all = time.perf_counter()
    for name, frames, count in plan:
        done = []
        t_split = time.perf_counter()
        for k in range(count):
            fi = int(rng.integers(len(frames)))
            n = int(rng.integers(args.min_waters, args.max_waters + 1))
            atoms = cut_cluster(frames[fi], n, rng)
            t = time.perf_counter()
            apt, g = label(atoms, make)
            set_apt(atoms, apt)
            set_pgt(atoms, g)
            atoms.info.update(n_waters=n, source_frame=fi, source=f"{'pool19' if name == 'test' else 'train10'}",
                              label="GFN2-xTB tblite accuracy 1e-3, route C h=0.2 V/A")
            done.append(atoms)
            log(f"{name} {k + 1}/{count}: {n} waters, frame {fi}, {time.perf_counter() - t:.1f} s")
            write(out / f"{name}.extxyz", done, format="extxyz")
        log(f"{name}: {len(done)} clusters, {sum(len(a) for a in done)} atoms, "
            f"{time.perf_counter() - t_split:.0f} s")
    log(f"total labelling wall {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
