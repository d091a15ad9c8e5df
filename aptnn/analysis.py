"""dM/dt of a trajectory as an analysis object, in the style of MDAnalysis' ``AnalysisBase``.

>>> dd = DipoleDerivative(u, "water-rpbe-d3").run(start=0, stop=1000, step=1)
>>> dd.results.time          # (n_frames,) fs
>>> dd.results.dmdt          # (n_frames, n_series, 3) e·Å/fs, dM/dt = Σ_i P_i·v_i
>>> dd.results.series        # ["total", "group:O", "group:H"]
>>> spectrum = dd.results.spectrum(max_lag_fs=1000)    # aptnn.spectrum.Spectrum

Sources: an ``MDAnalysis.Universe`` (positions Å, velocities Å/ps and times ps, MDAnalysis' units, converted
to Å/fs and fs), a list of ASE ``Atoms`` with velocities (ASE momenta, or a ``velocities`` array in Å/fs as in
extxyz files aptnn reads; times from ``info["time"]`` in fs, else ``timestep``), or a trajectory file opened with
:func:`aptnn.io.trajectory.open_trajectory`. Velocities are required: this class computes no finite
differences of positions (``aptnn post`` does, from every MD step).
"""
from __future__ import annotations

import itertools
import os
import tempfile

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from aptnn import units
from aptnn.errors import InputError
from aptnn.estimators import contributions, kinetic_temperature, series_sums, species_groups
from aptnn.io.checks import check_md_frame
from aptnn.progress import progress_bar

__all__ = ["DipoleDerivative", "Results"]


class Results(dict):
    """The results of :class:`DipoleDerivative`, readable as keys or attributes (as MDAnalysis' ``Results``).

    ``time`` (n,) fs; ``dmdt`` (n, n_series, 3) e·Å/fs (None when streamed to a file without ``in_memory``);
    ``series`` names (``total``, ``group:<element>``, ``group:<name>``); ``frames`` source frame indices;
    ``temperature_K`` (K: given, else the mean kinetic temperature); ``volume_A3`` (Å³, None without a periodic
    cell); ``output`` the stream file or None.
    """

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def spectrum(self, **kwargs):
        """IR spectrum (:class:`aptnn.spectrum.Spectrum`) by :func:`aptnn.spectrum.compute_spectrum` (its keyword
        arguments, e.g. ``max_lag_fs``, ``qcf``): of the stream file when results were streamed to one, else of
        the in-memory results written to a temporary stream file. Needs ≥ 2 frames at a uniform time step."""
        from aptnn.spectrum import compute_spectrum

        if self.get("output"):
            return compute_spectrum([self.output], **kwargs)
        if self.get("dmdt") is None:
            raise InputError("no results: run the analysis first")
        if not np.isfinite(self.time).all():
            raise InputError("frames without times: give timestep= (fs between frames) for a spectrum")
        with tempfile.TemporaryDirectory(prefix="aptnn-") as tmp:
            path = os.path.join(tmp, "dmdt.h5")
            dt = float(self.time[1] - self.time[0]) if len(self.time) > 1 else None
            with _writer(path, self.series, dt, self.temperature_K, self.volume_A3, None, None, None, True,
                         False) as w:
                w.append(self.time, self.dmdt)
            return compute_spectrum([path], **kwargs)


