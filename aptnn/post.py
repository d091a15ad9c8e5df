"""``aptnn-post``: trajectory → APT model → dM/dt stream file (→ spectrum), in bounded memory.

Frames are read one by one, evaluated in batches, and appended to the HDF5 stream (flushed every few
seconds); re-running on an existing output continues after its last complete frame.
"""
from __future__ import annotations

import hashlib
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from ase.data import atomic_masses
from tqdm.auto import tqdm

from aptnn import __version__, units
from aptnn.engine import DipoleDerivativeEngine
from aptnn.errors import InputError
from aptnn.io.stream import StreamWriter
from aptnn.io.trajectory import FrameSource, MDFrame
from aptnn.predict import APTPredictor


@dataclass
class PostSettings:
    stride: int = 1
    batch_size: int = 8
    temperature_K: float | None = None   # default: kinetic temperature of the first frames
    overwrite: bool = False
    progress: bool = True


def model_fingerprint(name: str) -> str:
    """``name sha256:<hex>`` of the checkpoint file, recorded in stream files."""
    from aptnn.model.checkpoint import resolve

    digest = hashlib.sha256(Path(resolve(name)).read_bytes()).hexdigest()
    return f"{name} sha256:{digest}"


def kinetic_temperature(frame: MDFrame) -> float:
    """Equipartition temperature (K) of one frame from velocities (Å/fs) and ASE atomic masses (amu)."""
    from scipy import constants as si

    m = atomic_masses[frame.atoms.numbers] * si.atomic_mass
    v = frame.velocities * 1e5  # Å/fs → m/s
    return float(np.sum(m[:, None] * v**2) / (3 * len(m) * si.k))


def species_groups(symbols: list[str]) -> dict[str, np.ndarray]:
    """One group per element: {"O": mask, "H": mask}."""
    arr = np.array(symbols)
    return {s: arr == s for s in dict.fromkeys(symbols)}


def selection_groups(first: MDFrame, selections: list[str]) -> dict[str, np.ndarray]:
    """Groups from MDAnalysis selection strings (``NAME=SELECTION`` or just SELECTION) on the first frame;
    atom names, types and elements are the element symbols, positions and box those of the frame."""
    import MDAnalysis as mda

    atoms = first.atoms
    u = mda.Universe.empty(len(atoms), trajectory=True)
    symbols = atoms.get_chemical_symbols()
    for attr in ("names", "types", "elements"):
        u.add_TopologyAttr(attr, symbols)
    u.atoms.positions = atoms.positions
    if atoms.pbc.any():
        u.dimensions = np.concatenate([atoms.cell.lengths(), atoms.cell.angles()])
    groups = {}
    for text in selections:
        name, _, sel = text.partition("=") if "=" in text else (text, "", text)
        try:
            idx = u.select_atoms(sel.strip()).indices
        except Exception as err:  # MDAnalysis raises several kinds for a bad selection
            raise InputError(f"bad group selection {sel!r}: {err}") from None
        mask = np.zeros(len(atoms), dtype=bool)
        mask[idx] = True
        if not mask.any():
            raise InputError(f"group selection {sel!r} matches no atom")
        groups[name.strip()] = mask
    return groups


def with_velocities(source: FrameSource, frames: Iterator[MDFrame], warn: bool = True) -> Iterator[MDFrame]:
    """Frames with velocities: from the file, or by central differences of positions (minimum image)."""
    first = next(frames, None)
    if first is None:
        raise InputError("trajectory has no frames", source.path)
    if first.velocities is not None:
        yield first
        yield from frames
        return
    if warn:
        warnings.warn(f"{source.path}: no velocities in the file; using central differences of positions, which "
                      "need every MD step and attenuate high frequencies by sinc(ωΔt) (corrected in the spectrum)",
                      stacklevel=2)
    prev, cur = first, next(frames, None)
    if cur is None:
        raise InputError("need at least 3 frames for finite-difference velocities", source.path)
    for k, nxt in enumerate(frames, start=1):
        if prev.time is None or nxt.time is None:
            raise InputError("finite-difference velocities need times: give --timestep", source.path, k)
        step = nxt.time - cur.time
        if not np.isclose(cur.time - prev.time, step, rtol=1e-6):
            raise InputError("frames are not consecutive with a constant step: finite differences impossible",
                             source.path, k)
        source.finite_difference_step_fs = step
        disp = nxt.atoms.positions - prev.atoms.positions
        if cur.atoms.pbc.any():
            from ase.geometry import find_mic

            disp, _ = find_mic(disp, cur.atoms.cell, cur.atoms.pbc)
        yield MDFrame(cur.atoms, disp / (2 * step), cur.time, cur.step)
        prev, cur = cur, nxt


