"""Training: labelled frames in, checkpoint out (Adam + ReduceLROnPlateau, masked MSE in e²).

Targets: APTs (``apt``, e) and/or polarisability-gradient tensors (``pgt``, e·Å/V, for Raman), chosen from the
labels the training frames carry (or ``targets=[…]``). With one target the loss is its masked MSE in its own
units (APT-only training is exactly as before PGT support); with several, the sum over targets of each masked
MSE divided by the variance of that target's training labels (:func:`loss_weights`), and the validation score
that drives the scheduler and early stopping is the root of the same weighted sum.

Committees: kind "full" trains ``committee`` independent networks (seed + k); kind "heads" trains one
:class:`~aptnn.model.network.HeadsNetwork` whose shared trunk learns from the mean over heads of each head's
loss. With validation frames, :func:`calibrate` then fits the committee's ``uncertainty_scale``.
"""
from __future__ import annotations

import csv
import hashlib
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from aptnn import keys
from aptnn._version import __version__
from aptnn.defaults import COMMITTEE_KINDS, DEFAULT_COMMITTEE_KIND
from aptnn.distributed import SERIAL, Context, all_sum, any_rank, gather_objects
from aptnn.errors import InputError
from aptnn.graph import FrameGraph, collate, frame_graph
from aptnn.labels import PGT_KEY, get_apt, get_pgt_labels
from aptnn.model import pgt_tensor
from aptnn.model.checkpoint import save_checkpoint
from aptnn.model.network import APTNetwork, HeadsNetwork, ModelConfig, run_committee
from aptnn.model.tensor import change_of_basis, normalisation_stats, to_irreps
from aptnn.progress import progress_bar


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


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that identical runs give identical models."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _column(target: str) -> str:
    """The metric/CSV suffix of ``target``'s RMSE: "e" (APT, e) or "pgt" (PGT, e·Å/V)."""
    return "e" if target == "apt" else target


def _score(rmses: dict[str, float], scales: dict[str, float]) -> float:
    """One target: its RMSE; several: sqrt(Σ_t w_t RMSE_t²) (dimensionless, the loss's weighting)."""
    if len(rmses) == 1:
        return next(iter(rmses.values()))
    return math.sqrt(sum(scales[t] * r * r for t, r in rmses.items()))


