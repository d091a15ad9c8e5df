"""``aptnn-post``: trajectory → APT model → dM/dt stream file (→ spectrum), in bounded memory.

Frames are read one by one, evaluated in batches, and appended to the HDF5 stream (flushed every few
seconds); re-running on an existing output continues after its last complete frame.
"""
from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from aptnn import units
from aptnn.defaults import APT_INTERVAL_FS
from aptnn.errors import InputError, OutputError
from aptnn.estimators import (
    StepEstimator,
    centroid,
    committee_size,
    resolve,
    species_groups,
    split_rows,
)
from aptnn.graph import check_geometry, species_indices
from aptnn.interpolation import INTERPOLATION, NodeEvaluator, every_from
from aptnn.io.stream import CHECK_SIZE, frame_check, read_checks
from aptnn.io.stream_writer import StreamWriter
from aptnn.io.trajectory import FrameSource, MDFrame
from aptnn.model.checkpoint import read_config
from aptnn.model.fingerprint import model_fingerprint
from aptnn.post_frames import (  # noqa: F401 (kinetic_temperature re-exported)
    check_temperature,
    kinetic_temperature,
    selection_groups,
    with_velocities,
)
from aptnn.predict import APTPredictor
from aptnn.progress import progress_bar

MAX_FRAME_SPACING_FS = 50.0   # fs between output frames: beyond it (Nyquist 333 cm⁻¹) it is a unit mistake


@dataclass
class PostSettings:
    stride: int = 1
    batch_size: int = 1   # frames per model call: on the CPU batching only costs memory
    temperature_K: float | None = None   # default: kinetic temperature of the first frames
    overwrite: bool = False
    progress: bool = True
    compile: bool = False  # torch.compile the model (faster per frame after ~10 s of compilation)
    apt_every: int | None = None   # evaluate the network every K-th output frame (None: from apt_every_fs)
    apt_every_fs: float | None = APT_INTERVAL_FS   # … or at least every this many fs (None with K None: every frame)
    raman: bool | None = None   # also dα/dt (/dAdt, Raman); None: when the model has a PGT head


def run(sources: list[FrameSource], model: str, output: str, settings: PostSettings,
        groups: list[str] | None = None, device: str = "cpu", estimator: str = "centroid",
        frame_range: tuple[int, int] | None = None, predictor: APTPredictor | None = None,
        output_range: tuple[int, int] | None = None) -> str:
    """Post-process one trajectory into the stream file ``output``; returns its path.

    ``sources``: one source for a classical run, or one per bead (same atoms, same steps) for PIMD, which
    gives series bead0…bead(P−1), centroid (``estimator`` "centroid" or "centroid-apt") and groups.
    ``frame_range`` (start, stop): only these frames of the files (a shard of a distributed run);
    ``output_range`` (first, stop): the output frames (after stride) to write, when the frames read reach
    beyond them (the neighbours that interpolated APTs need, ``settings.apt_every`` > 1).
    """
    # input checks in the order a user fixes them (format, species, velocities and units, time step, spacing),
    # all before the model is loaded
    name = _estimator(estimator)
    start = frame_range[0] if frame_range else 0
    raw = [src.iter_range(*frame_range) if frame_range else iter(src) for src in sources]
    heads = [next(frames, None) for frames in raw]
    for src, head in zip(sources, heads):
        if head is None:
            raise InputError("trajectory has no frames" + (f" from frame {start} on" if start else ""), src.path)
    known = predictor.species if predictor is not None else read_config(model).species
    species_indices(heads[0].atoms, known, sources[0].path, start)
    raw = [itertools.chain([head], frames) for head, frames in zip(heads, raw)]
    streams = [with_velocities(src, frames, warn=start == 0) for src, frames in zip(sources, raw)]
    firsts = [next(s) for s in streams]
    first = firsts[0]
    symbols = first.atoms.get_chemical_symbols()
    for src, f in zip(sources[1:], firsts[1:]):
        if f.atoms.get_chemical_symbols() != symbols:
            raise InputError(f"atoms differ from those of {sources[0].path}", src.path, 0)
    group_masks = species_groups(symbols)
    if groups:
        group_masks.update(selection_groups(first, groups))
    # ring-polymer beads move at P times the physical temperature: divide by P
    kinetic = float(np.mean([kinetic_temperature(f) for f in firsts])) / len(sources)
    temperature = check_temperature(kinetic, settings.temperature_K, sources[0].path, len(first.atoms))
    predictor = predictor or APTPredictor.load(model, device=device, compile=settings.compile)
    with_pgt = predictor.streams_pgt(settings.raman)
    nbeads = len(sources)
    est = StepEstimator(name, nbeads, None, group_masks, per_bead=nbeads > 1,
                        centre="centroid" if nbeads > 1 else "total", members=committee_size(predictor))
    # the spectrum uses --temperature, else the mean kinetic temperature of all frames written
    temperature_source = "given" if settings.temperature_K is not None else "kinetic-mean"
    steps = _lockstep(sources, [itertools.chain([f], s) for f, s in zip(firsts, streams)])
    selected = itertools.islice(steps, 0, None, settings.stride)
    compute = _Producer(est, predictor, sources[0].path, with_pgt)
    series, label = est.series, est.label
    model_label = predictor.fingerprint or model_fingerprint(model)  # hashed once, when the model was loaded
    first_read = start // settings.stride
    first, stop = output_range or (first_read, None)
    total = stop - first if output_range else _output_frames(sources[0], settings.stride, frame_range)
    return _stream(selected, sources, series, compute, label, model_label, output, settings,
                   (temperature, temperature_source), len(symbols), first, total, first_read, stop)


