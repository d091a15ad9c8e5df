"""Snapshot selection for labelling: random, farthest-point sampling on model descriptors, committee spread.

Frame descriptors are the per-species means of the model's invariant (0e) per-atom features, so they are
rotation, translation and permutation invariant. Farthest-point sampling starts from the frame farthest from
the mean and then adds the frame farthest from everything chosen (Euclidean distance). Committee selection
takes the frames with the largest mean per-atom APT spread (Frobenius norm of the committee std, e).
``committee-fps`` mixes both for batches from correlated MD trajectories, where the largest spreads come in
runs of near-identical neighbouring frames: among the 4·n frames of largest spread it starts with the largest
and adds the most dissimilar ones by farthest-point sampling.
"""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from aptnn.errors import InputError
from aptnn.graph import collate, frame_graph
from aptnn.predict import APTPredictor

METHODS = ("random", "fps", "committee", "committee-fps")


def frame_descriptors(predictor: APTPredictor, frames: list[Atoms]) -> np.ndarray:
    """(n_frames, n_species × C) invariant descriptors from the first committee member."""
    net = predictor.members[0]
    n_species = len(predictor.species)
    out = []
    for k, atoms in enumerate(frames):
        graph = frame_graph(atoms, predictor.species, predictor.cutoff, None, k)
        batch = collate([graph], dtype=predictor.dtype, device=predictor.device)
        with torch.no_grad():
            d = net.descriptors(batch).double().cpu().numpy()
        parts = [d[graph.species == s].mean(0) if (graph.species == s).any() else np.zeros(d.shape[1])
                 for s in range(n_species)]
        out.append(np.concatenate(parts))
    return np.array(out)


def farthest_points(x: np.ndarray, n: int, first: int | None = None) -> list[int]:
    """Indices of ``n`` rows of ``x`` chosen by farthest-point sampling (deterministic), starting from row
    ``first`` (default: the row farthest from the mean)."""
    if first is None:
        first = int(np.argmax(np.linalg.norm(x - x.mean(0), axis=1)))
    chosen = [first]
    dist = np.linalg.norm(x - x[first], axis=1)
    while len(chosen) < min(n, len(x)):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return chosen


def committee_spread(predictor: APTPredictor, frames: list[Atoms]) -> np.ndarray:
    """Mean over atoms of the Frobenius norm of the committee's APT standard deviation (e), per frame."""
    if len(predictor.members) < 2:
        raise InputError("committee selection needs a committee model (aptnn train --committee N, N ≥ 2)")
    spreads = []
    for k, atoms in enumerate(frames):
        _, std = predictor.predict_batch([atoms], None, k)
        spreads.append(float(np.linalg.norm(std[0], axis=(1, 2)).mean()))
    return np.array(spreads)


def select(frames: list[Atoms], n: int, method: str = "fps", predictor: APTPredictor | None = None,
           seed: int = 0, exclude: set[int] | None = None) -> tuple[list[int], np.ndarray | None]:
    """(chosen frame indices, per-frame scores or None). ``exclude``: indices never chosen (already labelled)."""
    if method not in METHODS:
        raise InputError(f"unknown selection method {method!r}; choose from {', '.join(METHODS)}")
    pool = [k for k in range(len(frames)) if k not in (exclude or set())]
    if n > len(pool):
        raise InputError(f"asked for {n} frames but only {len(pool)} are available")
    if method == "random":
        return sorted(np.random.default_rng(seed).choice(pool, n, replace=False).tolist()), None
    if predictor is None:
        raise InputError(f"selection method {method!r} needs a model")
    subset = [frames[k] for k in pool]
    if method == "fps":
        picks = farthest_points(frame_descriptors(predictor, subset), n)
        return sorted(pool[k] for k in picks), None
    scores = committee_spread(predictor, subset)
    ranked = np.argsort(scores)[::-1]
    if method == "committee":
        picks = ranked[:n]
    else:  # committee-fps: diverse frames among the most uncertain ones
        top = ranked[:min(len(ranked), 4 * n)]
        picks = top[farthest_points(frame_descriptors(predictor, [subset[k] for k in top]), n, first=0)]
    full = np.full(len(frames), np.nan)
    full[pool] = scores
    return sorted(pool[k] for k in picks), full
