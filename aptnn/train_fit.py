"""Training one network: labelled frames in (:mod:`aptnn.train_targets`), the best-on-validation model out (Adam +
ReduceLROnPlateau, early stopping, optional DistributedDataParallel, CSV learning curve).

With one target the loss is its masked MSE in its own units (APT-only training is exactly as before PGT
support); with several, the sum over targets of each masked MSE divided by the variance of that target's training
labels (:func:`~aptnn.train_targets.loss_weights`), and the validation score that drives the scheduler and early
stopping is the root of the same weighted sum. A :class:`~aptnn.model.network.HeadsNetwork` learns from the mean
over heads of each head's loss.
"""
from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aptnn.distributed import SERIAL, Context, all_sum, any_rank
from aptnn.errors import InputError
from aptnn.model import pgt_tensor
from aptnn.model.network import APTNetwork, HeadsNetwork, ModelConfig
from aptnn.model.tensor import change_of_basis, normalisation_stats, to_irreps
from aptnn.progress import progress_bar
from aptnn.train_targets import (
    TARGET_FIELDS,
    LabelledFrame,
    _column,
    _score,
    frame_targets,
    head_weights,
    loss_weights,
    target_losses,
    target_rmse,
)


@dataclass
class TrainSettings:
    """Optimisation settings (defaults follow the paper: Adam lr 0.01, plateau factor 0.1, patience 10)."""

    epochs: int = 400
    max_time: float | None = None      # seconds of wall time, then stop with the best model so far
    lr: float = 0.01
    batch_size: int = 1                # frames per optimiser step
    factor: float = 0.1
    patience: int = 10                 # epochs without validation improvement before lr *= factor
    min_lr: float = 1e-5               # stop once the learning rate falls below this
    early_stopping: int = 40           # epochs without validation improvement before stopping
    valid_fraction: float = 0.1        # used only without an explicit validation set
    seed: int = 0
    dtype: str = "float32"
    head_weights: str = "none"         # "heads" committees: per-head random loss weights, see head_weights()


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that identical runs give identical models."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(train: list[LabelledFrame], species: list[int], dtype: torch.dtype, heads: int = 0,
                targets: list[str] | None = None, **model_kwargs) -> APTNetwork | HeadsNetwork:
    """A network whose normalisation (per-species isotropic mean, per-irrep scale; PGT block scales) comes from
    ``train``; a :class:`HeadsNetwork` with ``heads`` readout heads if ``heads`` > 0 (every head starts from its
    own random weights and the same normalisation). ``targets`` (None: those the frames carry labels for,
    :func:`frame_targets`) become ``ModelConfig.targets``; each needs labels in ``train``."""
    targets = list(targets) if targets else frame_targets(train)
    stats: dict = {}
    for t in targets:
        if t in TARGET_FIELDS and not any(bool(getattr(it, TARGET_FIELDS[t][1]).any()) for it in train
                                          if getattr(it, TARGET_FIELDS[t][1]) is not None):
            raise InputError(f"target {t!r} requested but no training frame carries '{t}' labels")
    if "apt" in targets:
        q = change_of_basis()
        y = torch.cat([to_irreps(it.apt[it.mask], q) for it in train])
        s = torch.cat([torch.from_numpy(it.graph.species)[it.mask] for it in train])
        stats = normalisation_stats(y, s, len(species))
    if "pgt" in targets:
        g = torch.cat([it.pgt[it.pgt_mask] for it in train if it.pgt is not None])
        s = torch.cat([torch.from_numpy(it.graph.species)[it.pgt_mask] for it in train if it.pgt is not None])
        stats["pgt_irrep_scale"] = pgt_tensor.normalisation_stats(pgt_tensor.to_irreps(g), s,
                                                                  len(species))["irrep_scale"]
    avg = float(np.mean([len(it.graph.senders) / len(it.graph.species) for it in train]))
    config = ModelConfig(species=species, avg_neighbours=avg, targets=targets, **stats, **model_kwargs)
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        return HeadsNetwork(config, heads) if heads else APTNetwork(config)
    finally:
        torch.set_default_dtype(previous)


