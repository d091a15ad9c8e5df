"""Overhead of `aptnn-ipi` on an i-PI PIMD run, and the throughput where back-pressure starts.

    python benchmarks/ipi.py [--molecules 32] [--beads 4] [--steps 60]

Baseline in the same run: i-PI + LAMMPS (SPC/Fw water, fix ipi) alone. Then the same with aptnn-ipi as a
second forcefield (queue of 128 steps, one torch thread): while the queue has room the client answers at once,
so the difference is the protocol cost plus CPU contention on this 2-core machine. Per-step times come from
the difference of a short and a long run, so start-up (i-PI waits for the clients to import torch and load the
model, ~2 s) is not counted as per-step overhead. A run longer than the queue shows the sustained rate
(bead-frames/s) at which the model holds i-PI back.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from aptnn.ipi_demo import finish, prepare_ipi_water, start_aptnn, start_ipi


def timed_run(work: Path, molecules: int, beads: int, steps: int, aptnn: bool) -> tuple[float, float]:
    """(i-PI wall s, aptnn-ipi wall s) for one run."""
    shutil.rmtree(work, ignore_errors=True)
    address = prepare_ipi_water(work, molecules, beads, steps, aptnn=aptnn)
    t0 = time.perf_counter()
    server, lammps = start_ipi(work, address)
    apt = start_aptnn(work, address, ["-o", "run.dmdt.h5", "--threads", "1", "--queue", "128"]) if aptnn else None
    server.wait(timeout=1200)
    t_ipi = time.perf_counter() - t0
    finish([lammps, apt], 600)
    return t_ipi, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=32)
    parser.add_argument("--beads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aptnn-ipi-bench-"))
    n1, n2 = args.steps // 2, 3 * args.steps // 2

    def per_step(aptnn: bool) -> tuple[float, float, float]:
        short = sorted(timed_run(work / "a", args.molecules, args.beads, n1, aptnn)[0] for _ in range(args.repeats))
        long = sorted(timed_run(work / "b", args.molecules, args.beads, n2, aptnn)[0] for _ in range(args.repeats))
        s, l_ = short[len(short) // 2], long[len(long) // 2]
        return (l_ - s) / (n2 - n1), s, l_

    base, base_short, base_long = per_step(False)
    apt, apt_short, apt_long = per_step(True)
    print(f"{args.molecules * 3} atoms, {args.beads} beads; i-PI wall of {n1}- and {n2}-step runs (within the "
          f"128-step queue), medians of {args.repeats}")
    print(f"{'case':34s} {f'{n1} steps s':>12s} {f'{n2} steps s':>12s} {'per step ms':>12s}")
    print(f"{'baseline: i-PI + LAMMPS':34s} {base_short:12.2f} {base_long:12.2f} {1e3 * base:12.2f}")
    print(f"{'i-PI + LAMMPS + aptnn-ipi':34s} {apt_short:12.2f} {apt_long:12.2f} {1e3 * apt:12.2f}   "
          f"adds {1e3 * (apt - base):.1f} ms per step; start-up {apt_short - base_short:.1f} s")
    long = 4 * 128
    w_long, total_long = timed_run(work / "long", args.molecules, args.beads, long, True)
    b_long = timed_run(work / "blong", args.molecules, args.beads, long, False)[0]
    rate = long * args.beads / total_long
    print(f"{long} steps (beyond the queue): i-PI {w_long:.1f} s with aptnn vs {b_long:.1f} s alone; "
          f"sustained model rate {rate:.0f} bead-frames/s = back-pressure threshold")


if __name__ == "__main__":
    main()
