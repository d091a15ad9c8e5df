"""Joint (APT + PGT) versus separate (APT-only, PGT-only) training on the labelled GFN2-xTB water clusters of
make_dataset.py, with held-out accuracy (issue 17).

    OMP_NUM_THREADS=1 python benchmarks/raman_xtb/train.py --data /work/scratch/raman_xtb \
        --out /work/scratch/raman_xtb/models [--which joint apt pgt] [--max-time 540]

Each model: same settings and seed, train.extxyz (train10 frames 0–7) for fitting, valid.extxyz (train10 frames
8–9) for early stopping / the scheduler, test.extxyz (pool19 frames only) held out. Held-out numbers with the
saved checkpoint through :class:`aptnn.predict.APTPredictor` (float64): component RMSE of the APT (e) and of the
PGT (e·Å/V), relative RMSE = RMSE / RMS of the labels, per species too. Writes OUT/{joint,apt,pgt}.pt, .csv
learning curves and benchmarks/results/raman_xtb_training.txt (one table, settings included).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"joint": ["apt", "pgt"], "apt": ["apt"], "pgt": ["pgt"]}


def held_out(model_path: Path, frames, targets) -> dict:
    from aptnn.label.pgt import get_pgt
    from aptnn.labels import get_apt
    from aptnn.predict import APTPredictor

    model = APTPredictor.load(str(model_path), dtype="float64")
    out = {}
    species = np.concatenate([a.numbers for a in frames])
    for t in targets:
        pred, ref = [], []
        for k in range(0, len(frames), 8):
            chunk = frames[k:k + 8]
            if t == "apt":
                pred += model.predict_batch(chunk)[0]
                ref += [get_apt(a)[0] for a in chunk]
            else:
                pred += model.predict_pgt_batch(chunk)[0]
                ref += [get_pgt(a) for a in chunk]
        p, r = np.concatenate(pred), np.concatenate(ref)
        res = {"rmse": float(np.sqrt(np.mean((p - r) ** 2))), "label_rms": float(np.sqrt(np.mean(r**2)))}
        res["rel"] = res["rmse"] / res["label_rms"]
        for z, name in ((1, "H"), (8, "O")):
            m = species == z
            res[f"rmse_{name}"] = float(np.sqrt(np.mean((p[m] - r[m]) ** 2)))
            res[f"rel_{name}"] = res[f"rmse_{name}"] / float(np.sqrt(np.mean(r[m] ** 2)))
        # sum rule of the predictions, per frame (neutral clusters: Σ_i P_i = 0; Σ_i G_i = 0)
        splits = np.cumsum([len(a) for a in frames])[:-1]
        res["max_sum_rule"] = float(max(np.abs(s.sum(0)).max() for s in np.split(p, splits)))
        out[t] = res
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/scratch/raman_xtb")
    p.add_argument("--out", default="/work/scratch/raman_xtb/models")
    p.add_argument("--which", nargs="+", default=["joint", "apt", "pgt"], choices=list(TARGETS))
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--max-time", type=float, default=540.0, help="seconds of training per model")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--n-train", type=int, default=0, help="use only the first N training clusters (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "raman_xtb_training.txt"))
    args = p.parse_args()
    import torch
    from ase.io import read

    from aptnn.train import TrainSettings, train_committee

    torch.set_num_threads(1)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = read(data / "train.extxyz", ":")
    if args.n_train:
        train = train[:args.n_train]
    valid = read(data / "valid.extxyz", ":")
    test = read(data / "test.extxyz", ":")
    settings = TrainSettings(epochs=args.epochs, max_time=args.max_time, lr=args.lr, batch_size=args.batch_size,
                             patience=args.patience, early_stopping=3 * args.patience, seed=args.seed,
                             dtype="float32")
    model_kwargs = dict(channels=args.channels, cutoff=args.cutoff)
    summary = {}
    summary_path = out / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    for which in args.which:
        targets = TARGETS[which]
        t = time.perf_counter()
        (info,) = train_committee(train, valid, out / f"{which}.pt", settings, progress=False,
                                  log_path=out / f"{which}.csv", source="train.extxyz", valid_source="valid.extxyz",
                                  description=f"GFN2-xTB water clusters (6-16 H2O cut from RPBE-D3 liquid frames), "
                                              f"targets {targets}; benchmarks/raman_xtb",
                                  targets=targets, **model_kwargs)
        wall = time.perf_counter() - t
        summary[which] = {"targets": targets, "wall_s": wall, "best_epoch": info["best_epoch"],
                          "epochs_run": info["epochs_run"], "test": held_out(out / f"{which}.pt", test, targets),
                          "valid": held_out(out / f"{which}.pt", valid, targets)}
        print(which, json.dumps(summary[which], indent=1), flush=True)
        summary_path.write_text(json.dumps(summary, indent=1))
        with open(data / "STATUS", "a") as f:
            f.write(f"trained {which} in {wall:.0f} s {time.strftime('%H:%M:%S')}\n")
    n_atoms = lambda fr: sum(len(a) for a in fr)  # noqa: E731
    lines = [
        "Joint vs separate training on GFN2-xTB water clusters (benchmarks/raman_xtb/train.py)",
        f"data: train {len(train)} clusters / {n_atoms(train)} atoms (train10 frames 0-7), valid {len(valid)} / "
        f"{n_atoms(valid)} (train10 frames 8-9, early stopping), held-out test {len(test)} / {n_atoms(test)} "
        "(pool19 frames only); 6-16 waters each, open boundaries",
        "labels: GFN2-xTB (tblite, accuracy 1e-3): PGT route C (19 field single points, h = 0.2 V/A), APT from the "
        "same +-h points (dF/dE)",
        f"settings: channels {args.channels}, lmax 2, 2 layers, cutoff {args.cutoff} A, float32, Adam lr {args.lr}, "
        f"batch {args.batch_size} frames, plateau patience {args.patience}, early stopping {3 * args.patience}, "
        f"max {args.epochs} epochs, max_time {args.max_time:.0f} s, seed {args.seed}, 1 thread",
        "held-out RMSE per tensor component: APT in e, PGT in e*A/V; rel = RMSE / RMS(label)",
        "",
        f"{'model':<7} {'epochs':>6} {'wall_s':>7}  {'APT rmse':>9} {'rel':>6} {'rel_H':>6} {'rel_O':>6}  "
        f"{'PGT rmse':>9} {'rel':>6} {'rel_H':>6} {'rel_O':>6}   (valid rel APT / PGT)",
    ]
    for which in ("joint", "apt", "pgt"):
        if which not in summary:
            continue
        s = summary[which]
        cols = []
        for t in ("apt", "pgt"):
            r = s["test"].get(t)
            cols.append(f"{r['rmse']:9.4f} {r['rel']:6.3f} {r['rel_H']:6.3f} {r['rel_O']:6.3f}" if r
                        else f"{'-':>9} {'-':>6} {'-':>6} {'-':>6}")
        v = "/".join(f"{s['valid'][t]['rel']:.3f}" if t in s["valid"] else "-" for t in ("apt", "pgt"))
        lines.append(f"{which:<7} {s['epochs_run']:>6} {s['wall_s']:7.0f}  {cols[0]}  {cols[1]}   ({v})")
    any_s = next(iter(summary.values()))
    for t in ("apt", "pgt"):
        rms = next((s["test"][t]["label_rms"] for s in summary.values() if t in s["test"]), None)
        if rms:
            lines.append(f"label RMS on test: {t} {rms:.4f} {'e' if t == 'apt' else 'e*A/V'}")
    lines.append("max |sum rule| of predictions on test: " + ", ".join(
        f"{w} {t} {s['test'][t]['max_sum_rule']:.1e}" for w, s in summary.items() for t in s["test"]))
    del any_s
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.results).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
