"""Several processes, one job: ``torch.distributed`` set-up and failure handling shared by
``aptnn train --distributed`` and ``aptnn-post --distributed``.

Launch with ``torchrun`` (it sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or with ``srun`` under SLURM
(SLURM_PROCID and SLURM_NTASKS are used when RANK is absent; MASTER_ADDR and MASTER_PORT must be exported).
The backend is gloo on the CPU and nccl when every rank has a GPU.

Failures: every rank runs its share inside :func:`collect_errors`; the ranks then exchange their errors, and
if any rank failed, *every* rank raises :class:`DistributedError` naming the failed ranks and their messages,
so the command fails loudly with the real cause instead of hanging in a collective.
"""
from __future__ import annotations

import datetime
import os
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from aptnn.errors import APTNNError, DistributedError  # noqa: F401 (DistributedError re-exported)


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world`` processes (1 and rank 0 when not distributed)."""

    rank: int = 0
    world: int = 1
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SERIAL = Context()


def _env_int(*names: str) -> int | None:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return None


def init(device: str = "cpu", timeout_s: float = 1800.0) -> Context:
    """Join the process group described by the environment (torchrun or SLURM); idempotent.

    ``timeout_s``: how long a collective waits for the other ranks before failing.
    """
    if dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), dist.get_backend())
    rank = _env_int("RANK", "SLURM_PROCID")
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS")
    if rank is None or world is None:
        raise APTNNError("--distributed needs a launcher: run under `torchrun --nproc-per-node N …` or `srun` "
                         "(RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS are not set)")
    if world == 1:  # a single task needs no rendezvous partner
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise APTNNError(f"--distributed: {name} is not set (torchrun sets it; under srun export the first "
                             "node's host name and a free port)")
    backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(_env_int("LOCAL_RANK", "SLURM_LOCALID") or 0)
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank, world, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def collect_errors(ctx: Context, what: str):
    """Run a rank's share; afterwards all ranks learn whether any failed and then all raise the same error.

    Must be entered by every rank (it ends in a collective).
    """
    message = None
    try:
        yield
    except Exception as err:  # noqa: BLE001 — reported to every rank below
        message = str(err) if isinstance(err, APTNNError) else "".join(
            traceback.format_exception_only(type(err), err)).strip()
    raise_if_any_failed(ctx, message, what)


def raise_if_any_failed(ctx: Context, message: str | None, what: str) -> None:
    """Exchange ``message`` (None: this rank is fine) between ranks; raise on every rank if any failed."""
    if ctx.world > 1:
        messages: list[str | None] = [None] * ctx.world
        dist.all_gather_object(messages, message)
    else:
        messages = [message]
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        detail = "; ".join(f"rank {r}: {m}" for r, m in failed)
        error = DistributedError(f"{what} failed on {len(failed)} of {ctx.world} rank(s) — {detail}")
        error.quiet = not ctx.is_main
        raise error


def all_sum(ctx: Context, *values: float) -> list[float]:
    """Sum floats over ranks (float64); identity when not distributed."""
    if ctx.world == 1:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.cpu().tolist()


def any_rank(ctx: Context, flag: bool) -> bool:
    """True on every rank if ``flag`` is True on any rank."""
    return all_sum(ctx, float(flag))[0] > 0


def broadcast_object(ctx: Context, obj, src: int = 0):
    if ctx.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(ctx: Context, obj) -> list | None:
    """All ranks' ``obj`` on rank 0 (None elsewhere)."""
    if ctx.world == 1:
        return [obj]
    out = [None] * ctx.world if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out
