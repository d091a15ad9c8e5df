"""Spectrum engine speed and memory on a long stream file (default 10⁷ frames × 3 series).

    python benchmarks/spectrum.py [--frames 10000000] [--dir /tmp]

Writes a synthetic stream (total, group:O, group:H; two damped oscillators plus noise) in chunks, then runs
``compute_spectrum`` in a child process and prints its wall time, CPU time and peak resident memory. As a
baseline in the same run it times a single in-memory numpy FFT autocorrelation of the total series alone.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = """
import sys, time, resource
from aptnn.spectrum import compute_spectrum
w, c = time.perf_counter(), time.process_time()
spec = compute_spectrum([sys.argv[1]], max_lag_fs=2000, n_blocks=8)
print(f"{time.perf_counter() - w:.2f} {time.process_time() - c:.2f} "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {spec.peaks(2)}")
"""


def make_stream(path: str, frames: int, dt: float = 0.5, chunk: int = 1 << 20) -> None:
    from aptnn.io.stream_writer import StreamWriter

    rng = np.random.default_rng(0)
    with StreamWriter(path, ["total", "group:O", "group:H"], dt_fs=dt, temperature_K=300.0, volume_A3=3842.0,
                      overwrite=True, chunk=1 << 16) as w:
        for s in range(0, frames, chunk):
            n = min(chunk, frames - s)
            t = (s + np.arange(n)) * dt
            o = np.cos(0.3 * t)[:, None] * rng.normal(1, 0.1, size=(n, 3)) + 0.1 * rng.normal(size=(n, 3))
            h = np.cos(0.6 * t)[:, None] * rng.normal(1, 0.1, size=(n, 3)) + 0.1 * rng.normal(size=(n, 3))
            w.append(t, np.stack([o + h, o, h], axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    path = os.path.join(args.dir, f"bench_{args.frames}.dmdt.h5")
    t0 = time.perf_counter()
    make_stream(path, args.frames)
    print(f"wrote {args.frames} frames × 3 series ({os.path.getsize(path) / 2**20:.0f} MiB) "
          f"in {time.perf_counter() - t0:.1f} s")
    out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, check=True)
    wall, cpu, rss, peaks = out.stdout.split(maxsplit=3)
    # baseline: one in-memory FFT autocorrelation of the total series only (no blocks, groups, or checks)
    import h5py
    from scipy import fft

    w0, c0 = time.perf_counter(), time.process_time()
    with h5py.File(path) as f:
        x = f["dMdt"][:, 0, :]
    size = fft.next_fast_len(2 * len(x), real=True)
    fx = fft.rfft(x, size, axis=0)
    fft.irfft((fx.conj() * fx).real.sum(1), size)[:4001]
    base_wall, base_cpu = time.perf_counter() - w0, time.process_time() - c0
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'case':52s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MiB':>13s}")
    print(f"{'aptnn spectrum (3 series, decomposition, 8 blocks)':52s} {float(wall):8.2f} {float(cpu):8.2f} "
          f"{float(rss):13.0f}")
    print(f"{'baseline: one in-memory FFT ACF of total':52s} {base_wall:8.2f} {base_cpu:8.2f} {base_rss:13.0f}")
    print(f"peaks found: {peaks}")
    os.remove(path)


if __name__ == "__main__":
    main()
