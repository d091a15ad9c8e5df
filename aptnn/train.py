"""Training: labelled frames in, checkpoint out (Adam + ReduceLROnPlateau, masked MSE in e²).

Targets: APTs (``apt``, e) and/or polarisability-gradient tensors (``pgt``, e·Å/V, for Raman), chosen from the
labels the training frames carry (or ``targets=[…]``). With one target the loss is its masked MSE in its own
units (APT-only training is exactly as before PGT support); with several, the sum over targets of each masked
MSE divided by the variance of that target's training labels (:func:`loss_weights`), and the validation score
that drives the scheduler and early stopping is the root of the same weighted sum.

Committees: kind "full" trains ``committee`` independent networks (seed + k); kind "heads" trains one
:class:`~aptnn.model.network.HeadsNetwork` whose shared trunk learns from the mean over heads of each head's
loss. With validation frames, :func:`calibrate` then fits the committee's ``uncertainty_scale``.

The data flow over three modules: :mod:`aptnn.train_targets` (labelled frames, per-target losses and metrics)
→ :mod:`aptnn.train_fit` (one network's fit loop) → this module (the committee driver: splits, members,
calibration, checkpoint). Every name of the first two is importable from here as before.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from aptnn._version import __version__
from aptnn.defaults import COMMITTEE_KINDS, DEFAULT_COMMITTEE_KIND
from aptnn.distributed import SERIAL, Context, gather_objects
from aptnn.errors import InputError
from aptnn.graph import collate
from aptnn.model.checkpoint import save_checkpoint
from aptnn.model.network import APTNetwork, ModelConfig, run_committee
from aptnn.train_fit import TrainSettings, build_model, fit, seed_everything
from aptnn.train_targets import (
    TARGET_FIELDS,
    LabelledFrame,
    batch_loss,
    data_hash,
    frame_targets,
    head_weights,
    loss_weights,
    prepare,
    rmse,
    target_losses,
    target_rmse,
)

__all__ = ["TrainSettings", "LabelledFrame", "TARGET_FIELDS", "seed_everything", "prepare", "frame_targets",
           "loss_weights", "data_hash", "batch_loss", "target_losses", "head_weights", "rmse", "target_rmse",
           "build_model", "fit", "split", "CALIBRATION", "calibrate", "train_committee"]

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
