"""Overhead of `aptnn-ipi` on an i-PI PIMD run, and the throughput where back-pressure starts.

    python benchmarks/ipi.py [--molecules 32] [--beads 4] [--steps 60]

Baseline in the same run: i-PI + LAMMPS (SPC/Fw water, fix ipi) alone. Then the same with aptnn-ipi as a
second forcefield (queue of 64 steps, one torch thread): while the queue has room the client answers at once,
so the difference is the protocol cost plus CPU contention on this 2-core machine. A run longer than the
queue shows the sustained rate (bead-frames/s) at which the model holds i-PI back.
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
    apt = start_aptnn(work, address, ["-o", "run.dmdt.h5", "--threads", "1"]) if aptnn else None
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
    n = args.steps
    base = sorted(timed_run(work / "base", args.molecules, args.beads, n, False)[0] for _ in range(args.repeats))
    with_apt = sorted(timed_run(work / "apt", args.molecules, args.beads, n, True) for _ in range(args.repeats))
    b, (w, total) = base[len(base) // 2], with_apt[len(with_apt) // 2]
    print(f"{args.molecules * 3} atoms, {args.beads} beads, {n} steps (within the 64-step queue); medians of "
          f"{args.repeats}")
    print(f"{'case':46s} {'i-PI wall s':>12s} {'per step ms':>12s}")
    print(f"{'baseline: i-PI + LAMMPS':46s} {b:12.2f} {1e3 * b / n:12.2f}")
    print(f"{'i-PI + LAMMPS + aptnn-ipi':46s} {w:12.2f} {1e3 * w / n:12.2f}   overhead {100 * (w - b) / b:+.1f} %")
    print(f"{'aptnn-ipi done (queue drained)':46s} {total:12.2f}")
    long = 4 * 64
    w_long, total_long = timed_run(work / "long", args.molecules, args.beads, long, True)
    b_long = timed_run(work / "blong", args.molecules, args.beads, long, False)[0]
    rate = long * args.beads / total_long
    print(f"{long} steps (beyond the queue): i-PI {w_long:.1f} s with aptnn vs {b_long:.1f} s alone; "
          f"sustained model rate {rate:.0f} bead-frames/s = back-pressure threshold")


if __name__ == "__main__":
    main()
