"""Training: labelled frames in, checkpoint out (Adam + ReduceLROnPlateau, masked MSE in e²)."""
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
from aptnn.distributed import SERIAL, Context, all_sum, any_rank, gather_objects
from aptnn.errors import InputError
from aptnn.graph import FrameGraph, collate, frame_graph
from aptnn.labels import get_apt
from aptnn.model.checkpoint import save_checkpoint
from aptnn.model.network import APTNetwork, ModelConfig
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


@dataclass
class LabelledFrame:
    graph: FrameGraph
    apt: torch.Tensor     # (N, 3, 3) float64, e
    mask: torch.Tensor    # (N,) bool, labelled atoms
    charge: float         # total charge, e


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that identical runs give identical models."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(frames: list[Atoms], species: list[int], cutoff: float, source: str = "training data",
            require_labels: bool = True) -> list[LabelledFrame]:
    """Build graphs and label tensors; frames without any labelled atom are an error."""
    out = []
    for k, atoms in enumerate(frames):
        apt, mask = get_apt(atoms)
        if require_labels and not mask.any():
            raise InputError("frame has no labelled atom (no finite 'apt' rows)", source, k)
        out.append(LabelledFrame(frame_graph(atoms, species, cutoff, source, k), torch.from_numpy(apt),
                                 torch.from_numpy(mask), float(atoms.info.get(keys.CHARGE, 0.0))))
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
    return h.hexdigest()


def batch_loss(model: APTNetwork, items: list[LabelledFrame], dtype: torch.dtype):
    """Sum of squared errors over labelled atoms' 9 components (e²) and the number of such components."""
    batch = collate([it.graph for it in items], dtype=dtype)
    charge = torch.tensor([it.charge for it in items], dtype=dtype)
    pred = model(batch, charge)
    target = torch.cat([it.apt for it in items]).to(dtype)
    mask = torch.cat([it.mask for it in items])
    diff = (pred - target)[mask]
    return diff.pow(2).sum(), diff.numel()


def rmse(model: APTNetwork, items: list[LabelledFrame], dtype: torch.dtype, batch_size: int = 4,
         ctx: Context = SERIAL) -> float:
    """Component-wise RMSE in e over all labelled atoms (frames shared among the ranks of ``ctx``)."""
    sse, n = 0.0, 0
    items = items[ctx.rank::ctx.world]
    with torch.no_grad():
        for k in range(0, len(items), batch_size):
            s, c = batch_loss(model, items[k:k + batch_size], dtype)
            sse, n = sse + float(s), n + c
    sse, n = all_sum(ctx, sse, n)
    return math.sqrt(sse / max(n, 1))


def build_model(train: list[LabelledFrame], species: list[int], dtype: torch.dtype, **model_kwargs) -> APTNetwork:
    """A network whose normalisation (per-species isotropic mean, per-irrep scale) comes from ``train``."""
    q = change_of_basis()
    y = torch.cat([to_irreps(it.apt[it.mask], q) for it in train])
    s = torch.cat([torch.from_numpy(it.graph.species)[it.mask] for it in train])
    stats = normalisation_stats(y, s, len(species))
    avg = float(np.mean([len(it.graph.senders) / len(it.graph.species) for it in train]))
    config = ModelConfig(species=species, avg_neighbours=avg, **stats, **model_kwargs)
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        return APTNetwork(config)
    finally:
        torch.set_default_dtype(previous)