def _estimator(estimator: str):
    """aptnn-post's estimator (see :mod:`aptnn.estimators`): ``velocity`` with velocities from the file or
    central differences, the centroid the bead mean (``centroid``) or ``apt-at-centroid`` (alias
    ``centroid-apt``)."""
    try:
        name = resolve(estimator, "velocity")
    except ValueError as err:
        raise InputError(str(err)) from None
    if name.base != "velocity":
        raise InputError(f"aptnn-post computes the velocity estimator, not {estimator!r} (the increment "
                         "estimator needs every MD step: aptnn-ipi)")
    return name


class _Producer:
    """aptnn-post's side of the estimator core: APTs of steps (batched model calls; the members of a
    committee first, (M, B, N, 3, 3)), and rows (n_series, 3) e·Å/fs from a step's APTs and velocities (Å/fs).
    ``with_pgt``: response rows (…, N, 9, 3) instead of APTs, rows (n_series, 9): dM/dt then dα/dt (Voigt,
    e·Å²/(V·fs)), see :func:`aptnn.estimators.response`."""

    def __init__(self, est: StepEstimator, predictor, path: str, with_pgt: bool = False):
        self.est, self.predictor, self.path, self.with_pgt = est, predictor, path, with_pgt

    def _members(self, frames, index: int) -> np.ndarray:
        """(M, B, N, C, 3), or (B, N, C, 3) for a single model (C = 3, or 9 ``with_pgt``)."""
        atoms = [f.atoms for f in frames]
        if self.est.members > 1:
            return np.stack(self.predictor.predict_members(atoms, self.path, index, self.with_pgt), axis=1)
        return np.stack(self.predictor.predict_batch(atoms, self.path, index, self.with_pgt)[0])

    def apts(self, batch: list[list[MDFrame]], index: int) -> list:
        """APTs of a batch of steps (each the frames of all beads): classical frames go through the model
        together, PIMD steps one by one (their beads together); with ``apt-at-centroid`` each item is a tuple
        (bead APTs, APT at the centroid)."""
        if self.est.nbeads == 1:
            apts = self._members([b[0] for b in batch], index)
            return [apts[..., k:k + 1, :, :, :] for k in range(len(batch))]
        out = []
        for j, beads in enumerate(batch):
            apt = self._members(beads, index + j)
            if self.est.at_centroid:
                atoms = beads[0].atoms.copy()
                cell = atoms.cell.array if atoms.pbc.any() else None
                atoms.positions = centroid(np.stack([f.atoms.positions for f in beads]), cell, atoms.pbc)
                apt = (apt, self._members([MDFrame(atoms, None, None, None)], index + j)[..., 0, :, :, :])
            out.append(apt)
        return out

    def row(self, beads: list[MDFrame], apt) -> np.ndarray:
        apt, centre = apt if isinstance(apt, tuple) else (apt, None)
        return self.est.velocity_row(apt, np.stack([f.velocities for f in beads]), centre)


