"""dM/dt of a trajectory as an analysis object, in the style of MDAnalysis' ``AnalysisBase``.

>>> dd = DipoleDerivative(u, "water-rpbe-d3").run(start=0, stop=1000, step=1)
>>> dd.results.time          # (n_frames,) fs
>>> dd.results.dmdt          # (n_frames, n_series, 3) e·Å/fs, dM/dt = Σ_i P_i·v_i
>>> dd.results.series        # ["total", "group:O", "group:H"] (+ "member0"… for a committee model)
>>> spectrum = dd.results.spectrum(max_lag_fs=1000)    # aptnn.spectrum.Spectrum

Sources: an ``MDAnalysis.Universe`` (positions Å, velocities Å/ps and times ps, MDAnalysis' units, converted
to Å/fs and fs), a list of ASE ``Atoms`` with velocities (ASE momenta, or a ``velocities`` array in Å/fs as in
extxyz files aptnn reads; times from ``info["time"]`` in fs, else ``timestep``), or a trajectory file opened with
:func:`aptnn.io.trajectory.open_trajectory`. Velocities are required: this class computes no finite
differences of positions (``aptnn post`` does, from every MD step).

The rows come from the estimator core of every producer (:class:`aptnn.estimators.StepEstimator`, the velocity
estimator), the APTs through :class:`aptnn.interpolation.NodeEvaluator`: with ``apt_every`` K > 1 the network
runs on every K-th analysed frame only and the APTs in between are interpolated (cubic Lagrange in time).
"""
from __future__ import annotations

import itertools
import os
import tempfile

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from aptnn import defaults, units
from aptnn.errors import InputError
from aptnn.estimators import StepEstimator, committee_size, kinetic_temperature, species_groups
from aptnn.interpolation import INTERPOLATION, NodeEvaluator, every_from
from aptnn.io.checks import check_md_frame
from aptnn.progress import progress_bar

__all__ = ["DipoleDerivative", "Results"]


