"""Cost per frame of committees: "full" (independent networks) versus "heads" (shared trunk, N readout heads).

    nice -n 10 python benchmarks/committee_cost.py [--repeats 7] [--threads 1]

On one 384-atom DFT water frame (train10.extxyz), with untrained networks of the default architecture
(float32), times ``APTPredictor.predict_batch([frame])`` (neighbour list + all members + mean and std) for a
single model and for full and heads committees of 2, 4 and 8 members. Prints the median wall and CPU (process)
time per frame (ms) and their ratios to the single model measured in the same run (on a shared machine the CPU
time is the steadier number); the neighbour list alone is shown for
reference (it is paid once per frame whatever the committee). Cases are timed interleaved, round by round,
so that load from other processes on a shared machine affects all of them alike.

Measured (2-core shared machine, load ~3, one thread, 11 repeats; wall / CPU ratios to the single model at
138 ms wall, 96 ms CPU): full 2/4/8 = 2.04/3.92/7.73× wall (1.93/3.79/7.53× CPU); heads 2/4/8 =
1.03/1.05/1.07× wall (1.02/1.02/1.03× CPU). The neighbour list is 0.07× of a single model.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from ase.io import read

from aptnn.graph import frame_graph
from aptnn.model.network import APTNetwork, HeadsNetwork, ModelConfig
from aptnn.predict import APTPredictor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "water-rpbe-d3" / "train10.extxyz"
SIZES = (2, 4, 8)


def predictors(config: ModelConfig) -> dict[str, APTPredictor]:
    """Untrained predictors: "single", "full N" and "heads N" for N in :data:`SIZES` (seeded weights)."""
    torch.manual_seed(0)
    out = {"single": APTPredictor([APTNetwork(config).eval()])}
    for n in SIZES:
        out[f"full {n}"] = APTPredictor([APTNetwork(config).eval() for _ in range(n)])
    for n in SIZES:
        out[f"heads {n}"] = APTPredictor(HeadsNetwork(config, n).eval().members())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    atoms = read(DATA, index=0)
    graph = frame_graph(atoms, [1, 8], ModelConfig.cutoff)
    config = ModelConfig(species=[1, 8], avg_neighbours=len(graph.senders) / len(atoms))
    cases = predictors(config)
    n_params = {name: sum(p.numel() for p in {id(p): p for m in pr.members for p in m.parameters()}.values())
                for name, pr in cases.items()}
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in ["neighbour list", *cases]}
    runs = {"neighbour list": lambda: frame_graph(atoms, [1, 8], config.cutoff)}
    runs.update({name: (lambda p=p: p.predict_batch([atoms])) for name, p in cases.items()})
    for fn in runs.values():
        fn()  # warm-up
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            timings[name].append((time.perf_counter() - t0, time.process_time() - c0))
    wall = {name: statistics.median(w for w, _ in t) * 1e3 for name, t in timings.items()}
    cpu = {name: statistics.median(c for _, c in t) * 1e3 for name, t in timings.items()}
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, load {load:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end; {len(atoms)} atoms, default architecture ({config.channels} channels, "
          f"lmax {config.lmax}, {config.n_layers} layers), float32; medians of {args.repeats} interleaved repeats")
    print(f"{'case':16s} {'parameters':>10s} {'wall ms/frame':>14s} {'vs single':>10s} {'CPU ms/frame':>13s} "
          f"{'vs single':>10s}")
    for name in runs:
        params = f"{n_params[name]:10d}" if name in n_params else f"{'':10s}"
        print(f"{name:16s} {params} {wall[name]:14.1f} {wall[name] / wall['single']:9.2f}× {cpu[name]:13.1f} "
              f"{cpu[name] / cpu['single']:9.2f}×")


if __name__ == "__main__":
    main()