def _lockstep(sources: list[FrameSource], iterators) -> Iterator[list[MDFrame]]:
    """Yield the frames of all beads step by step; differing steps or lengths are errors."""
    for k, frames in enumerate(itertools.zip_longest(*iterators)):
        if any(f is None for f in frames):
            short = sources[[f is None for f in frames].index(True)].path
            raise InputError("bead files have different lengths", short, k)
        if len({f.step for f in frames}) > 1 or len({len(f.atoms) for f in frames}) > 1:
            raise InputError("bead files disagree on the step or the atom count", sources[0].path, k)
        yield list(frames)


def _stream(steps, sources, series, compute, label, model_label, output, settings, temperature, natoms,
            start: int = 0, total: int | None = None, first_read: int | None = None,
            stop: int | None = None) -> str:
    """Write the rows of ``steps`` into ``output``. Output frame indices are global (after stride): the file's
    first frame is ``start``; ``first_read`` (≤ start, default start) is the index of the first step given and
    ``stop`` the index where writing ends (a shard reads neighbours on either side for the interpolation of
    APTs, :mod:`aptnn.interpolation`)."""
    source = sources[0]
    buffer: list[list[MDFrame]] = []
    writer = evaluator = None
    name = Path(source.path).name + (f" from output frame {start}" if start else "")
    bar = progress_bar(total, f"aptnn-post {name}", disable=not settings.progress)
    first_read = start if first_read is None else first_read
    index, stored, dt, last_time = first_read, 0, None, None
    try:
        for frames in steps:
            frame = frames[0]
            if frame.time is None:
                raise InputError("frame has no time: give --timestep (fs per frame or per step)", source.path, index)
            if last_time is not None:
                step = frame.time - last_time
                if not (np.isfinite(step) and step > 0):
                    raise InputError(f"time does not increase ({last_time:g} fs, then {frame.time:g} fs): a time "
                                     "step (--timestep) must be positive", source.path, index)
                if dt is None and step > MAX_FRAME_SPACING_FS:
                    raise InputError(f"frames are {step:g} fs apart: no IR band survives such sampling (Nyquist "
                                     f"{1 / (2 * units.C_CM_PER_FS * step):.0f} cm⁻¹); check --units and --timestep",
                                     source.path, index)
                dt = step if dt is None else dt
                if not np.isclose(step, dt, rtol=1e-6):
                    raise InputError(f"time step changed from {dt:g} fs to {step:g} fs", source.path, index)
            last_time = frame.time
            if len(frame.atoms) != natoms:
                raise InputError(f"{len(frame.atoms)} atoms instead of {natoms}", source.path, index)
            buffer.append(frames)
            index += 1
            if writer is None and len(buffer) >= 2:
                every = every_from(dt, settings.apt_every, settings.apt_every_fs)
                evaluator = NodeEvaluator(every, lambda items, k: compute.apts([f for f, _ in items], k),
                                          settings.batch_size)
                writer = _open_writer(output, series, label, model_label, sources, buffer, dt, temperature, natoms,
                                      settings, every, getattr(compute.predictor, "uncertainty_scale", None),
                                      compute.with_pgt)
                stored = writer.n_frames
                if stored and settings.progress:
                    print(f"aptnn-post: {output} holds {stored} frames: resuming at frame {start + stored} "
                          "(the first and last stored frames are checked against the input)", file=sys.stderr)
            if writer is not None and len(buffer) >= settings.batch_size * evaluator.every:  # batch_size nodes
                _flush(writer, compute, evaluator, buffer, stored, index, bar, source.path, start, stop)
                buffer = []
        if writer is None:
            raise InputError(f"only {len(buffer)} frame(s) after stride: need at least 2", source.path)
        _flush(writer, compute, evaluator, buffer, stored, index, bar, source.path, start, stop, final=True)
    except InputError:  # bad input: nothing half-written (a stream this run created is removed)
        if writer is not None and writer.created:
            writer.close()
            writer = None
            os.remove(output)
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return output


