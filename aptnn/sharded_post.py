"""``aptnn-post --distributed``: trajectories, and time slices of long ones, sharded over torch.distributed ranks.

Each shard is a run of :func:`aptnn.post.run` over a contiguous range of output frames of one trajectory,
written to its own part file ``<output>.parts/<first>-<stop>.h5`` (renamed from ``.tmp`` only when complete).
Rank 0 plans the shards, every rank works through its share, and rank 0 merges each trajectory's parts in
order into ``<output>`` — the same file a single-process run writes. Independent trajectories stay separate
stream files (the spectrum averages them per lag). A rerun skips every finished shard and trajectory.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from aptnn.distributed import Context, broadcast_object, collect_errors, gather_objects
from aptnn.errors import InputError, OutputError
from aptnn.interpolation import APTInterpolator, every_from
from aptnn.io.stream import is_stream_file, model_digest, n_frames, read_info
from aptnn.io.stream_repair import merge_streams
from aptnn.io.trajectory import FrameSource
from aptnn.post import PostSettings, model_fingerprint, run


@dataclass(frozen=True)
class Shard:
    """Output frames [first, stop) of trajectory ``path`` (after stride), destined for ``output``."""

    path: str
    output: str
    first: int
    stop: int
    finite_difference: bool   # no velocities in the file: positions one frame either side are needed
    stride: int
    every: int = 1            # APTs every K output frames (interpolated between: neighbours are read too)

    @property
    def part(self) -> str:
        return os.path.join(parts_dir(self.output), f"{self.first:010d}-{self.stop:010d}.h5")

    @property
    def frames(self) -> int:
        return self.stop - self.first

    def input_range(self) -> tuple[int, int]:
        """Frames of the file to read: the selected ones plus the neighbours finite differences need, and
        with APTs every K > 1 frames the nodes the interpolation reaches (up to 3K output frames before,
        3K after: :mod:`aptnn.interpolation`), so that a shard writes what a serial run would."""
        first, stop = self.first, self.stop
        if self.every > 1:
            first, stop = APTInterpolator(self.every).needed_from(first), stop + 3 * self.every
        start, last = first * self.stride, (stop - 1) * self.stride
        return (start, last + 3) if self.finite_difference else (start, last + 1)


def parts_dir(output: str) -> str:
    return f"{output}.parts"


def output_frames(sources: list[FrameSource], stride: int) -> tuple[int, bool]:
    """(frames a serial run writes, whether velocities come from finite differences)."""
    n = len(sources[0])
    first = next(iter(sources[0]), None)
    if first is None:
        raise InputError("trajectory has no frames", sources[0].path)
    fd = first.velocities is None
    usable = n - 2 if fd else n
    return max(0, math.ceil(usable / stride)), fd


def plan(jobs: list[tuple], world: int, stride: int, shard_frames: int | None) -> list[Shard]:
    """Cut each (path, output, n_frames, finite_difference[, every]) job into shards of about ``shard_frames``
    output frames (default: the total divided by the number of ranks), at least 2 frames each."""
    total = sum(job[2] for job in jobs)
    size = max(2, shard_frames or math.ceil(total / world))
    shards = []
    for path, output, n, fd, *every in jobs:
        pieces = max(1, min(math.ceil(n / size), n // 2))
        bounds = [round(k * n / pieces) for k in range(pieces + 1)]
        shards += [Shard(path, output, a, b, fd, stride, *every) for a, b in zip(bounds[:-1], bounds[1:])]
    return shards


def output_every(sources: list[FrameSource], settings: PostSettings) -> int:
    """K of ``settings`` for this trajectory: given, or from the time between its first two output frames."""
    if settings.apt_every is not None or settings.apt_every_fs is None:
        return every_from(0.0, settings.apt_every)
    frames = iter(sources[0])
    first, second = next(frames, None), next(frames, None)
    if first is None or second is None or first.time is None or second.time is None:
        return 1   # the run itself reports what is missing
    return every_from((second.time - first.time) * settings.stride, None, settings.apt_every_fs)


def assign(shards: list[Shard], world: int) -> list[list[Shard]]:
    """Largest shards first, each to the least loaded rank (deterministic)."""
    load, out = [0] * world, [[] for _ in range(world)]
    for shard in sorted(shards, key=lambda s: (-s.frames, s.path, s.first)):
        rank = min(range(world), key=lambda r: (load[r], r))
        out[rank].append(shard)
        load[rank] += shard.frames
    return out


def same_origin(stream: str, model_label: str, trajectory: str | None = None) -> None:
    """Refuse to reuse a finished stream or part written from another trajectory or with another model."""
    info = read_info(stream)
    if model_digest(info.model) != model_digest(model_label):
        raise OutputError(f"was written with model {info.model!r}, not {model_label!r}: pass --overwrite to "
                          "recompute it", stream)
    if trajectory is not None and info.source != trajectory:
        raise OutputError(f"was written from {info.source!r}, not {trajectory!r}: pass --overwrite", stream)


def run_sharded(ctx: Context, trajectories: list[str], outputs: list[str],
                open_sources: Callable[[str], list[FrameSource]], model: str, settings: PostSettings,
                groups: list[str], device: str, estimator: str, shard_frames: int | None = None) -> list[str]:
    """Post-process ``trajectories`` into ``outputs`` with every rank of ``ctx``; returns the outputs."""
    from aptnn.predict import APTPredictor

    shards: list[Shard] = []
    label = model_fingerprint(model)
    with collect_errors(ctx, "planning the shards"):
        if ctx.is_main:
            jobs = []
            for path, output in zip(trajectories, outputs):
                if settings.overwrite:
                    shutil.rmtree(parts_dir(output), ignore_errors=True)
                    if os.path.exists(output):
                        os.remove(output)
                sources = open_sources(path)
                n, fd = output_frames(sources, settings.stride)
                if os.path.exists(output) and not os.path.isdir(parts_dir(output)):
                    same_origin(output, label, sources[0].path)
                    if n_frames(output) != n:
                        raise InputError(f"output exists with {n_frames(output)} of {n} frames: finish it without "
                                         "--distributed, or pass --overwrite", output)
                    continue  # finished by an earlier run
                jobs.append((path, output, n, fd, output_every(sources, settings)))
            shards = plan(jobs, ctx.world, settings.stride, shard_frames)
    shards = broadcast_object(ctx, shards)
    mine = assign(shards, ctx.world)[ctx.rank]
    skipped = 0
    with collect_errors(ctx, "post-processing"):
        predictor = APTPredictor.load(model, device=device, compile=settings.compile) if mine else None
        for shard in mine:
            if os.path.exists(shard.part):
                same_origin(shard.part, label)
                skipped += 1
                continue
            Path(shard.part).parent.mkdir(parents=True, exist_ok=True)
            tmp = shard.part + ".tmp"
            if os.path.exists(tmp) and not is_stream_file(tmp):  # killed before its first flush: start it anew
                os.remove(tmp)
            run(open_sources(shard.path), model, tmp, replace(settings, overwrite=False, apt_every=shard.every),
                groups, device, estimator, shard.input_range(), predictor, (shard.first, shard.stop))
            if n_frames(tmp) != shard.frames:
                raise InputError(f"shard {shard.first}-{shard.stop} wrote {n_frames(tmp)} frames, expected "
                                 f"{shard.frames}", shard.path)
            os.replace(tmp, shard.part)
    counts = gather_objects(ctx, skipped)
    with collect_errors(ctx, "merging the shards"):
        if ctx.is_main:
            if sum(counts):
                print(f"aptnn-post: {sum(counts)} of {len(shards)} shards were finished by an earlier run",
                      file=sys.stderr)
            for output in dict.fromkeys(s.output for s in shards):
                parts = sorted(s.part for s in shards if s.output == output)
                merge_streams(parts, output)
                shutil.rmtree(parts_dir(output))
    return outputs
