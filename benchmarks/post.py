"""`aptnn-post` throughput and memory on 384-atom water (LAMMPS SPC/Fw dump, shipped model).

    python benchmarks/post.py [--frames 20000] [--threads 2]

1. runs LAMMPS for ``--frames`` steps (128 waters, 0.5 fs, dumped every step);
2. times `aptnn-post` on the first 1 000 frames (every frame evaluated): frames/s, wall and CPU;
3. measures peak resident memory of `aptnn-post --stride 10` on 1 000 and on all frames: memory must not
   grow with trajectory length (the reader streams, the writer appends).
Baseline in the same run: the bare model call (predict on one frame) in frames/s.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_post(args: list[str], threads: int) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one aptnn-post run in a child process."""
    code = ("import resource, sys, time\nfrom aptnn.cli import post\nt = time.perf_counter()\n"
            "try:\n    post(sys.argv[1:], standalone_mode=False)\nfinally:\n"
            "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
            "    print('BENCH', time.perf_counter() - t, r.ru_utime + r.ru_stime, r.ru_maxrss / 1024, "
            "file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code, *args, "--quiet", "--overwrite", "--threads", str(threads)],
                         capture_output=True, text=True)
    line = [x for x in out.stderr.splitlines() if x.startswith("BENCH")]
    if out.returncode != 0 or not line:
        raise RuntimeError(out.stderr[-2000:])
    wall, cpu, rss = map(float, line[-1].split()[1:])
    return wall, cpu, rss


def head(dump: Path, frames: int, natoms: int, out: Path) -> Path:
    lines_per_frame = 9 + natoms
    with open(dump) as src, open(out, "w") as dst:
        for _ in range(frames * lines_per_frame):
            dst.write(src.readline())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    from aptnn.demo import run_water

    work = Path(args.dir or tempfile.mkdtemp(prefix="aptnn-bench-"))
    t0 = time.perf_counter()
    dump = run_water(work, n_molecules=128, steps=args.frames - 1, dt_fs=0.5, equilibrate=1000)
    print(f"LAMMPS: {args.frames} frames of 384 atoms in {time.perf_counter() - t0:.0f} s "
          f"({os.path.getsize(dump) / 2**20:.0f} MiB dump)")
    short = head(dump, 1000, 384, work / "short.lammpstrj")
    import torch

    import aptnn
    from aptnn.io.trajectory import open_trajectory

    torch.set_num_threads(args.threads)
    model = aptnn.load_model()
    frame = next(iter(open_trajectory(str(short), lammps_units="real", timestep=0.5))).atoms
    model.predict(frame)
    w0 = time.perf_counter()
    for _ in range(10):
        model.predict(frame)
    base = 10 / (time.perf_counter() - w0)
    wall, cpu, rss = run_post([str(short), "-o", str(work / "s.h5"), "--timestep", "0.5", "--units", "real"],
                              args.threads)
    print(f"{'case':50s} {'frames/s':>9s} {'wall s':>8s} {'CPU s':>8s} {'peak MiB':>9s}")
    print(f"{'baseline: model.predict, one frame at a time':50s} {base:9.2f}")
    print(f"{'aptnn-post, 1000 frames, every frame':50s} {1000 / wall:9.2f} {wall:8.1f} {cpu:8.1f} {rss:9.0f}")
    for name, path, n in (("1000", short, 1000), (str(args.frames), dump, args.frames)):
        wall, cpu, rss = run_post([str(path), "-o", str(work / f"m{n}.h5"), "--timestep", "0.5", "--units", "real",
                                   "--stride", "10"],
                                  args.threads)
        print(f"{'aptnn-post --stride 10, ' + name + ' frames read':50s} {n / 10 / wall:9.2f} {wall:8.1f} "
              f"{cpu:8.1f} {rss:9.0f}")


if __name__ == "__main__":
    main()
