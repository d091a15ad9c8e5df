"""Overhead of `aptnn-ipi` on an i-PI PIMD run, and the throughput where back-pressure starts.

    python benchmarks/ipi.py [--molecules 32] [--beads 4] [--steps 60] [--mlff-channels 20]

With ``--mlff-channels N`` (default 20) every i-PI step also pays for a CPU-heavy ML force field
(benchmarks/mlff_emulator.py: an e3nn network of N channels evaluated per bead, one thread), the situation
aptnn-ipi is built for; then aptnn-ipi is measured with its model in a worker thread and in a worker
process (the default). ``--mlff-channels 0`` measures the bare SPC/Fw run (force step < 1 ms).

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aptnn.demo.ipi import finish, prepare_ipi_water, start_aptnn, start_ipi

EMULATOR = Path(__file__).with_name("mlff_emulator.py")


def timed_run(work: Path, molecules: int, beads: int, steps: int, aptnn: str | None,
              mlff_channels: int = 0) -> tuple[float, float]:
    """(i-PI wall s, total wall s) for one run; ``aptnn`` None (no client), "thread" or "process" (aptnn-ipi's
    worker), or "dummy" (i-PI's zero-cost driver as that forcefield)."""
    shutil.rmtree(work, ignore_errors=True)
    address = prepare_ipi_water(work, molecules, beads, steps, aptnn=aptnn is not None)
    mlff = None
    if mlff_channels:  # a second, CPU-heavy forcefield listed before aptnn's (its rid offset follows)
        xml = (work / "input.xml").read_text()
        xml = xml.replace("<forces><force forcefield='lammps'/>",
                          "<forces><force forcefield='lammps'/><force forcefield='mlff'/>")
        xml = xml.replace("  <system>", f"  <ffsocket name='mlff' mode='unix' pbc='false'><address>{address}-ml"
                                        "</address></ffsocket>\n  <system>", 1)
        (work / "input.xml").write_text(xml)
    t0 = time.perf_counter()
    server, lammps = start_ipi(work, address)
    if mlff_channels:
        mlff = subprocess.Popen([sys.executable, str(EMULATOR), f"{address}-ml", "init.xyz", "--channels",
                                 str(mlff_channels)], cwd=work)
    if aptnn == "dummy":  # i-PI's own zero-cost Python driver in aptnn's place: i-PI's cost of a forcefield
        apt = subprocess.Popen([str(Path(sys.executable).with_name("i-pi-driver-py")), "-u", "-a", f"{address}-apt",
                                "-m", "dummy"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        apt = start_aptnn(work, address, ["-o", "run.dmdt.h5", "--threads", "1", "--queue", "128", "--worker",
                                          aptnn]) if aptnn else None
    server.wait(timeout=1200)
    t_ipi = time.perf_counter() - t0
    finish([lammps, apt, mlff], 600)
    if aptnn not in (None, "dummy") and apt.returncode != 0:
        raise RuntimeError((work / "aptnn-ipi.log").read_text()[-2000:])
    return t_ipi, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=32)
    parser.add_argument("--beads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mlff-channels", type=int, default=20,
                        help="cost of the emulated ML force field (0: SPC/Fw only)")
    parser.add_argument("--sustained", action="store_true", help="also measure the back-pressure rate")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aptnn-ipi-bench-"))
    n1, n2 = args.steps // 2, 3 * args.steps // 2

    def per_step(aptnn: str | None) -> tuple[float, float, float]:
        runs = {n: sorted(timed_run(work / "run", args.molecules, args.beads, n, aptnn, args.mlff_channels)[0]
                          for _ in range(args.repeats)) for n in (n1, n2)}
        s, l_ = (runs[n][len(runs[n]) // 2] for n in (n1, n2))
        return (l_ - s) / (n2 - n1), s, l_

    ff = f"SPC/Fw + emulated MLFF ({args.mlff_channels} ch)" if args.mlff_channels else "SPC/Fw"
    print(f"{args.molecules * 3} atoms, {args.beads} beads, forces: {ff}; i-PI wall of {n1}- and {n2}-step runs "
          f"(within the 128-step queue), medians of {args.repeats}")
    print(f"{'case':34s} {f'{n1} steps s':>12s} {f'{n2} steps s':>12s} {'per step ms':>12s} {'overhead':>9s}")
    base, base_short, base_long = per_step(None)
    print(f"{'baseline: i-PI + force field':34s} {base_short:12.2f} {base_long:12.2f} {1e3 * base:12.2f}")
    for mode in ("dummy", "thread", "process"):
        apt, apt_short, apt_long = per_step(mode)
        name = "+ i-PI dummy driver (zero cost)" if mode == "dummy" else "+ aptnn-ipi, worker " + mode
        overhead = f"{100 * (apt - base) / base:8.1f}%" if base > 1e-3 else "     n/a "  # a free step: no ratio
        print(f"{name:34s} {apt_short:12.2f} {apt_long:12.2f} {1e3 * apt:12.2f} {overhead}"
              f"   start-up +{apt_short - base_short:.1f} s")
    if args.sustained:
        long = 4 * 128
        w_long, total_long = timed_run(work / "long", args.molecules, args.beads, long, "process")
        b_long = timed_run(work / "blong", args.molecules, args.beads, long, None)[0]
        rate = long * args.beads / total_long
        print(f"{long} steps, SPC/Fw only (beyond the queue): i-PI {w_long:.1f} s with aptnn vs {b_long:.1f} s "
              f"alone; sustained model rate {rate:.0f} bead-frames/s = back-pressure threshold")


if __name__ == "__main__":
    main()
