"""The model side of ``aptnn-ipi``: complete steps → APTs (batched over beads) → dM/dt rows in the stream (and
dα/dt rows, /dAdt, when the model has a PGT head: see :func:`aptnn.estimators.response`).

Each row of the stream records (``/check``) the fingerprint of the positions of the step that completed it
(:func:`aptnn.io.stream.frame_check`, Å): the step s1 of an ``increment`` row at (s0 + s1)/2·Δt, the step s2
of a ``velocity`` row at s1·Δt. ``state/`` keeps the last two steps (positions Å, APTs e, cells Å) and, for
``velocity``, the positions of the last ``queue_size + 2`` steps. A resumed stream is continued at the step
i-PI restarts from (see :mod:`aptnn.drivers.ipi.resume`).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from aptnn.errors import ClientError  # noqa: F401 (defined in aptnn.errors, re-exported)
from aptnn.estimators import StepEstimator, committee_size, split_rows
from aptnn.graph import check_geometry
from aptnn.interpolation import INTERPOLATION, NodeEvaluator, every_from
from aptnn.io.stream import CHECK_SIZE, frame_check
from aptnn.io.stream_writer import StreamWriter


@dataclass
class ClientSettings:
    """Everything the client needs; lengths Å, time fs, temperature K, field in atomic units."""

    address: str
    output: str
    symbols: list[str]
    nbeads: int = 1
    rid_offset: int = 0
    dt_fs: float | None = None
    temperature_K: float | None = None
    estimator: str = "increment"
    contracted: bool = False            # <force nbeads='1'>: i-PI sends the centroid only
    bec: bool = False                   # return i-PI's BEC extras (Born charges, e)
    efield: np.ndarray | None = None    # static field (a.u.): forces F_i = P_iᵀ·E
    queue_size: int = 64                # steps waiting for the worker before i-PI is held back
    worker_nice: int = 10               # niceness added to the worker (0: same priority as the MD)
    resume: bool = True
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    model_label: str = ""
    apt_every: int | None = None        # the network every K steps, APTs interpolated between (None: from …_fs)
    apt_every_fs: float | None = None   # … at least every this many fs (both None: every step)
    engine: str = "i-PI"                # the MD engine, in messages
    centre: str = "centroid"            # the name of the centre series ("total" for classical MD engines)
    source: str | None = None           # the stream's source attribute (default: i-PI <address>)
    record_volume: bool = False         # a changing cell (NPT): /volume per row, volume_A3 their mean
    record_temperature: bool = False    # steps carry the kinetic temperature (K): /kinetic_temperature per row
    raman: bool | None = None           # also dα/dt (/dAdt, Raman) from the PGT head; None: if the model has one


class StepProcessor:
    """Evaluates APTs of complete steps (batched over beads) and writes stream rows; runs in the worker.

    ``predictor`` is the model, or a zero-argument callable that loads it (called at the first step that
    needs the model, inside the worker process). ``protect``: a context in which a stop request waits (a row
    and its state are written whole).
    """

    def __init__(self, predictor, settings: ClientSettings, protect=contextlib.nullcontext):
        self._predictor, self.settings = predictor, settings
        self.protect = protect
        self.aborted = False    # set from another thread: stop at the next item
        self.writer: StreamWriter | None = None
        self.steps_written = 0
        self.estimator: StepEstimator | None = None  # built at the first step, after i-PI's INIT parameters
        self.label = ""
        self.step_offset = 0          # stream step = step of this connection + offset (restarts)
        self.ring_last = -1           # newest step whose positions are in state/ring_* (velocity)
        self.evaluator: NodeEvaluator | None = None   # APTs at the nodes, interpolated between (per connection)
        self.every = 1                # K: the network every K steps
        self.with_pgt = False         # rows carry dα/dt (response rows (…, N, 9, 3), aptnn.estimators.response)

    @property
    def predictor(self):
        if callable(self._predictor) and not hasattr(self._predictor, "predict_batch"):
            self._predictor = self._predictor()
        return self._predictor

    def _make_estimator(self) -> StepEstimator:
        s = self.settings
        if s.dt_fs is None:
            raise ClientError("the time step is unknown: give --dt (fs), --ipi-input, or dt in <parameters>")
        members = committee_size(self.predictor)
        streams_pgt = getattr(self.predictor, "streams_pgt", None)   # any object with predict_batch is a model
        self.with_pgt = bool(streams_pgt(s.raman)) if streams_pgt else bool(s.raman)
        estimator = StepEstimator(s.estimator, s.nbeads, s.dt_fs, s.groups, default_base="increment",
                                  members=members, centre=s.centre)
        if s.contracted:  # i-PI sends the centroid alone
            estimator = StepEstimator(f"{estimator.base}/apt-at-centroid", s.nbeads, s.dt_fs, s.groups,
                                      members=members)
        self.label = estimator.label
        self.every = every_from(s.dt_fs, s.apt_every, s.apt_every_fs)
        return estimator

    def consume(self, get) -> None:
        """Process items from ``get()`` until it returns None; the stream file is closed in any case.

        Items are steps ``(step, positions, cell, apts)`` (``apts`` None: evaluated here), with the kinetic
        temperature (K) as a fifth element when ``record_temperature``, or :class:`ClientSettings`: the
        client's settings as completed by i-PI's INIT parameters (a worker process holds a copy made before
        they arrived).
        """
        try:
            while not self.aborted:
                item = get()
                if item is None:
                    break
                if isinstance(item, ClientSettings):
                    self.settings = item
                    continue
                self._process(*item)
            if not self.aborted and self.evaluator is not None:  # the run ended: the steps held back
                for step, (pos, cell, _, _, temperature), apt in self.evaluator.finish():
                    self._emit(step, pos, cell, apt, temperature)
        finally:
            if self.writer is not None:
                with self.protect():
                    self.writer.close()

    def _frames(self, step_positions, cell: np.ndarray | None) -> list[Atoms]:
        pbc = cell is not None
        return [Atoms(self.settings.symbols, positions=p, cell=cell, pbc=pbc) for p in step_positions]

    def row_step(self, time_fs: float) -> int:
        """The step that completed the row at ``time_fs`` (see the module docstring)."""
        t = time_fs / self.settings.dt_fs
        return int(round(t + 0.5)) if self.estimator.base != "velocity" else int(round(t)) + 1

    def _process(self, step: int, positions: list[np.ndarray], cell: np.ndarray | None, apts,
                 temperature_K: float | None = None) -> None:
        if self.estimator is None:
            self.estimator = self._make_estimator()
        pos = self.estimator.geometries(np.stack(positions), cell)
        if len(pos) != len(positions):  # the APT at the centroid: evaluated here, not i-PI's (bead) replies
            positions, apts = list(pos), None
        if step == 0 and self.settings.resume and os.path.exists(self.settings.output):
            from aptnn.drivers.ipi.resume import continue_stream

            continue_stream(self, pos, cell)  # opens the writer; sets step_offset and the estimator history
        step += self.step_offset
        if self.estimator.members > 1 or self.with_pgt:
            apts = None   # the client's replies hold the committee-mean APT: members and PGTs are evaluated here
        if self.evaluator is None:
            self.evaluator = NodeEvaluator(self.every, self._evaluate)
        if self.every > 1:  # interpolated steps never meet the model's checks
            for atoms in self._frames(positions, cell):
                check_geometry(atoms, self.settings.engine, step)
        payload = (pos, cell, positions, apts, temperature_K)
        for ready, (r, c, _, _, temperature), apt in self.evaluator.feed([(step, payload)]):
            self._emit(ready, r, c, apt, temperature)

    def _evaluate(self, payloads: list, step: int) -> list[np.ndarray]:
        """APTs (e) of steps (geometries, cell, positions to evaluate, APTs the client computed or None):
        (B, N, 3, 3), or (M, B, N, 3, 3) for a committee of M members; response rows (…, N, 9, 3) when the
        stream carries dα/dt."""
        out = []
        engine = self.settings.engine
        pgt = {"with_pgt": True} if self.with_pgt else {}
        for k, (_, cell, positions, apts, _) in enumerate(payloads):
            if apts is not None:
                out.append(np.stack(apts))
                continue
            frames = self._frames(positions, cell)
            if self.estimator.members > 1:
                out.append(np.stack(self.predictor.predict_members(frames, engine, step + k, **pgt), 1))
            else:
                out.append(np.stack(self.predictor.predict_batch(frames, engine, step + k, **pgt)[0]))
        return out

    def _emit(self, step: int, pos: np.ndarray, cell: np.ndarray | None, apt: np.ndarray,
              temperature_K: float | None = None) -> None:
        """The estimator's row of step ``step`` (positions ``pos`` Å, APTs ``apt`` e; the cell's volume and the
        kinetic temperature ``temperature_K`` where the stream records them) into the stream."""
        out = self.estimator.update(step, pos, apt, cell)
        if out is None and self.writer is None:
            return
        if self.writer is None:
            self._open(cell)
        with self.protect():
            if out is not None:
                volume = [abs(np.linalg.det(cell))] if self.writer.volumes and cell is not None else None
                dmdt, dadt = split_rows(out[1][None])
                self.writer.append([out[0]], dmdt, check=frame_check(pos)[None], volume_A3=volume,
                                   kinetic_K=None if temperature_K is None else [temperature_K], dadt=dadt)
                self.steps_written += 1
            self._save_state()

    def _save_state(self) -> None:
        """The estimator's last two steps (and, for ``velocity``, new positions in the ring) into the file."""
        f = self.writer.file
        hist = self.estimator.history[-2:]
        steps = np.full(2, np.nan)
        steps[2 - len(hist):] = [h[0] for h in hist]
        self.writer.set_state("steps", steps)
        for k, (_, pos, apt, cell) in enumerate(hist, start=2 - len(hist)):
            f["state/positions"][k] = pos
            f["state/apt"][k] = apt
            f["state/cell"][k] = cell if cell is not None else np.zeros((3, 3))
        if "state/ring_steps" not in f:
            return
        size = f["state/ring_steps"].shape[0]
        for s, pos, _, cell in self.estimator.history:
            if s > self.ring_last:
                f["state/ring_steps"][s % size] = s
                f["state/ring_positions"][s % size] = pos
                f["state/ring_cells"][s % size] = cell if cell is not None else np.zeros((3, 3))
                self.ring_last = s

    def _open(self, cell) -> None:
        s = self.settings
        volume = float(abs(np.linalg.det(cell))) if cell is not None else None
        b, n = (1 if self.estimator.centroid_only else s.nbeads), len(s.symbols)
        m = (self.estimator.members,) if self.estimator.members > 1 else ()
        c = 9 if self.with_pgt else 3   # response rows per atom: APT, or APT and the PGT's Voigt rows
        state = {"steps": (2,), "positions": (2, b, n, 3), "apt": (2,) + m + (b, n, c, 3), "cell": (2, 3, 3)}
        if self.estimator.base == "velocity":
            ring = s.queue_size + 2
            state.update(ring_steps=(ring,), ring_positions=(ring, b, n, 3), ring_cells=(ring, 3, 3))
        self.writer = StreamWriter(s.output, self.estimator.series, dt_fs=s.dt_fs, temperature_K=s.temperature_K,
                                   volume_A3=volume, natoms=n, estimator=self.label,
                                   model=s.model_label, source=s.source or f"i-PI {s.address}", resume=s.resume,
                                   overwrite=not s.resume, nbeads=s.nbeads, state=state, checks=CHECK_SIZE,
                                   volumes=s.record_volume and cell is not None, kinetic=s.record_temperature,
                                   polarizability=self.with_pgt, **self._attributes())

    def _attributes(self) -> dict:
        """Stream attributes of the APT evaluation: K and the interpolation, the committee's calibration."""
        every = self.every
        extra = {"apt_every": every, "apt_interpolation": INTERPOLATION if every > 1 else "none"}
        if self.settings.record_temperature and self.settings.temperature_K is None:
            extra["temperature_source"] = "kinetic-mean"   # the spectrum uses the mean of /kinetic_temperature
        scale = getattr(self.predictor, "uncertainty_scale", None)
        if self.estimator.members > 1 and scale is not None:
            extra["uncertainty_scale"] = float(scale)
        return extra