class Results(dict):
    """The results of :class:`DipoleDerivative`, readable as keys or attributes (as MDAnalysis' ``Results``).

    ``time`` (n,) fs; ``dmdt`` (n, n_series, 3) e·Å/fs (None when streamed to a file without ``in_memory``);
    ``series`` names (``total``, ``group:<element>``, ``group:<name>``, then ``member<k>`` for a committee
    model: each member's own total; the other series use the committee-mean APT); ``frames`` source frame
    indices; ``temperature_K`` (K: given, else the mean kinetic temperature); ``volume_A3`` (Å³, None without a
    periodic cell); ``output`` the stream file or None; ``apt_every`` K, the network ran on every K-th analysed
    frame; ``uncertainty_scale`` the committee's calibration of its member spread (None for a single model).
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
            attributes = _attributes(self.get("apt_every"), self.get("uncertainty_scale"))
            with _writer(path, self.series, dt, self.temperature_K, self.volume_A3, None, None, None, True,
                         False, attributes) as w:
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
    ``apt_every``: run the network on every K-th analysed frame (0, K, 2K, … of the frames ``run`` selects, and
    the last) and interpolate the APTs in between; None: the largest K with K·Δt ≤ ``apt_every_fs`` (fs), Δt the
    time between the first two frames analysed (K = 1 without times or with ``apt_every_fs`` None). Velocities
    stay exact at every frame; at K = 1 every frame is evaluated.
    ``batch_size``: frames per model call; ``verbose``: a progress bar (plain lines when stderr is no terminal).
    A committee model (:class:`~aptnn.predict.APTPredictor` of M ≥ 2 members) adds the series ``member<k>``.
    """

    def __init__(self, source, model="water-rpbe-d3", *, output: str | os.PathLike | None = None,
                 overwrite: bool = False, in_memory: bool | None = None, timestep: float | None = None,
                 format: str | None = None, lammps_units: str | None = None, types: list[str] | None = None,
                 elements: list[str] | None = None, groups: dict | None = None, temperature_K: float | None = None,
                 batch_size: int = 1, verbose: bool = True, dtype: str | None = None, device: str = "cpu",
                 apt_every: int | None = None, apt_every_fs: float | None = defaults.APT_INTERVAL_FS):
        from aptnn.predict import APTPredictor

        self.source, self.output, self.overwrite = source, None if output is None else str(output), overwrite
        self.in_memory = self.output is None if in_memory is None else bool(in_memory)
        self.timestep, self.elements, self.extra_groups = timestep, elements, dict(groups or {})
        self.temperature_K, self.batch_size, self.verbose = temperature_K, max(1, int(batch_size)), verbose
        if apt_every is not None and int(apt_every) < 1:
            raise InputError(f"apt_every must be ≥ 1, not {apt_every}")
        self.apt_every, self.apt_every_fs = apt_every, apt_every_fs
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
                               volume_A3=None, output=self.output, apt_every=None, uncertainty_scale=None)
        self._est: StepEstimator | None = None
        self._evaluator: NodeEvaluator | None = None   # made once the first two frames' times are known
        self._first: np.ndarray | None = None
        self._count, self._t01, self._dt = 0, [], None  # analysed frames; first two times; Δt (fs)
        self._buffer: list[tuple[int, tuple[int, Atoms, np.ndarray, float]]] = []   # (sequence index, frame)
        self._rows: list[np.ndarray] = []
        self._times: list[float] = []
        self._indices: list[int] = []
        self._kinetic: list[float] = []
        self._pending: list[tuple[list[float], np.ndarray, list[float]]] = []   # rows not yet written
        self._writer = None

    def _single_frame(self, index: int, atoms: Atoms, velocities: np.ndarray, time: float | None) -> None:
        """Check one frame (positions Å, velocities Å/fs, time fs) and queue it for the next model call."""
        if self._est is None:
            self._setup(atoms)
        if velocities is None:
            raise InputError("frame has no velocities: DipoleDerivative needs them (aptnn post computes them by "
                             "central differences from every MD step)", self._name, index)
        check_md_frame(atoms, velocities, time, self._first, self._name, index)
        from aptnn.graph import check_geometry

        check_geometry(atoms, self._name, index)   # also frames whose APTs are interpolated
        if time is None and self.output is not None:
            raise InputError("frame has no time: give timestep= (fs between frames) to write a stream", self._name,
                             index)
        time = np.nan if time is None else float(time)
        self._buffer.append((self._count, (index, atoms, np.asarray(velocities, dtype=float), time)))
        self._count += 1
        if len(self._t01) < 2:
            self._t01.append(time)
        if self._evaluator is None and self._count >= 2:
            self._make_evaluator()
        if self._evaluator is not None and len(self._buffer) >= self.batch_size:
            self._evaluate()

    def _conclude(self) -> None:
        if self._est is not None:
            self._evaluate(final=True)
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
        self._first = atoms.numbers.copy()
        groups = species_groups(atoms.get_chemical_symbols())
        for name, sel in self.extra_groups.items():
            mask = np.zeros(len(atoms), dtype=bool)
            mask[np.asarray(sel)] = True
            groups[name] = mask
        members = committee_size(self.predictor)
        self._est = StepEstimator("velocity", 1, None, groups, per_bead=False, centre="total", members=members)
        self.results.series = self._est.series   # total, group:<name>…, member<k>…
        scale = getattr(self.predictor, "uncertainty_scale", None)
        self.results.uncertainty_scale = float(scale) if members > 1 and scale is not None else None
        if atoms.pbc.all():
            self.results.volume_A3 = float(atoms.get_volume())

    def _make_evaluator(self) -> None:
        """K from the time between the first two frames analysed (fs), and the evaluator of the APTs."""
        t = self._t01
        self._dt = float(t[1] - t[0]) if len(t) > 1 and np.isfinite(t).all() else None
        every = every_from(self._dt, self.apt_every, self.apt_every_fs)
        self._evaluator = NodeEvaluator(every, self._apts, self.batch_size)
        self.results.apt_every = every

    def _apts(self, payloads: list, first_step: int) -> list[np.ndarray]:
        """APTs (e) of frames in one model call: (1, N, 3, 3) each, (M, 1, N, 3, 3) for a committee of M."""
        frames, index = [p[1] for p in payloads], payloads[0][0]
        try:
            if self._est.members > 1:
                return [a[:, None] for a in self.predictor.predict_members(frames, self._name, index)]
            return [a[None] for a in self.predictor.predict_batch(frames, self._name, index)[0]]
        except InputError:   # name the right frame where the batch's frames are not consecutive
            if len(payloads) > 1 and any(b[0] - a[0] != 1 for a, b in zip(payloads, payloads[1:])):
                return [apt for p in payloads for apt in self._apts([p], first_step)]
            raise

    def _evaluate(self, final: bool = False) -> None:
        """Give the buffered frames to the evaluator (the network in batches, on the nodes); keep and/or write
        the dM/dt rows (e·Å/fs) of the frames that are ready. ``final``: the run ended."""
        if self._evaluator is None:
            self._make_evaluator()
        batch, self._buffer = self._buffer, []
        ready = self._evaluator.feed(batch) + (self._evaluator.finish() if final else [])
        if ready:
            rows = np.stack([self._est.velocity_row(apt, v[None]) for _, (_, _, v, _), apt in ready])
            times = [f[3] for _, f, _ in ready]
            kinetic = [kinetic_temperature(f[1].numbers, f[2]) for _, f, _ in ready]
            if self.in_memory:
                self._rows.append(rows)
            self._times += times
            self._indices += [f[0] for _, f, _ in ready]
            self._kinetic += kinetic
            if self.output is not None:
                self._pending.append((times, rows, kinetic))
        self._write(final)

    def _write(self, final: bool = False) -> None:
        """Append the pending rows to the stream, opened with the first rows once the time step is known (2
        frames) or at the end."""
        if self.output is None:
            return
        if self._writer is None:
            if not self._pending or (self._evaluator is None and not final):
                return
            attributes = _attributes(self.results.apt_every, self.results.uncertainty_scale)
            self._writer = _writer(self.output, self.results.series, self._dt,
                                   self.temperature_K or self._kinetic[0], self.results.volume_A3,
                                   len(self._first), self.model_label, self._name, self.overwrite,
                                   self.temperature_K is None, attributes)
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


def _attributes(every: int | None, scale: float | None) -> dict:
    """Stream attributes of the APT evaluation: K, the interpolation, a committee's ``uncertainty_scale``."""
    out = {} if every is None else {"apt_every": int(every),
                                    "apt_interpolation": INTERPOLATION if every > 1 else "none"}
    return out if scale is None else {**out, "uncertainty_scale": float(scale)}


def _writer(path, series, dt, temperature, volume, natoms, model, source, overwrite, kinetic_mean, attributes):
    """A stream writer (e·Å/fs, fs); ``kinetic_mean``: the spectrum's temperature is the mean of the per-frame
    kinetic temperatures the file records, else the given ``temperature`` (K); ``attributes``: more stream
    attributes (:func:`_attributes`)."""
    from aptnn.io.stream_writer import StreamWriter

    extra = {"velocity_source": "file", "temperature_source": "kinetic-mean" if kinetic_mean else "given",
             **attributes}
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

