"""Uncertainty calibration of the two committee kinds ("full" vs "heads") on the shared DFT water data.

    nice -n 10 python benchmarks/committee_kinds.py [--epochs 24] [--seeds 0 1 2] [--members 4] [--json out.json]

Each variant trains a committee of ``--members`` networks (default architecture, float32, one torch thread,
``--epochs`` epochs of the default `aptnn train` settings) on 4 frames of train10.extxyz, with validation on
pool19 frames 0–1 (best epoch, and the fit of the uncertainty scale s, see aptnn.train.calibrate) and tests on
pool19 frames 13–18 (6 × 384 atoms × 9 components, never seen). Variants:

    full           independent networks (seed + k)
    heads          shared trunk, N readout heads from different random initial weights
    heads+frames   … and each head's loss weighted by its own Bayesian bootstrap over the training frames
    heads+atoms    … or over the labelled training atoms

Printed per variant and seed: training wall time, test RMSE (e) of the committee mean and the mean member RMSE,
the fitted scales (mean_z2: s² = mean (err/σ)²; rms_ratio: s² = mean err² / mean σ²; median:
s = median |err|/σ / 0.6745; q68: 68.27 % quantile of |err|/σ; q95: half its 95.45 % quantile), the Spearman
rank correlation of σ with |err| on the test set, and the fraction of
test components with |err| ≤ σ and ≤ 2σ without s and with each s (a Gaussian gives 68.3 % and 95.4 %).
err = label − committee mean, σ = the committee's unbiased std, both e, per atom and Cartesian component.

Measured (2-core shared machine, 24 epochs, means over seeds 0–2, N = 4): test RMSE of the mean 0.0408 e (full)
vs 0.0489 e (heads); Spearman ρ(σ, |err|) 0.153 vs 0.111 (full higher for every seed); s (q68) 2.14 vs 4.76;
coverage with s (q68) 66.8 % / 89.4 % (full) vs 67.0 % / 88.8 % (heads) at σ / 2σ, raw 37.5 / 64.1 vs
18.7 / 35.6; training wall time per epoch ~4.5× less for heads. Trained to 96 epochs (seed 0): RMSE 0.0243 vs
0.0264 e, ρ 0.169 vs 0.116, s 2.48 vs 6.88, coverage with s 67.6 / 89.3 vs 66.8 / 87.4 %.
The bootstrap weightings (seeds 0–1) left the calibration as it was (coverage with s mean_z2 83.6 / 95.9 %
heads, 83.9 / 95.9 % frames, 83.0 / 95.6 % atoms; ρ 0.110, 0.135, 0.097, within the seed spread) and frame
weights cost accuracy (0.0530 vs 0.0477 e): the default is no weighting. With N = 2, mean_z2 diverges
(s ≈ 1500 and 270: err/σ is Student-t-like with N − 1 degrees of freedom, whose variance is infinite for N ≤ 3)
while q68 still gives 67.5 % / 82.7 % coverage: q68 is the stored ``uncertainty_scale``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read
from scipy.stats import spearmanr

from aptnn.predict import APTPredictor
from aptnn.train import TrainSettings, train_committee

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "water-rpbe-d3"
VARIANTS = {"full": ("full", "none"), "heads": ("heads", "none"), "heads+frames": ("heads", "frames"),
            "heads+atoms": ("heads", "atoms")}
SCALES = ("mean_z2", "rms_ratio", "median", "q68", "q95")


def evaluate(predictor: APTPredictor, test: list) -> dict:
    """Test-set accuracy (e) and calibration of ``predictor``'s committee (fractions in %)."""
    members = np.concatenate(predictor.predict_members(test), axis=1)          # (M, N, 3, 3), e
    labels = np.concatenate([a.arrays["apt"].reshape(-1, 3, 3) for a in test])
    mean, std = members.mean(0), members.std(0, ddof=1)
    err = np.abs(labels - mean).ravel()
    std = std.ravel()
    out = {"rmse_e": float(np.sqrt(np.mean(err**2))),
           "member_rmse_e": float(np.mean([np.sqrt(np.mean((m - labels) ** 2)) for m in members])),
           "spearman": float(spearmanr(std, err).statistic),
           "raw_1": 100 * float(np.mean(err <= std)), "raw_2": 100 * float(np.mean(err <= 2 * std)),
           "best_test_scale": float(np.sqrt(np.mean((err / std) ** 2)))}
    for name, s in predictor.training["calibration"]["scales"].items():
        out[f"s_{name}"] = s
        out[f"{name}_1"] = 100 * float(np.mean(err <= s * std))
        out[f"{name}_2"] = 100 * float(np.mean(err <= 2 * s * std))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=["full", "heads"], choices=list(VARIANTS))
    parser.add_argument("--json", default=None, help="Write the raw results here.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = read(DATA / "train10.extxyz", ":4")
    pool = read(DATA / "pool19.extxyz", ":")
    valid, test = pool[:2], pool[13:19]
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {len(train)} train, "
          f"{len(valid)} valid, {len(test)} test frames of 384 atoms; {args.members} members, {args.epochs} epochs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for variant in args.variants:
                kind, weights = VARIANTS[variant]
                settings = TrainSettings(epochs=args.epochs, seed=seed, head_weights=weights)
                t0 = time.perf_counter()
                train_committee(train, valid, f"{tmp}/m.pt", settings, committee=args.members, kind=kind,
                                progress=False)
                wall = time.perf_counter() - t0
                row = dict(variant=variant, seed=seed, train_s=wall,
                           **evaluate(APTPredictor.load(f"{tmp}/m.pt"), test))
                rows.append(row)
                print(f"  done {variant} seed {seed}: {wall:.0f} s, test RMSE {row['rmse_e']:.4f} e", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_tables(rows, args.variants)


def print_tables(rows: list[dict], variants: list[str]) -> None:
    """Per-row tables, then the mean over seeds of each variant."""
    means = []
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        means.append({k: (statistics.fmean(r[k] for r in mine) if k not in ("variant", "seed") else "mean")
                      for k in mine[0]} | {"variant": v})
    show = rows + means if len({r["seed"] for r in rows}) > 1 else rows
    print(f"\n{'variant':13s} {'seed':>4s} {'train s':>7s} {'RMSE mean':>9s} {'RMSE memb':>9s} "
          + " ".join(f"{'s ' + name:>11s}" for name in SCALES) + f" {'s* test':>7s} {'Spearman':>8s}")
    for r in show:
        print(f"{r['variant']:13s} {str(r['seed']):>4s} {r['train_s']:7.0f} {r['rmse_e']:9.4f} "
              f"{r['member_rmse_e']:9.4f} " + " ".join(f"{r['s_' + name]:11.2f}" for name in SCALES)
              + f" {r['best_test_scale']:7.2f} {r['spearman']:8.3f}")
    print("\ncoverage in % of test components, |err| ≤ kσ (Gaussian: 68.3 / 95.4)")
    print(f"{'variant':13s} {'seed':>4s} {'raw σ':>6s} {'raw 2σ':>6s} " + " ".join(
        f"{name + ' σ':>10s} {name + ' 2σ':>10s}" for name in SCALES))
    for r in show:
        print(f"{r['variant']:13s} {str(r['seed']):>4s} {r['raw_1']:6.1f} {r['raw_2']:6.1f} " + " ".join(
            f"{r[name + '_1']:10.1f} {r[name + '_2']:10.1f}" for name in SCALES))


if __name__ == "__main__":
    main()
