"""Training targets: per-target labels, losses and metrics (APTs ``apt`` in e, PGTs ``pgt`` in e·Å/V).

Labelled frames in (:func:`prepare`: graphs plus label tensors and masks, NaN rows unlabelled), then, per target,
the masked sums of squared errors of a network's predictions (:func:`target_losses`), the loss weights
(:func:`loss_weights`, :func:`head_weights`) and the component-wise RMSEs (:func:`target_rmse`). The fit loop
(:mod:`aptnn.train_fit`) and the committee driver (:mod:`aptnn.train`) build on these.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from aptnn import keys
from aptnn.distributed import SERIAL, Context, all_sum
from aptnn.errors import InputError
from aptnn.graph import FrameGraph, collate, frame_graph
from aptnn.labels import PGT_KEY, get_apt, get_pgt_labels
from aptnn.model.network import APTNetwork, HeadsNetwork


@dataclass
class LabelledFrame:
    graph: FrameGraph
    apt: torch.Tensor     # (N, 3, 3) float64, e
    mask: torch.Tensor    # (N,) bool, labelled atoms
    charge: float         # total charge, e
    pgt: torch.Tensor | None = None        # (N, 3, 3, 3) float64, e·Å/V (zeros where unlabelled)
    pgt_mask: torch.Tensor | None = None   # (N,) bool, atoms with a PGT label


#: per target: (the LabelledFrame attributes of its labels and mask, the units of its RMSE)
TARGET_FIELDS = {"apt": ("apt", "mask", "e"), "pgt": ("pgt", "pgt_mask", "e·Å/V")}


def prepare(frames: list[Atoms], species: list[int], cutoff: float, source: str = "training data",
            require_labels: bool = True) -> list[LabelledFrame]:
    """Build graphs and label tensors (APTs and PGTs, NaN rows unlabelled); frames without any labelled atom
    (neither an 'apt' nor a 'pgt' row) are an error."""
    out = []
    for k, atoms in enumerate(frames):
        apt, mask = get_apt(atoms)
        pgt, pgt_mask = get_pgt_labels(atoms, source, k)
        if require_labels and not mask.any() and not pgt_mask.any():
            raise InputError("frame has no labelled atom (no finite 'apt' or 'pgt' rows)", source, k)
        out.append(LabelledFrame(frame_graph(atoms, species, cutoff, source, k), torch.from_numpy(apt),
                                 torch.from_numpy(mask), float(atoms.info.get(keys.CHARGE, 0.0)),
                                 torch.from_numpy(pgt), torch.from_numpy(pgt_mask)))
    return out


def frame_targets(items: list[LabelledFrame]) -> list[str]:
    """The targets the frames carry labels for: "apt" and/or "pgt" (["apt"] if none)."""
    found = [t for t, (_, m, _) in TARGET_FIELDS.items()
             if any(getattr(it, m) is not None and bool(getattr(it, m).any()) for it in items)]
    return found or ["apt"]


def _labels(items: list[LabelledFrame], target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, mask) of ``target`` over ``items``, concatenated over atoms."""
    value, mask, _ = TARGET_FIELDS[target]
    return torch.cat([getattr(it, value) for it in items]), torch.cat([getattr(it, mask) for it in items])


def loss_weights(items: list[LabelledFrame], targets) -> dict[str, float]:
    """Per-target loss weights: 1 for a single target (its MSE in its own units); with several, 1 / the variance
    of the target's labelled training components (a dimensionless sum of normalised MSEs)."""
    if len(targets) == 1:
        return {targets[0]: 1.0}
    out = {}
    for t in targets:
        y, mask = _labels(items, t)
        var = float(y[mask].double().var()) if int(mask.sum()) > 0 else 0.0
        out[t] = 1.0 / var if var > 1e-12 else 1.0
    return out


def data_hash(frames: list[Atoms]) -> str:
    """sha256 over species, positions, cells and labels: identifies the training data in checkpoints."""
    h = hashlib.sha256()
    for atoms in frames:
        h.update(atoms.numbers.tobytes())
        h.update(np.ascontiguousarray(atoms.positions).tobytes())
        h.update(np.ascontiguousarray(atoms.cell.array).tobytes())
        if "apt" in atoms.arrays:
            h.update(np.ascontiguousarray(atoms.arrays["apt"]).tobytes())
        if PGT_KEY in atoms.arrays:  # APT-only data keep their hash
            h.update(np.ascontiguousarray(atoms.arrays[PGT_KEY]).tobytes())
    return h.hexdigest()