class DipoleDerivative:
    """dM/dt = Σ_i P_i·v_i (e·Å/fs) of every frame of a trajectory, with one series per element.

    ``source``: an ``MDAnalysis.Universe`` (or an ``AtomGroup`` of one: those atoms only), a list of ASE ``Atoms``
    or a trajectory path (see the module).
    ``model``: a shipped model name, a checkpoint path or an :class:`~aptnn.predict.APTPredictor`.
    ``output``: a stream file (HDF5) to write, readable by ``aptnn spectrum``; ``overwrite`` replaces an
    existing one. ``in_memory``: keep ``results.dmdt`` (default: True without ``output``, False with it).
    ``timestep``: fs between frames of ASE lists without ``info["time"]``; for files as in
    :func:`~aptnn.io.trajectory.open_trajectory` (with ``format``, ``lammps_units``, ``types``).
    ``elements``: element symbols of the atoms (default: the Universe's ``elements``, else its types, else its
    names). ``groups``: extra series, ``{name: atom indices or boolean mask}``.
    ``temperature_K``: stored in the stream for the spectrum (default: mean kinetic temperature of the frames).
    ``batch_size``: frames per model call; ``verbose``: a progress bar (plain lines when stderr is no terminal).
    """

    def __init__(self, source, model="water-rpbe-d3", *, output: str | os.PathLike | None = None,
                 overwrite: bool = False, in_memory: bool | None = None, timestep: float | None = None,
                 format: str | None = None, lammps_units: str | None = None, types: list[str] | None = None,
                 elements: list[str] | None = None, groups: dict | None = None, temperature_K: float | None = None,
                 batch_size: int = 1, verbose: bool = True, dtype: str | None = None, device: str = "cpu"):
        from aptnn.predict import APTPredictor

        self.source, self.output, self.overwrite = source, None if output is None else str(output), overwrite
        self.in_memory = self.output is None if in_memory is None else bool(in_memory)
        self.timestep, self.elements, self.extra_groups = timestep, elements, dict(groups or {})
        self.temperature_K, self.batch_size, self.verbose = temperature_K, max(1, int(batch_size)), verbose
        if isinstance(source, (str, os.PathLike)):
            from aptnn.io.trajectory import open_trajectory

            self._kind, self._name = "path", str(source)
            self._source = open_trajectory(str(source), format, lammps_units, types, timestep)
        elif isinstance(source, (list, tuple)) and all(isinstance(a, Atoms) for a in source):
            self._kind, self._name = "ase", "ASE frames"
        elif hasattr(source, "atoms") and hasattr(getattr(source, "universe", None), "trajectory"):
            self._kind = "universe"
            self._name = str(getattr(source.universe.trajectory, "filename", None) or "MDAnalysis Universe")
        else:
            raise TypeError("source must be an MDAnalysis Universe or AtomGroup, a list of ASE Atoms or a trajectory "
                            f"path, not {type(source).__name__}")
        if elements is not None and self._kind != "universe":
            raise InputError("elements= is for MDAnalysis sources; ASE frames and trajectory files name their "
                             "elements", self._name)
        if isinstance(model, APTPredictor):
            self.predictor = model
        else:
            self.predictor = APTPredictor.load(str(model), dtype=dtype, device=device)
        self.model_label = self.predictor.fingerprint  # None for a model built in memory
        self.results = Results()

    # --- life cycle (as MDAnalysis' AnalysisBase) --------------------------------------------------------
    def run(self, start: int | None = None, stop: int | None = None, step: int | None = None,
            verbose: bool | None = None) -> "DipoleDerivative":
        """Analyse frames ``start:stop:step`` (Python slice semantics over the source's frames); returns self."""
        self._prepare()
        frames, total = self._frames(start, stop, step)
        bar = progress_bar(total, "DipoleDerivative", "frame", disable=not (self.verbose if verbose is None
                                                                             else verbose))
        try:
            for index, atoms, velocities, time in frames:
                self._single_frame(index, atoms, velocities, time)
                bar.update(1)
            self._conclude()
        except InputError:   # bad input: no half-written stream left behind by this run
            if self._writer is not None and self._writer.created:
                self._writer.close()
                self._writer = None
                os.remove(self.output)
            raise
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return self

    def _prepare(self) -> None:
        if self.output is not None and os.path.exists(self.output) and not self.overwrite:
            from aptnn.errors import OutputError

            raise OutputError("output exists: pass overwrite=True to replace it", self.output)
        self.results = Results(time=None, dmdt=None, series=None, frames=None, temperature_K=self.temperature_K,
                               volume_A3=None, output=self.output)
        self._masks: dict[str, np.ndarray] | None = None
        self._first: np.ndarray | None = None
        self._buffer: list[tuple[int, Atoms, np.ndarray, float]] = []
        self._rows: list[np.ndarray] = []
        self._times: list[float] = []
        self._indices: list[int] = []
        self._kinetic: list[float] = []
        self._pending: list[tuple[list[float], np.ndarray, list[float]]] = []   # rows not yet written
        self._writer = None

    def _single_frame(self, index: int, atoms: Atoms, velocities: np.ndarray, time: float | None) -> None:
        """Check one frame (positions Å, velocities Å/fs, time fs) and queue it for the next model call."""
        if self._masks is None:
            self._setup(atoms)
        if velocities is None:
            raise InputError("frame has no velocities: DipoleDerivative needs them (aptnn post computes them by "
                             "central differences from every MD step)", self._name, index)
        check_md_frame(atoms, velocities, time, self._first, self._name, index)
        if time is None and self.output is not None:
            raise InputError("frame has no time: give timestep= (fs between frames) to write a stream", self._name,
                             index)
        self._buffer.append((index, atoms, np.asarray(velocities, dtype=float),
                             np.nan if time is None else float(time)))
        if len(self._buffer) >= self.batch_size:
            self._evaluate()

    def _conclude(self) -> None:
        self._evaluate()
        if not self._indices:
            raise InputError("no frames selected", self._name)
        r = self.results
        r.time, r.frames = np.asarray(self._times), np.asarray(self._indices)
        if self.in_memory:
            r.dmdt = np.concatenate(self._rows)
        if r.temperature_K is None:
            r.temperature_K = float(np.mean(self._kinetic))
        self._write(final=True)

    # --- internals -------------------------------------------------------------------------------------------
    def _setup(self, atoms: Atoms) -> None:
        symbols = atoms.get_chemical_symbols()
        self._first = atoms.numbers.copy()
        self._masks = {f"group:{s}": mask for s, mask in species_groups(symbols).items()}
        for name, sel in self.extra_groups.items():
            mask = np.zeros(len(atoms), dtype=bool)
            mask[np.asarray(sel)] = True
            self._masks[f"group:{name}"] = mask
        self.results.series = ["total"] + list(self._masks)
        if atoms.pbc.all():
            self.results.volume_A3 = float(atoms.get_volume())

    def _evaluate(self) -> None:
        """Predict the APTs of the buffered frames in one call; keep and/or write their dM/dt."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        apts, _ = self.predictor.predict_batch([b[1] for b in batch], self._name, batch[0][0])
        rows = np.stack([series_sums(contributions(apt, v), self._masks) for apt, (_, _, v, _) in zip(apts, batch)])
        times = [b[3] for b in batch]
        kinetic = [kinetic_temperature(b[1].numbers, b[2]) for b in batch]
        if self.in_memory:
            self._rows.append(rows)
        self._times += times
        self._indices += [b[0] for b in batch]
        self._kinetic += kinetic
        if self.output is not None:
            self._pending.append((times, rows, kinetic))
            self._write()

    def _write(self, final: bool = False) -> None:
        """Append the pending rows to the stream, opened once the time step is known (2 frames) or at the end."""
        if self.output is None:
            return
        if self._writer is None:
            if len(self._times) < 2 and not final:
                return
            dt = self._times[1] - self._times[0] if len(self._times) > 1 else None
            self._writer = _writer(self.output, self.results.series, dt, self.temperature_K or self._kinetic[0],
                                   self.results.volume_A3, len(self._first), self.model_label, self._name,
                                   self.overwrite, self.temperature_K is None)
        for times, rows, kinetic in self._pending:
            self._writer.append(times, rows, kinetic_K=kinetic)
        self._pending = []

    def _frames(self, start, stop, step):
        """(iterator of (index, Atoms, velocities Å/fs or None, time fs or None), frame count or None)."""
        if self._kind == "path":
            return self._path_frames(start, stop, step)
        n = len(self.source) if self._kind == "ase" else len(self.source.universe.trajectory)
        indices = range(n)[slice(start, stop, step)]
        frames = self._ase_frames(indices) if self._kind == "ase" else self._universe_frames(start, stop, step)
        return frames, len(indices)

    def _ase_frames(self, indices):
        from aptnn.io.trajectory import ASESource

        for k in indices:
            atoms = self.source[k]
            v = next((np.asarray(atoms.arrays[key], dtype=float) for key in ASESource.VELOCITY_KEYS
                      if key in atoms.arrays), None)
            if v is None and "momenta" in atoms.arrays:
                v = atoms.get_velocities() / units.ASE_TIME_TO_FS
            time = atoms.info.get("time")
            if time is None and self.timestep is not None:
                time = k * self.timestep
            yield k, atoms, v, time

    def _universe_frames(self, start, stop, step):
        group = self.source.atoms
        symbols = _universe_elements(group, self.elements)
        to_fs, v_to_fs = units.parse_time("ps"), units.parse_velocity("A/ps")   # MDAnalysis: Å, ps, Å/ps
        for ts in group.universe.trajectory[start:stop:step]:
            box = ts.dimensions
            periodic = box is not None and np.all(np.asarray(box[:3]) > 0)
            atoms = Atoms(symbols, positions=np.array(group.positions, dtype=float),
                          cell=np.asarray(box, dtype=float) if periodic else None, pbc=bool(periodic))
            v = np.array(group.velocities, dtype=float) * v_to_fs if ts.has_velocities else None
            yield ts.frame, atoms, v, float(ts.time) * to_fs

    def _path_frames(self, start, stop, step):
        src = self._source
        if any(x is not None and x < 0 for x in (start, stop)):
            start, stop, step = slice(start, stop, step).indices(len(src))
        start, step = start or 0, step or 1
        if step < 1:
            raise InputError(f"step must be ≥ 1 for a trajectory file, not {step}", self._name)
        total = None
        if src.format not in ("extxyz", "ase"):  # counting would read a text file once more
            try:
                n = len(src) if stop is None else min(len(src), stop)
                total = len(range(start, n, step))
            except Exception:  # noqa: BLE001 — a count is only a nicety
                total = None
        frames = itertools.islice(enumerate(src.iter_range(start, stop), start=start), 0, None, step)
        return ((k, f.atoms, f.velocities, f.time) for k, f in frames), total


def _writer(path, series, dt, temperature, volume, natoms, model, source, overwrite, kinetic_mean):
    """A stream writer (e·Å/fs, fs); ``kinetic_mean``: the spectrum's temperature is the mean of the per-frame
    kinetic temperatures the file records, else the given ``temperature`` (K)."""
    from aptnn.io.stream_writer import StreamWriter

    extra = {"velocity_source": "file", "temperature_source": "kinetic-mean" if kinetic_mean else "given"}
    return StreamWriter(path, series, dt_fs=dt, temperature_K=temperature, volume_A3=volume, natoms=natoms,
                        estimator="velocity", model=model, source=source, overwrite=overwrite,
                        kinetic=kinetic_mean, **extra)


def _symbol(label: str) -> str | None:
    """An element symbol from an MDAnalysis element, type or name ("O", "OW", "HW1", "h"), or None."""
    text = "".join(c for c in str(label) if c.isalpha())
    for guess in (text[:2].capitalize(), text[:1].upper()):
        if guess in chemical_symbols[1:]:
            return guess
    return None


def _universe_elements(group, given: list[str] | None) -> list[str]:
    """Element symbols of an MDAnalysis AtomGroup: ``given``, else its elements, types or names."""
    if given is not None:
        if len(given) != len(group):
            raise InputError(f"{len(given)} elements for {len(group)} atoms")
        return list(given)
    for attr in ("elements", "types", "names"):
        try:
            labels = list(getattr(group, attr))
        except AttributeError:   # MDAnalysis' NoDataError is one
            continue
        if attr == "elements":
            symbols = [str(s).capitalize() if str(s).capitalize() in chemical_symbols[1:] else None for s in labels]
        else:
            symbols = [_symbol(s) for s in labels]
        if symbols and all(symbols):
            return symbols
    raise InputError("cannot tell the elements of the Universe's atoms (no elements, types or names that are "
                     "element symbols): pass elements=[...]")

