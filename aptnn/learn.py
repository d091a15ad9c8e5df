"""Active learning: select → label → retrain → evaluate, round by round, resumable, never relabelling a frame.

State lives in the output folder: ``labelled.extxyz`` (every labelled frame, info ``source_frame`` = index in
the pool), ``rounds.csv`` (one line per round: labels so far, test RMSE in e, mean committee APT spread in e,
the committee's relative spread of the integrated IR intensity on the pool, what was chosen and why) and
``model_round<k>.pt``. Re-running continues after the last finished round. Stopping rules: the label budget,
a test RMSE target, or an IR-intensity spread target.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from aptnn import keys
from aptnn.defaults import LEARN_CHANNELS
from aptnn.errors import InputError
from aptnn.evaluate import metrics
from aptnn.io import read_frames, write_frames
from aptnn.label.run import label_frames
from aptnn.predict import APTPredictor
from aptnn.select import select
from aptnn.train import TrainSettings, train_committee


@dataclass
class LearnSettings:
    initial: int = 4               # frames labelled before the first model (chosen at random)
    per_round: int = 2             # frames added per round
    rounds: int = 5                # label budget: initial + rounds × per_round
    method: str = "committee"      # committee, fps or random
    committee: int = 2
    target_rmse: float | None = None   # stop when the test RMSE (e) falls below this
    target_intensity_spread: float | None = None  # stop when the committee's relative IR-intensity spread
                                                  # on the pool falls below this (needs velocities)
    backend: str = "xtb"
    route: str = "field"
    epochs: int = 60
    channels: int = LEARN_CHANNELS
    cutoff: float = 5.0
    seed: int = 0


def _log_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def pool_velocities(pool: list[Atoms]) -> list[np.ndarray] | None:
    """Velocities of the pool frames (any unit: only ratios are used), or None if a frame has none."""
    out = []
    for atoms in pool:
        if "momenta" in atoms.arrays:
            out.append(atoms.get_velocities())
        elif keys.VELOCITIES in atoms.arrays:
            out.append(np.asarray(atoms.arrays[keys.VELOCITIES], float))
        else:
            return None
    return out


def intensity_spread(model: APTPredictor, pool: list[Atoms], velocities: list[np.ndarray],
                     max_frames: int = 200) -> float:
    """Committee uncertainty of the IR spectrum: relative spread std_m(I_m)/mean_m(I_m) of the integrated
    intensity I_m ∝ ⟨|Σ_i P_i^m·v_i|²⟩ (the spectrum's sum rule) over the members m, on up to ``max_frames``
    evenly spaced pool frames."""
    if len(model.members) < 2:
        return float("nan")
    pick = np.unique(np.linspace(0, len(pool) - 1, min(max_frames, len(pool))).round().astype(int))
    intensity = np.zeros(len(model.members))
    for k in pick:
        apt = model.predict_members([pool[k]])[0]                       # (M, N, 3, 3)
        dmdt = np.einsum("mnxz,nz->mx", apt, velocities[k])             # (M, 3)
        intensity += (dmdt**2).sum(1) / len(pick)
    return float(intensity.std(ddof=1) / intensity.mean())


def learn(pool: list[Atoms], test: list[Atoms], out: str | Path, settings: LearnSettings,
          progress: bool = False) -> list[dict]:
    """Run (or continue) the loop; returns the rows of ``rounds.csv``."""
    out = Path(out)
    if not any("apt" in a.arrays for a in test):
        raise InputError("the test frames carry no reference APTs (label them first: aptnn label)")
    velocities = pool_velocities(pool)
    if settings.target_intensity_spread is not None and velocities is None:
        raise InputError("stopping on the IR-intensity spread needs velocities (or momenta) in the pool frames")
    out.mkdir(parents=True, exist_ok=True)
    labelled_path, log_path = out / "labelled.extxyz", out / "rounds.csv"
    labelled = read_frames(labelled_path) if labelled_path.exists() else []
    done = {int(a.info[keys.SOURCE_FRAME]) for a in labelled}
    rows = _log_rows(log_path)
    for k in range(len(rows), settings.rounds + 1):
        if k == 0:
            chosen, why = select(pool, settings.initial, "random", seed=settings.seed, exclude=done)[0], "random"
        else:
            model = APTPredictor.load(str(out / f"model_round{k - 1}.pt"))
            chosen, scores = select(pool, settings.per_round, settings.method, model, settings.seed + k,
                                    exclude=done)
            why = settings.method if scores is None else "spread " + " ".join(f"{scores[i]:.4f}" for i in chosen)
        new, failed = label_frames([pool[i] for i in chosen], settings.backend, settings.route, progress=progress)
        failed_at = {j for j, _ in failed}
        for j, frame in zip([j for j in range(len(chosen)) if j not in failed_at], new):
            frame.info[keys.SOURCE_FRAME] = chosen[j]
            labelled.append(frame)
        done |= set(chosen)  # failed frames are not retried either
        write_frames(labelled_path, labelled)
        model_path = out / f"model_round{k}.pt"
        train_committee(labelled, None, model_path, TrainSettings(epochs=settings.epochs, seed=settings.seed),
                        committee=settings.committee, progress=progress, channels=settings.channels,
                        cutoff=settings.cutoff)
        model = APTPredictor.load(str(model_path))
        means, stds = model.predict_batch(test)
        rmse = metrics(test, means)["rmse_e"]
        spread = float(np.mean([np.linalg.norm(s, axis=(1, 2)).mean() for s in stds])) if stds else float("nan")
        ir_spread = intensity_spread(model, pool, velocities) if velocities is not None else float("nan")
        rows.append({"round": k, "labels": len(labelled), "test_rmse_e": f"{rmse:.5f}",
                     "mean_spread_e": f"{spread:.5f}", "intensity_spread": f"{ir_spread:.4f}",
                     "chosen": " ".join(map(str, chosen)), "why": why,
                     "failed": " ".join(str(chosen[j]) for j, _ in failed)})
        with open(log_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        if settings.target_rmse is not None and rmse < settings.target_rmse:
            break
        if settings.target_intensity_spread is not None and ir_spread < settings.target_intensity_spread:
            break
    return rows