def run(sources: list[FrameSource], model: str, output: str, settings: PostSettings,
        groups: list[str] | None = None, device: str = "cpu") -> str:
    """Post-process one trajectory (``sources`` of length 1) into the stream file ``output``; returns it."""
    if len(sources) != 1:
        raise InputError("give one trajectory per output file (bead files are handled by run_beads)")
    source = sources[0]
    predictor = APTPredictor.load(model, device=device)
    stream = iter(source)
    frames = with_velocities(source, stream)
    first = next(frames)
    symbols = first.atoms.get_chemical_symbols()
    group_masks = species_groups(symbols)
    if groups:
        group_masks.update(selection_groups(first, groups))
    engine = DipoleDerivativeEngine(predictor, group_masks)
    temperature = settings.temperature_K
    kinetic = kinetic_temperature(first)
    if temperature is None:
        temperature = kinetic
    elif not 0.5 < kinetic / temperature < 2.0:
        warnings.warn(f"{source.path}: kinetic temperature of the first frame is {kinetic:.0f} K, not "
                      f"{temperature:.0f} K: are the velocity units right (--units)?", stacklevel=2)
    all_frames = itertools.chain([first], frames)
    selected = itertools.islice(all_frames, 0, None, settings.stride)
    return _stream(selected, source, engine, predictor, model, output, settings, temperature, len(symbols))


def _stream(frames, source, engine, predictor, model, output, settings, temperature, natoms) -> str:
    buffer: list[MDFrame] = []
    writer = None
    bar = tqdm(desc=f"aptnn-post {Path(source.path).name}", unit="frame", disable=not settings.progress)
    index, skip, dt, last_time = 0, 0, None, None
    try:
        for frame in frames:
            if frame.time is None:
                raise InputError("frame has no time: give --timestep (fs per frame or per step)", source.path, index)
            if last_time is not None:
                step = frame.time - last_time
                dt = step if dt is None else dt
                if not np.isclose(step, dt, rtol=1e-6):
                    raise InputError(f"time step changed from {dt:g} fs to {step:g} fs", source.path, index)
            last_time = frame.time
            if len(frame.atoms) != natoms:
                raise InputError(f"{len(frame.atoms)} atoms instead of {natoms}", source.path, index)
            buffer.append(frame)
            index += 1
            if writer is None and len(buffer) >= 2:
                writer = _open_writer(output, engine, model, source, buffer, dt, temperature, natoms, settings)
                skip = writer.n_frames
            if writer is not None and len(buffer) >= settings.batch_size:
                skip = _flush(writer, engine, buffer, skip, source, index, bar)
                buffer = []
        if writer is None:
            raise InputError(f"only {len(buffer)} frame(s) after stride: need at least 2", source.path)
        _flush(writer, engine, buffer, skip, source, index, bar)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return output


def _open_writer(output, engine, model, source, buffer, dt, temperature, natoms, settings) -> StreamWriter:
    atoms = buffer[0].atoms
    volume = float(atoms.get_volume()) if atoms.pbc.all() else None
    fd_step = getattr(source, "finite_difference_step_fs", None)
    extra = {"velocity_source": "file"} if fd_step is None else {"velocity_source": "central-difference",
                                                                  "fd_step_fs": fd_step}
    return StreamWriter(output, engine.series, dt_fs=dt, temperature_K=temperature, volume_A3=volume,
                        natoms=natoms, estimator="velocity", model=model_fingerprint(model), source=source.path,
                        resume=not settings.overwrite, overwrite=settings.overwrite, stride=settings.stride,
                        **extra)


def _flush(writer, engine, buffer, skip, source, index, bar) -> int:
    """Evaluate buffered frames not yet in the file; returns how many existing frames remain to skip."""
    todo = buffer[skip:] if skip < len(buffer) else []
    bar.update(len(buffer))
    if not todo:
        return skip - len(buffer)
    first_index = index - len(buffer) + min(skip, len(buffer))
    values = engine.compute([f.atoms for f in todo], [f.velocities for f in todo], source.path, first_index)
    writer.append([f.time for f in todo], values)
    return 0
