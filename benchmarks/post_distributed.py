"""Speed-up of `aptnn-post --distributed` (torchrun, gloo) over one process, on 384-atom water.

    python benchmarks/post_distributed.py [--frames 400] [--trajectories 2] [--procs 2]

LAMMPS (SPC/Fw, 128 waters, 0.5 fs, dumped every step) makes ``--trajectories`` independent dumps of
``--frames`` frames; then, each on all of them with the shipped model:
  baseline   one process, one torch thread;
  threads    one process, ``--procs`` torch threads;
  torchrun   ``--procs`` processes × one thread, `--distributed` (shards over ranks, merged by rank 0).
Wall times include start-up (imports, model load, rendezvous) and the merge.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--trajectories", type=int, default=2)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    from aptnn.demo import run_water

    work = Path(tempfile.mkdtemp(prefix="aptnn-dist-bench-"))
    dumps = []
    for k in range(args.trajectories):
        run_dir = work / f"run{k}"
        dumps.append(run_water(run_dir, n_molecules=128, steps=args.frames - 1, dt_fs=0.5, equilibrate=200,
                               seed=k + 1))
    names = [str(d) for d in dumps]
    post = [sys.executable, "-m", "aptnn.cli_post", *names, "--timestep", "0.5", "--units", "real", "--quiet",
            "--overwrite"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    n = args.frames * args.trajectories
    base = timed([*post, "--threads", "1"], work)
    threads = timed([*post, "--threads", str(args.procs)], work)
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", f"--nproc-per-node={args.procs}"]
    dist = timed([*torchrun, *post[1:], "--distributed"], work, env)
    print(f"{args.trajectories} trajectories × {args.frames} frames of 384 atoms, shipped model, wall incl. start-up")
    print(f"{'case':44s} {'wall s':>8s} {'frames/s':>9s} {'speed-up':>9s}")
    for name, wall in (("baseline: 1 process, 1 thread", base), (f"1 process, {args.procs} threads", threads),
                       (f"torchrun {args.procs} processes × 1 thread", dist)):
        print(f"{name:44s} {wall:8.1f} {n / wall:9.2f} {base / wall:8.2f}×")


if __name__ == "__main__":
    main()
