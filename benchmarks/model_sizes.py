"""Accuracy versus cost of candidate model sizes, on the shared DFT water data.

    python benchmarks/model_sizes.py [--minutes 6] [--jobs 2] [-o model_sizes]

Each candidate (channels × lmax × layers) is trained with the default `aptnn train` settings on
train10.extxyz for a fixed wall-time budget (one torch thread each, ``--jobs`` in parallel), then evaluated on
pool19.extxyz (component RMSE, e) and timed for inference (CPU s per 384-atom frame, one thread, median).
Writes OUT.csv and OUT.png (RMSE versus inference cost). The paper-sized network (20 channels) is the
baseline of the cost column.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "water-rpbe-d3"
CANDIDATES = [  # (channels, lmax, layers)
    (4, 2, 2), (8, 1, 2), (8, 2, 1), (8, 2, 2), (8, 2, 3), (16, 2, 2), (20, 2, 2),
]

CHILD = """
import json, statistics, sys, time, torch
torch.set_num_threads(1)
from aptnn.evaluate import metrics
from aptnn.io import read_frames
from aptnn.predict import APTPredictor
model = APTPredictor.load(sys.argv[1])
frames = read_frames(sys.argv[2])
m = metrics(frames, model.predict_batch(frames[:10])[0] + model.predict_batch(frames[10:])[0])
atoms = frames[0]
model.predict(atoms)
cpu = []
for _ in range(7):
    c = time.process_time(); model.predict(atoms); cpu.append(time.process_time() - c)
n = sum(p.numel() for p in model.members[0].parameters())
print(json.dumps({"rmse_e": m["rmse_e"], "cpu_s": statistics.median(cpu), "params": n}))
"""


def run(candidate, minutes: float, out: Path) -> dict:
    ch, lmax, layers = candidate
    name = f"c{ch}_l{lmax}_n{layers}"
    ckpt = out / f"{name}.pt"
    subprocess.run(["aptnn", "train", str(DATA / "train10.extxyz"), "-o", str(ckpt), "--channels", str(ch),
                    "--lmax", str(lmax), "--layers", str(layers), "--max-time", str(minutes), "--threads", "1",
                    "--quiet"], check=True, capture_output=True)
    res = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(DATA / "pool19.extxyz")], check=True,
                         capture_output=True, text=True)
    row = json.loads(res.stdout.strip().splitlines()[-1])
    epochs = sum(1 for _ in open(ckpt.with_suffix(".csv"))) - 1
    return {"name": name, "channels": ch, "lmax": lmax, "layers": layers, "epochs": epochs, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("-o", "--output", default="model_sizes")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda c: run(c, args.minutes, out), CANDIDATES))
    base = next(r for r in rows if r["channels"] == 20)["cpu_s"]
    with open(out / "model_sizes.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["speedup_vs_paper_size"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "speedup_vs_paper_size": round(base / r["cpu_s"], 2)})
    print(f"{'model':14s} {'params':>7s} {'epochs':>7s} {'pool19 RMSE e':>14s} {'CPU s/frame':>12s} {'vs 20ch':>8s}")
    for r in rows:
        print(f"{r['name']:14s} {r['params']:7d} {r['epochs']:7d} {r['rmse_e']:14.4f} {r['cpu_s']:12.3f} "
              f"{base / r['cpu_s']:7.2f}x")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for r in rows:
        ax.scatter(r["cpu_s"], r["rmse_e"], color="C0")
        ax.annotate(r["name"], (r["cpu_s"], r["rmse_e"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.030, color="0.5", ls="--", lw=0.8, label="target 0.030 e")
    ax.set_xlabel("inference CPU s per 384-atom frame (1 thread)")
    ax.set_ylabel("pool19 component RMSE / e")
    ax.set_title(f"accuracy vs cost, {args.minutes:g} min training each")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "model_sizes.png")
    print(f"wrote {out / 'model_sizes.csv'} and {out / 'model_sizes.png'}")


if __name__ == "__main__":
    main()