def fit(train: list[LabelledFrame], valid: list[LabelledFrame], species: list[int], settings: TrainSettings,
        log_path: str | Path | None = None, progress: bool = True, member: int = 0, ctx: Context = SERIAL,
        **model_kwargs) -> tuple[APTNetwork, dict]:
    """Train one network; returns the best-on-validation model and its metrics (RMSE in e).

    Deterministic algorithms are switched on while training: multi-threaded scatter-adds on the CPU otherwise
    sum in a varying order, and identical runs would not give identical models.

    With a distributed ``ctx`` the network is wrapped in DistributedDataParallel: each optimiser step's
    ``batch_size`` frames are dealt out over the ranks, and the loss is scaled so that the averaged gradient
    is exactly that of the whole batch — the same model as one process, up to summation order.
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(train, valid, species, settings, log_path, progress, member, ctx, **model_kwargs)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _step(model, train: list[LabelledFrame], batch: np.ndarray, dtype, ctx: Context) -> tuple[float, int]:
    """One optimiser step's gradient over ``batch`` (indices into ``train``); returns this rank's (sse, n)."""
    mine = batch[ctx.rank::ctx.world]
    if len(mine):
        s, c = batch_loss(model, [train[i] for i in mine], dtype)
    else:  # fewer frames than ranks: still take part in DDP's gradient average, with zero weight
        s, c = batch_loss(model, [train[batch[0]]], dtype)
        s, c = s * 0.0, 0
    total = all_sum(ctx, c)[0] if ctx.world > 1 else c
    (s * (ctx.world / total)).backward()  # DDP divides the summed gradients by the number of ranks
    return float(s.detach()), c


def _fit(train, valid, species, settings, log_path, progress, member, ctx, **model_kwargs):
    dtype = getattr(torch, settings.dtype)
    seed_everything(settings.seed + member)
    model = build_model(train, species, dtype, **model_kwargs)
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
    log = open(log_path, "w", newline="") if log_path else None
    writer = csv.writer(log) if log else None
    if writer:
        writer.writerow(["epoch", "wall_s", "lr", "train_rmse_e", "valid_rmse_e"])
    bar = progress_bar(iterable=range(1, settings.epochs + 1), desc=f"train member {member}", disable=not progress,
                       unit="epoch")
    try:
        for epoch in bar:
            model.train()
            order = rng.permutation(len(train))
            sse, count = 0.0, 0
            for k in range(0, len(order), settings.batch_size):
                optimiser.zero_grad(set_to_none=True)
                s, c = _step(trained, train, order[k:k + settings.batch_size], dtype, ctx)
                optimiser.step()
                sse, count = sse + s, count + c
            model.eval()
            sse, count = all_sum(ctx, sse, count)
            train_rmse = math.sqrt(sse / count)
            valid_rmse = rmse(model, valid, dtype, ctx=ctx)
            scheduler.step(valid_rmse)
            lr = optimiser.param_groups[0]["lr"]
            if valid_rmse < best:
                best, best_epoch = valid_rmse, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elapsed = time.monotonic() - start
            if writer:
                writer.writerow([epoch, f"{elapsed:.1f}", f"{lr:.3g}", f"{train_rmse:.6f}", f"{valid_rmse:.6f}"])
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
    return model, {"member": member, "best_epoch": best_epoch, "epochs_run": epoch, "valid_rmse_e": best,
                   "wall_s": time.monotonic() - start}


def split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``n`` frames into (train, valid) index lists; at least one frame in each."""
    if n < 2:
        raise InputError("need at least 2 labelled frames to split off a validation set; pass --valid")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = min(max(1, round(fraction * n)), n - 1)
    return sorted(order[n_valid:].tolist()), sorted(order[:n_valid].tolist())


def train_committee(frames: list[Atoms], valid_frames: list[Atoms] | None, output: str | Path,
                    settings: TrainSettings, committee: int = 1, log_path: str | Path | None = None,
                    progress: bool = True, source: str = "training data", valid_source: str = "validation data",
                    description: str = "", ctx: Context = SERIAL, **model_kwargs) -> list[dict]:
    """Train ``committee`` members (seed + k; own seeded split when no validation set) and save them.

    Distributed (``ctx`` with several ranks): one member is trained data-parallel by all ranks; several
    members are spread over the ranks (member k on rank k mod world, each as in one process) and rank 0
    collects and saves them. Only rank 0 writes files; every rank returns the metrics.
    """
    species = sorted({int(z) for atoms in frames for z in atoms.numbers})
    cutoff = model_kwargs.get("cutoff", ModelConfig.cutoff)
    items = prepare(frames, species, cutoff, source)
    valid_items = prepare(valid_frames, species, cutoff, valid_source) if valid_frames else None
    members, metrics = [], []
    spread = ctx.world > 1 and committee > 1
    for k in range(committee):
        if spread and k % ctx.world != ctx.rank:
            continue
        if valid_items is None:
            tr, va = split(len(items), settings.valid_fraction, settings.seed + k)
            train_k, valid_k = [items[i] for i in tr], [items[i] for i in va]
        else:
            train_k, valid_k = items, valid_items
        log_k = None
        if log_path is not None:
            log_k = Path(log_path) if committee == 1 else Path(log_path).with_suffix(f".member{k}.csv")
        model, info = fit(train_k, valid_k, species, settings, log_k, progress, member=k,
                          ctx=SERIAL if spread else ctx, **model_kwargs)
        members.append(model)
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
                "data_sha256": data_hash(frames), "n_frames": len(frames), "aptnn_version": __version__}
    save_checkpoint(output, members, training)
    return metrics
