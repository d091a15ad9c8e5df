"""Speed of `aptnn train --distributed` (DistributedDataParallel, torchrun, gloo) on the shared DFT water.

    python benchmarks/train_distributed.py [--epochs 4] [--procs 2] [--batch-size 2]

Trains the default model on train10 (valid: pool19[:3]) for a few epochs with the same global batch:
  baseline   one process, one torch thread;
  threads    one process, ``--procs`` torch threads;
  torchrun   ``--procs`` processes × one thread, `--distributed` (each rank takes batch/procs frames a step).
Prints wall time per epoch from the learning-curve CSVs (start-up excluded) and the final validation RMSE,
which must agree between the cases (same model up to summation order).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "water-rpbe-d3"


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float]:
    """(wall s per epoch after the first, last validation RMSE) from the run's learning curve."""
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    rows = list(csv.DictReader(open(cwd / "model.csv")))
    walls = [float(r["wall_s"]) for r in rows]
    return (walls[-1] - walls[0]) / (len(walls) - 1), float(rows[-1]["valid_rmse_e"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aptnn-ddp-bench-"))
    from ase.io import read, write

    write(work / "valid.extxyz", read(DATA / "pool19.extxyz", ":3"))
    common = ["train", str(DATA / "train10.extxyz"), "--valid", str(work / "valid.extxyz"), "--epochs",
              str(args.epochs), "--batch-size", str(args.batch_size), "--quiet", "-o", "model.pt"]
    cases = []
    for name, cmd, env in (
            ("baseline: 1 process, 1 thread", [sys.executable, "-m", "aptnn.cli", *common, "--threads", "1"], None),
            (f"1 process, {args.procs} threads", [sys.executable, "-m", "aptnn.cli", *common, "--threads",
                                                   str(args.procs)], None),
            (f"torchrun {args.procs} processes × 1 thread",
             [str(Path(sys.executable).with_name("torchrun")), "--standalone", f"--nproc-per-node={args.procs}",
              "-m", "aptnn.cli", *common, "--distributed"], dict(os.environ, OMP_NUM_THREADS="1"))):
        d = work / str(len(cases))
        d.mkdir()
        cases.append((name, *run(cmd, d, env)))
    print(f"train10 (384-atom DFT water), default model, global batch {args.batch_size}, {args.epochs} epochs")
    print(f"{'case':40s} {'s/epoch':>8s} {'speed-up':>9s} {'valid RMSE e':>13s}")
    for name, per_epoch, rmse in cases:
        print(f"{name:40s} {per_epoch:8.2f} {cases[0][1] / per_epoch:8.2f}× {rmse:13.5f}")


if __name__ == "__main__":
    main()
