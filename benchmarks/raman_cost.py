"""Cost of IR + Raman against IR alone, per 384-atom water frame, in one run.

    python benchmarks/raman_cost.py [--repeats 7] [--threads 1] [--frames 12]

Two networks with the shipped model's architecture (species, cutoff, channels, layers) and random weights:
``apt`` (targets ["apt"], what IR needs) and ``apt+pgt`` (targets ["apt", "pgt"]: the last layer gains the
1o/2o/3o features the PGT readout needs). Timed, interleaved, in the same process:

* model call per frame (``APTPredictor.predict_batch``): APTs of the ``apt`` model; APTs + PGTs of the ``apt+pgt``
  model (``with_pgt=True``, one trunk evaluation); the ``apt+pgt`` model asked for APTs only; the ``apt`` model
  plus a separate ``pgt``-only model (targets ["pgt"]);
* ``aptnn-post`` (Python API, every frame through the network, ``--apt-every 1``) over ``--frames`` frames of a
  synthetic trajectory: dM/dt alone against dM/dt + dα/dt (the stream's /dAdt).

Prints medians of wall and CPU (process) time and the ratios against the IR-only baseline measured in the same
run. The machine may be shared: the ratios are the steadier numbers.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
import torch

from aptnn.io import read_frames
from aptnn.io.trajectory import open_trajectory
from aptnn.model.checkpoint import save_checkpoint
from aptnn.model.network import APTNetwork, ModelConfig
from aptnn.post import PostSettings, run
from aptnn.predict import APTPredictor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "water-rpbe-d3" / "pool19.extxyz"


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def network(template: ModelConfig, targets: list[str]) -> APTNetwork:
    torch.manual_seed(0)
    cfg = ModelConfig(species=template.species, cutoff=template.cutoff, channels=template.channels,
                      n_layers=template.n_layers, lmax=template.lmax, avg_neighbours=template.avg_neighbours,
                      targets=targets)
    return APTNetwork(cfg).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    atoms = read_frames(args.data, index=0)[0]
    template = APTPredictor.load("water-rpbe-d3").config
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {}
        for name, targets in (("apt", ["apt"]), ("apt+pgt", ["apt", "pgt"]), ("pgt", ["pgt"])):
            paths[name] = str(tmp / f"{name}.pt")
            save_checkpoint(paths[name], [network(template, targets)], {"description": "benchmark"})
        models = {name: APTPredictor.load(p) for name, p in paths.items()}
        print(f"conditions: torch {torch.__version__}, {args.threads} torch thread(s), {os.cpu_count()} cores, load "
              f"average {os.getloadavg()[0]:.2f} (1 min) at start; {len(atoms)} atoms; architecture of the shipped "
              f"model: {template.channels} channels, {template.n_layers} layers, lmax {template.lmax}, cutoff "
              f"{template.cutoff} Å; medians of {args.repeats} repeats, cases interleaved")
        params = {n: sum(p.numel() for p in m.members[0].parameters()) for n, m in models.items()}
        print(f"parameters: apt {params['apt']}, apt+pgt {params['apt+pgt']}, pgt {params['pgt']}")
        cases = {
            "IR: APTs (apt model)": lambda: models["apt"].predict_batch([atoms]),
            "IR+Raman: APTs + PGTs (apt+pgt model, one call)": lambda: models["apt+pgt"].predict_batch(
                [atoms], with_pgt=True),
            "APTs only from the apt+pgt model": lambda: models["apt+pgt"].predict_batch([atoms]),
            "IR+Raman, separate models: apt + pgt-only": lambda: (models["apt"].predict_batch([atoms]),
                                                                  models["pgt"].predict_pgt_batch([atoms])),
        }
        results = {name: ([], []) for name in cases}
        for _ in range(3):   # interleaved rounds
            for name, fn in cases.items():
                w, c = timed(fn, max(1, args.repeats // 3))
                results[name][0].append(w)
                results[name][1].append(c)
        base_w, base_c = (statistics.median(v) for v in results["IR: APTs (apt model)"])
        print("\nmodel call per frame                                 wall ms   CPU ms   ratio (wall, CPU)")
        for name, (w, c) in results.items():
            w, c = statistics.median(w), statistics.median(c)
            print(f"  {name:<50} {1e3 * w:7.1f}  {1e3 * c:7.1f}   {w / base_w:.2f}, {c / base_c:.2f}")

        # aptnn-post end to end: a synthetic trajectory of the first frame, atoms moving at random velocities
        rng = np.random.default_rng(0)
        vel = rng.normal(scale=0.01, size=(len(atoms), 3))
        frames = []
        for k in range(args.frames):
            a = atoms.copy()
            a.arrays.pop("apt", None)
            a.positions = atoms.positions + 0.5 * k * vel
            a.arrays["velocities"] = vel
            a.info = {"time": 0.5 * k}
            frames.append(a)
        traj = tmp / "traj.extxyz"
        ase.io.write(traj, frames, format="extxyz")
        post = {}
        for _ in range(2):
            for name, raman in (("IR (dM/dt)", None), ("IR+Raman (dM/dt + dα/dt)", None)):
                model = "apt" if name.startswith("IR (") else "apt+pgt"
                out = tmp / f"{model}.h5"
                settings = PostSettings(progress=False, overwrite=True, apt_every=1, raman=raman)
                w0, c0 = time.perf_counter(), time.process_time()
                run([open_trajectory(str(traj))], paths[model], str(out), settings, predictor=models[model])
                post.setdefault(name, []).append(((time.perf_counter() - w0) / args.frames,
                                                  (time.process_time() - c0) / args.frames))
        base = min(post["IR (dM/dt)"])
        print(f"\naptnn-post, {args.frames} frames, every frame through the network   wall ms/frame   CPU ms/frame   "
              "ratio (wall, CPU)")
        for name, values in post.items():
            w, c = min(values)
            print(f"  {name:<40} {1e3 * w:12.1f}  {1e3 * c:12.1f}   {w / base[0]:.2f}, {c / base[1]:.2f}")
        print(f"\nload average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