def split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``n`` frames into (train, valid) index lists; at least one frame in each."""
    if n < 2:
        raise InputError("need at least 2 labelled frames to split off a validation set; pass --valid")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = min(max(1, round(fraction * n)), n - 1)
    return sorted(order[n_valid:].tolist()), sorted(order[:n_valid].tolist())


#: the estimator stored as ``uncertainty_scale`` (see :func:`calibrate`): "q68", robust for any committee size
#: (err/σ is Student-t-like with N − 1 degrees of freedom, so mean_z2 diverges for N ≤ 3: s ≈ 1500 measured at
#: N = 2) and the closest to Gaussian coverage on unseen water frames (benchmarks/committee_kinds.py: 67 % / 89 %
#: of the components within sσ / 2sσ at N = 4, for both kinds)
CALIBRATION = "q68"


def calibrate(members, items: list[LabelledFrame], dtype: torch.dtype, batch_size: int = 4) -> dict:
    """Fit the committee's uncertainty scale s on labelled (validation) frames.

    With err = label − committee mean and σ = the committee's unbiased std (both e, per labelled atom and
    Cartesian component) and z = |err|/σ, five dimensionless estimators are returned: "mean_z2": s² = mean z²;
    "rms_ratio": s² = mean(err²)/mean(σ²); "median": s = median(z)/0.6745 (Gaussian-consistent); "q68": the
    68.27 % quantile of z (|err| ≤ sσ for 68.27 % of the components); "q95": half the 95.45 % quantile of z
    (|err| ≤ 2sσ for 95.45 %).
    ``uncertainty_scale`` is the one named by :data:`CALIBRATION`. Also: the validation RMSE (e) of the
    committee mean and of every member."""
    errs, sigmas, member_sse = [], [], 0.0
    with torch.no_grad():
        for k in range(0, len(items), batch_size):
            chunk = items[k:k + batch_size]
            batch = collate([it.graph for it in chunk], dtype=dtype)
            charge = torch.tensor([it.charge for it in chunk], dtype=dtype)
            pred = run_committee(members, batch, charge).double()
            mask = torch.cat([it.mask for it in chunk])
            target = torch.cat([it.apt for it in chunk])[mask]
            errs.append((target - pred.mean(0)[mask]).flatten())
            sigmas.append(pred.std(0, unbiased=True)[mask].flatten())
            member_sse = member_sse + (pred[:, mask] - target).pow(2).flatten(1).sum(1)
    err, sigma = torch.cat(errs), torch.cat(sigmas).clamp_min(1e-12)
    z = (err / sigma).abs().numpy()
    scales = {"mean_z2": float(np.sqrt(np.mean(z**2))),
              "rms_ratio": float((err.pow(2).mean() / sigma.pow(2).mean()).sqrt()),
              "median": float(np.median(z) / 0.6745),
              "q68": float(np.quantile(z, 0.6827)), "q95": float(np.quantile(z, 0.9545) / 2)}
    return {"uncertainty_scale": scales[CALIBRATION], "method": CALIBRATION, "scales": scales,
            "n_components": len(err), "valid_rmse_mean_e": float(err.pow(2).mean().sqrt()),
            "valid_rmse_members_e": [math.sqrt(float(x) / len(err)) for x in member_sse]}


def train_committee(frames: list[Atoms], valid_frames: list[Atoms] | None, output: str | Path,
                    settings: TrainSettings, committee: int = 1, log_path: str | Path | None = None,
                    progress: bool = True, source: str = "training data", valid_source: str = "validation data",
                    description: str = "", ctx: Context = SERIAL, kind: str = DEFAULT_COMMITTEE_KIND,
                    **model_kwargs) -> list[dict]:
    """Train a committee of ``committee`` members and save it; returns one metrics dict per trained network.

    ``kind`` "full": independent networks (seed + k; each its own seeded split when there is no validation
    set). "heads": one shared trunk with ``committee`` readout heads, trained as one network (its metrics
    dict has ``kind`` "heads" and ``members``). One member is always a plain network. With validation
    frames and several members, :func:`calibrate` stores ``uncertainty_scale`` in the training metadata
    (else 1.0).

    Distributed (``ctx`` with several ranks): one network is trained data-parallel by all ranks; several
    "full" members are spread over the ranks (member k on rank k mod world, each as in one process) and rank 0
    collects and saves them. Only rank 0 writes files; every rank returns the metrics.
    """
    if kind not in COMMITTEE_KINDS:
        raise InputError(f"unknown committee kind {kind!r} ({', '.join(COMMITTEE_KINDS)})")
    heads = committee if kind == "heads" and committee > 1 else 0
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    cutoff = model_kwargs.get("cutoff", ModelConfig.cutoff)
    items = prepare(frames, species, cutoff, source)
    valid_items = prepare(valid_frames, species, cutoff, valid_source) if valid_frames else None
    members, metrics = [], []
    spread = ctx.world > 1 and committee > 1 and not heads
    for k in range(1 if heads else committee):
        if spread and k % ctx.world != ctx.rank:
            continue
        if valid_items is None:
            tr, va = split(len(items), settings.valid_fraction, settings.seed + k)
            train_k, valid_k = [items[i] for i in tr], [items[i] for i in va]
        else:
            train_k, valid_k = items, valid_items
        log_k = None
        if log_path is not None:
            log_k = Path(log_path) if committee == 1 or heads else Path(log_path).with_suffix(f".member{k}.csv")
        model, info = fit(train_k, valid_k, species, settings, log_k, progress, member=k,
                          ctx=SERIAL if spread else ctx, heads=heads, **model_kwargs)
        if heads:
            info.update(kind="heads", members=list(range(heads)))
        members += model.members() if heads else [model]
        metrics.append(info)
    if spread:  # collect every member on rank 0, in member order
        gathered = gather_objects(ctx, [(info["member"], m.config, m.state_dict(), info)
                                        for m, info in zip(members, metrics)])
        if not ctx.is_main:
            return metrics
        members, metrics = [], []
        for _, config, state, info in sorted((x for rank in gathered for x in rank), key=lambda x: x[0]):
            net = APTNetwork(config).to(getattr(torch, settings.dtype))
            net.load_state_dict(state)
            members.append(net.eval())
            metrics.append(info)
    elif not ctx.is_main:
        return metrics
    training = {"description": description, "settings": asdict(settings), "members": metrics,
                "data_sha256": data_hash(frames), "n_frames": len(frames), "aptnn_version": __version__,
                "committee_kind": "heads" if heads else "full", "uncertainty_scale": 1.0}
    if valid_items is not None and len(members) > 1 and "apt" in members[0].config.targets:
        calibration = calibrate(members, valid_items, getattr(torch, settings.dtype))
        training.update(uncertainty_scale=calibration.pop("uncertainty_scale"), calibration=calibration)
    save_checkpoint(output, members, training)
    return metrics
