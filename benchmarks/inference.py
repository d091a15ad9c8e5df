"""Inference speed of an APT model on 384-atom DFT water (and a 3 072-atom supercell), printing a table.

    python benchmarks/inference.py [--model water-rpbe-d3] [--repeats 7]

Reports medians over repeats of wall time and CPU time (process time, all threads) per frame (one frame per
call), with 1 and 2 torch threads, for: the neighbour list alone, the shipped model (eager and
torch.compile'd), and as a baseline in the same run a paper-sized network of the same architecture (20
channels per irrep, random weights). The conditions are printed first: torch version, CPU cores, the load
average (1 min) at the start and after each thread count. The machine may be shared: CPU seconds are the
steadier number, and with more runnable processes than cores, 2 threads can be far slower than 1 (OpenMP
threads wait for each other).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from aptnn.graph import collate, frame_graph, neighbour_list
from aptnn.io import read_frames
from aptnn.model.network import APTNetwork, ModelConfig
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="water-rpbe-d3")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    atoms = read_frames(args.data, index=0)[0]
    big = atoms.repeat((2, 2, 2))
    predictor = APTPredictor.load(args.model)
    compiled = APTPredictor.load(args.model, compile=True)
    net = predictor.members[0]
    baseline = APTNetwork(ModelConfig(species=net.config.species, channels=20,
                                      avg_neighbours=net.config.avg_neighbours)).eval()
    print(f"conditions: torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU cores "
          f"({platform.processor() or platform.machine()}), load average {load_start:.2f} at start "
          f"(1 min, before this benchmark's own work), medians of {args.repeats} repeats")
    print(f"model {args.model}: {sum(p.numel() for p in net.parameters())} parameters, "
          f"{net.config.channels} channels, lmax {net.config.lmax}, {net.config.n_layers} layers, float32; "
          f"{len(atoms)} atoms per frame")
    print(f"{'case (one frame per call, times per frame)':48s} {'threads':>7s} {'wall ms':>9s} {'CPU ms':>9s} "
          f"{'vs baseline (CPU)':>18s}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rows = {}
        rows["neighbour list (vesin), 384 atoms"] = timed(lambda: neighbour_list(atoms, net.config.cutoff),
                                                           args.repeats)

        def run(model, frame):
            graph = collate([frame_graph(frame, model.config.species, model.config.cutoff)])
            with torch.no_grad():
                model(graph)

        rows["baseline: paper-sized (20 ch), 384 atoms"] = timed(lambda: run(baseline, atoms), args.repeats)
        rows[f"{args.model}, 384 atoms"] = timed(lambda: run(net, atoms), args.repeats)
        rows[f"{args.model}, predict() API, 384 atoms"] = timed(lambda: predictor.predict(atoms), args.repeats)
        rows[f"{args.model}, 3072 atoms (2x2x2)"] = timed(lambda: run(net, big), max(3, args.repeats // 2))
        compiled.predict(atoms)  # compilation (~10 s, once per thread count) is not timed
        rows[f"{args.model}, predict(), --compile, 384 atoms"] = timed(lambda: compiled.predict(atoms), args.repeats)
        base_cpu = rows["baseline: paper-sized (20 ch), 384 atoms"][1]
        for name, (wall, cpu) in rows.items():
            print(f"{name:48s} {threads:7d} {wall * 1e3:9.1f} {cpu * 1e3:9.1f} {base_cpu / cpu:17.2f}x")
        small, large = rows[f"{args.model}, 384 atoms"][1], rows[f"{args.model}, 3072 atoms (2x2x2)"][1]
        print(f"{'scaling CPU(3072)/CPU(384)':48s} {threads:7d} {large / small:9.2f}")
        print(f"{'load average (1 min) after these rows':48s} {threads:7d} {os.getloadavg()[0]:9.2f}")


if __name__ == "__main__":
    main()