def _output_frames(source: FrameSource, stride: int, frame_range: tuple[int, int] | None) -> int | None:
    """Frames this run writes (the progress bar's total and ETA), where the source counts them cheaply."""
    if source.format in ("extxyz", "ase"):
        return None  # counting would read the whole file once more
    try:
        n = len(source)
    except Exception:  # noqa: BLE001 — a count is only a nicety
        return None
    if frame_range is not None:
        n = min(n, frame_range[1]) - frame_range[0]
    fd = getattr(source, "finite_difference_step_fs", None) is not None
    return max(0, -(-(n - 2 * fd) // stride))


def _open_writer(output, series, label, model_label, sources, buffer, dt, temperature, natoms,
                 settings, every: int, uncertainty_scale: float | None, with_pgt: bool = False) -> StreamWriter:
    atoms = buffer[0][0].atoms
    volume = float(atoms.get_volume()) if atoms.pbc.all() else None
    fd_step = getattr(sources[0], "finite_difference_step_fs", None)
    extra = {"velocity_source": "file"} if fd_step is None else {"velocity_source": "central-difference",
                                                                  "fd_step_fs": fd_step}
    temperature, extra["temperature_source"] = temperature
    if len(sources) > 1:
        extra["nbeads"] = len(sources)
    extra.update(apt_every=every, apt_interpolation=INTERPOLATION if every > 1 else "none")
    if uncertainty_scale is not None and any(s.startswith("member") for s in series):
        extra["uncertainty_scale"] = float(uncertainty_scale)
    return StreamWriter(output, series, dt_fs=dt, temperature_K=temperature, volume_A3=volume, natoms=natoms,
                        estimator=label, model=model_label, source=sources[0].path,
                        resume=not settings.overwrite, overwrite=settings.overwrite, stride=settings.stride,
                        checks=CHECK_SIZE, kinetic=True, polarizability=with_pgt, **extra)


def _flush(writer, compute, evaluator, buffer, stored: int, index: int, bar, path: str, start: int,
           stop: int | None = None, final: bool = False) -> None:
    """Evaluate buffered steps not yet in the file (the network in batches of the same grouping whatever the
    start, so a frame's result does not depend on where a run or shard started) and append their rows.
    ``index``: output index after the buffer; ``start``: output index of the file's first frame; ``stop``:
    index where writing ends; ``stored``: frames the file held when it was opened (a resumed run): the first
    and last of them are compared with the input (fingerprints), so a replaced trajectory is never continued.
    Steps before ``start + stored`` still go through the evaluator where the interpolation of later steps
    needs their nodes; ``final``: the input ended (the last step becomes a node)."""
    bar.update(len(buffer))
    first_new = start + stored
    needed = evaluator.needed_from(first_new)
    items = []
    for j, frames in enumerate(buffer):
        glob = index - len(buffer) + j
        pos = glob - start
        if 0 <= pos < stored and pos in (0, stored - 1):
            _verify(writer, pos, frames[0], path, glob)
        if glob >= needed:
            items.append((glob, (frames, glob >= first_new and (stop is None or glob < stop))))
    ready = evaluator.feed(items) + (evaluator.finish() if final else [])
    done = [(glob, frames, apt) for glob, (frames, write), apt in ready if write]
    if not done:
        return
    if evaluator.every > 1:  # interpolated frames never met the model's checks
        for glob, frames, _ in done:
            for f in frames:
                check_geometry(f.atoms, path, glob)
    rows = np.stack([compute.row(frames, apt) for _, frames, apt in done])
    if not np.isfinite(rows).all():
        bad = int(np.argmax(~np.isfinite(rows).reshape(len(done), -1).all(axis=1)))
        raise InputError("dM/dt is not finite (NaN/inf velocities or APTs)", path, done[bad][0])
    part = [frames for _, frames, _ in done]
    kinetic = [np.mean([kinetic_temperature(f) for f in b]) / len(b) for b in part]
    dmdt, dadt = split_rows(rows)
    writer.append([b[0].time for b in part], dmdt, check=[frame_check(b[0].atoms.positions) for b in part],
                  kinetic_K=kinetic, dadt=dadt)


def _verify(writer, pos: int, frame: MDFrame, path: str, index: int) -> None:
    """Refuse to continue a stream made from other input: frame ``pos`` of the stream must match."""
    stored = read_checks(writer.path, pos, pos + 1)
    if len(stored) == 0:
        raise OutputError("cannot resume: the stream has no input fingerprints; use --overwrite", writer.path)
    diff = float(np.abs(stored[0] - frame_check(frame.atoms.positions)).max())
    if diff > 1e-6:
        raise OutputError(f"cannot resume: frame {index} of {path} is not the frame this stream was made from "
                          f"(fingerprints differ by {diff:.3g} Å): the trajectory was replaced or changed; use "
                          "--overwrite or another output", writer.path)