def batch_loss(model: APTNetwork | HeadsNetwork, items: list[LabelledFrame], dtype: torch.dtype,
               weights: list[torch.Tensor] | None = None):
    """Sum of squared errors over labelled atoms' 9 components (e²) and the number of such components.

    A :class:`HeadsNetwork` gives the mean over heads of each head's sum; ``weights`` (one (n_heads, N_k)
    tensor per frame, see :func:`head_weights`) then weight every head's atoms."""
    batch = collate([it.graph for it in items], dtype=dtype)
    charge = torch.tensor([it.charge for it in items], dtype=dtype)
    pred = model(batch, charge)
    target = torch.cat([it.apt for it in items]).to(dtype)
    mask = torch.cat([it.mask for it in items])
    if pred.dim() == 3:
        diff = (pred - target)[mask]
        return diff.pow(2).sum(), diff.numel()
    sq = (pred - target).pow(2).sum((2, 3))[:, mask]      # (n_heads, labelled atoms)
    if weights is not None:
        sq = sq * torch.cat(weights, dim=1)[:, mask].to(dtype)
    return sq.sum() / len(pred), sq.shape[1] * 9


def target_losses(model, items: list[LabelledFrame], dtype: torch.dtype, targets,
                  weights: list[torch.Tensor] | None = None) -> dict[str, tuple[torch.Tensor, int]]:
    """Per target, :func:`batch_loss`'s (sum of squared errors over labelled atoms' components, number of such
    components), in the target's units squared, from one network evaluation. Targets ["apt"]: exactly
    :func:`batch_loss`. A :class:`HeadsNetwork` gives the mean over heads, ``weights`` as there."""
    targets = tuple(targets)
    if targets == ("apt",):
        return {"apt": batch_loss(model, items, dtype, weights)}
    batch = collate([it.graph for it in items], dtype=dtype)
    charge = torch.tensor([it.charge for it in items], dtype=dtype)
    preds = model(batch, charge, targets=targets)
    out = {}
    for t in targets:
        target, mask = _labels(items, t)
        pred, target = preds[t], target.to(dtype)
        if pred.dim() == target.dim():
            diff = (pred - target)[mask]
            out[t] = (diff.pow(2).sum(), diff.numel())
            continue
        sq = (pred - target).pow(2).sum(tuple(range(2, pred.dim())))[:, mask]   # (n_heads, labelled atoms)
        if weights is not None:
            sq = sq * torch.cat(weights, dim=1)[:, mask].to(dtype)
        out[t] = (sq.sum() / len(pred), sq.shape[1] * math.prod(target.shape[1:]))
    return out


def head_weights(train: list[LabelledFrame], n_heads: int, mode: str, seed: int) -> list[torch.Tensor] | None:
    """Per-head loss weights of the training atoms, one (n_heads, N_k) tensor per frame, or None (``mode``
    "none"). "frames": a Bayesian bootstrap over frames (each head's frame weights are n_frames × a
    Dirichlet(1, …, 1) draw); "atoms": the same over labelled atoms (independent Exp(1) weights per atom)."""
    if mode == "none":
        return None
    rng = np.random.default_rng([seed, 7919])
    if mode == "frames":
        w = rng.dirichlet(np.ones(len(train)), size=n_heads) * len(train)       # (n_heads, n_frames)
        return [torch.from_numpy(np.repeat(w[:, [k]], len(it.mask), axis=1)) for k, it in enumerate(train)]
    if mode == "atoms":
        return [torch.from_numpy(rng.exponential(size=(n_heads, len(it.mask)))) for it in train]
    raise ValueError(f"unknown head weighting {mode!r} (none, frames, atoms)")


def rmse(model: APTNetwork | HeadsNetwork, items: list[LabelledFrame], dtype: torch.dtype, batch_size: int = 4,
         ctx: Context = SERIAL) -> float:
    """Component-wise RMSE in e over all labelled atoms (frames shared among the ranks of ``ctx``)."""
    return target_rmse(model, items, dtype, ("apt",), batch_size, ctx)["apt"]


def target_rmse(model, items: list[LabelledFrame], dtype: torch.dtype, targets, batch_size: int = 4,
                ctx: Context = SERIAL) -> dict[str, float]:
    """Per target, the component-wise RMSE over all labelled atoms (APT: e, PGT: e·Å/V; 0 without labels)."""
    targets = tuple(targets)
    sse, n = dict.fromkeys(targets, 0.0), dict.fromkeys(targets, 0)
    items = items[ctx.rank::ctx.world]
    with torch.no_grad():
        for k in range(0, len(items), batch_size):
            for t, (s, c) in target_losses(model, items[k:k + batch_size], dtype, targets).items():
                sse[t], n[t] = sse[t] + float(s), n[t] + c
    total = all_sum(ctx, *[x for t in targets for x in (sse[t], n[t])])
    return {t: math.sqrt(total[2 * k] / max(total[2 * k + 1], 1)) for k, t in enumerate(targets)}

def _column(target: str) -> str:
    """The metric/CSV suffix of ``target``'s RMSE: "e" (APT, e) or "pgt" (PGT, e·Å/V)."""
    return "e" if target == "apt" else target


def _score(rmses: dict[str, float], scales: dict[str, float]) -> float:
    """One target: its RMSE; several: sqrt(Σ_t w_t RMSE_t²) (dimensionless, the loss's weighting)."""
    if len(rmses) == 1:
        return next(iter(rmses.values()))
    return math.sqrt(sum(scales[t] * r * r for t, r in rmses.items()))