def fit(train: list[LabelledFrame], valid: list[LabelledFrame], species: list[int], settings: TrainSettings,
        log_path: str | Path | None = None, progress: bool = True, member: int = 0, ctx: Context = SERIAL,
        heads: int = 0, **model_kwargs) -> tuple[APTNetwork | HeadsNetwork, dict]:
    """Train one network; returns the best-on-validation model and its metrics (RMSE in e). ``heads`` > 0:
    a :class:`HeadsNetwork` (loss: mean over heads, weighted per ``settings.head_weights``; validation RMSE:
    root of the mean over heads of each head's mean squared error). With a "pgt" target (``targets`` in
``model_kwargs`` or from the labels) the metrics also hold ``targets``, ``loss_weights``, ``valid_score``
(the selection criterion) and ``valid_rmse_pgt`` (e·Å/V) next to ``valid_rmse_e`` (e, where "apt" is a target),
both at the best epoch; the CSV log gets train/valid columns per target.

    Deterministic algorithms are switched on while training: multi-threaded scatter-adds on the CPU otherwise
    sum in a varying order, and identical runs would not give identical models.

    With a distributed ``ctx`` the network is wrapped in DistributedDataParallel: each optimiser step's
    ``batch_size`` frames are dealt out over the ranks, and the loss is scaled so that the averaged gradient
    is exactly that of the whole batch — the same model as one process, up to summation order.
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(train, valid, species, settings, log_path, progress, member, ctx, heads, **model_kwargs)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _step(model, train: list[LabelledFrame], batch: np.ndarray, dtype, ctx: Context,
          weights: list[torch.Tensor] | None = None, scales: dict[str, float] | None = None
          ) -> dict[str, tuple[float, int]]:
    """One optimiser step's gradient over ``batch`` (indices into ``train``) of Σ_t scales[t] · MSE_t (targets:
    the keys of ``scales``, default {"apt": 1}); returns this rank's {target: (sse, n)}."""
    scales = scales or {"apt": 1.0}
    mine = batch[ctx.rank::ctx.world]
    chosen = mine if len(mine) else batch[:1]
    parts = target_losses(model, [train[i] for i in chosen], dtype, tuple(scales),
                          weights and [weights[i] for i in chosen])
    if not len(mine):  # fewer frames than ranks: still take part in DDP's gradient average, with zero weight
        parts = {t: (s * 0.0, 0) for t, (s, _) in parts.items()}
    counts = [c for _, c in parts.values()]
    totals = all_sum(ctx, *counts) if ctx.world > 1 else counts
    loss = None
    for (t, (s, _)), total in zip(parts.items(), totals):
        term = s * (ctx.world / max(total, 1) * scales[t])  # DDP divides the summed gradients by the ranks
        loss = term if loss is None else loss + term
    loss.backward()
    return {t: (float(s.detach()), c) for t, (s, c) in parts.items()}


def _fit(train, valid, species, settings, log_path, progress, member, ctx, heads, **model_kwargs):
    dtype = getattr(torch, settings.dtype)
    seed_everything(settings.seed + member)
    model = build_model(train, species, dtype, heads, **model_kwargs)
    targets = tuple(model.config.targets)
    scales = loss_weights(train, targets)
    weights = head_weights(train, heads, settings.head_weights, settings.seed) if heads else None
    trained = model
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model)
    if not ctx.is_main:
        log_path, progress = None, False
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=settings.factor,
                                                           patience=settings.patience)
    rng = np.random.default_rng(settings.seed + member)
    best, best_state, best_epoch, start = math.inf, None, 0, time.monotonic()
    best_by: dict[str, float] = {}
    log = open(log_path, "w", newline="") if log_path else None
    writer = csv.writer(log) if log else None
    if writer:
        writer.writerow(["epoch", "wall_s", "lr"] + [f"{k}_rmse_{_column(t)}" for t in targets
                                                      for k in ("train", "valid")])
    bar = progress_bar(iterable=range(1, settings.epochs + 1), disable=not progress, unit="epoch",
                       desc=f"train {heads} heads" if heads else f"train member {member}")
    try:
        for epoch in bar:
            model.train()
            order = rng.permutation(len(train))
            sse, count = dict.fromkeys(targets, 0.0), dict.fromkeys(targets, 0)
            for k in range(0, len(order), settings.batch_size):
                optimiser.zero_grad(set_to_none=True)
                parts = _step(trained, train, order[k:k + settings.batch_size], dtype, ctx, weights, scales)
                optimiser.step()
                for t, (s, c) in parts.items():
                    sse[t], count[t] = sse[t] + s, count[t] + c
            model.eval()
            total = all_sum(ctx, *[x for t in targets for x in (sse[t], count[t])])
            train_by = {t: math.sqrt(total[2 * i] / max(total[2 * i + 1], 1)) for i, t in enumerate(targets)}
            valid_by = target_rmse(model, valid, dtype, targets, ctx=ctx)
            train_rmse = _score(train_by, scales)
            valid_rmse = _score(valid_by, scales)  # single target: its RMSE; several: root of Σ_t w_t MSE_t
            scheduler.step(valid_rmse)
            lr = optimiser.param_groups[0]["lr"]
            if valid_rmse < best:
                best, best_epoch, best_by = valid_rmse, epoch, valid_by
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elapsed = time.monotonic() - start
            if writer:
                writer.writerow([epoch, f"{elapsed:.1f}", f"{lr:.3g}"]
                                + [f"{r[t]:.6f}" for t in targets for r in (train_by, valid_by)])
                log.flush()
            bar.set_postfix(train=f"{train_rmse:.4f}", valid=f"{valid_rmse:.4f}", best=f"{best:.4f}", lr=f"{lr:.0e}")
            if lr < settings.min_lr or epoch - best_epoch >= settings.early_stopping:
                break
            if any_rank(ctx, settings.max_time is not None and elapsed >= settings.max_time):
                break  # every rank stops at the same epoch
    finally:
        bar.close()
        if log:
            log.close()
    model.load_state_dict(best_state)
    model.eval()
    info = {"member": member, "best_epoch": best_epoch, "epochs_run": epoch, "valid_rmse_e": best,
            "wall_s": time.monotonic() - start}
    if targets != ("apt",):  # per-target RMSEs at the best epoch; valid_rmse_e stays the APT's (e)
        info.pop("valid_rmse_e")
        info.update(targets=list(targets), valid_score=best, loss_weights=scales,
                    **{f"valid_rmse_{_column(t)}": best_by[t] for t in targets})
    return model, info
