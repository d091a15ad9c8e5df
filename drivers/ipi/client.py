"""The aptnn i-PI client: answers force requests at once, and a worker thread runs the APT model batched
over all beads of a step and streams dM/dt into the HDF5 stream file.

Bookkeeping: request ids rid_offset … rid_offset + nbeads − 1 are the beads of this force; a step is complete
when each has arrived once. Other ids (cloned estimator requests) are answered with zeros and ignored. A bead
requested twice before the step is complete means beads are missing, or a second client shares the socket:
that is an error, never a corrupted series.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import threading
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from aptnn import units
from aptnn.drivers.ipi.estimators import StepEstimator, minimum_image
from aptnn.drivers.ipi.protocol import Connection, Request, connect, header, parse_init
from aptnn.errors import APTNNError
from aptnn.io.stream import StreamWriter, read_state


class ClientError(APTNNError):
    pass


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
    worker_nice: int = 10               # niceness added to the worker thread (0: same priority as the MD)
    resume: bool = True
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    model_label: str = ""


def exact_sum_rule(apt: np.ndarray, charge: float = 0.0) -> np.ndarray:
    """Σ_i P_i = Q·I to float64 precision (i-PI checks BEC to 1e-8 per atom)."""
    apt = np.asarray(apt, dtype=np.float64)
    return apt - (apt.sum(0) - charge * np.eye(3)) / len(apt)


class Worker(threading.Thread):
    """Consumes complete steps, evaluates APTs batched over beads, writes stream rows."""

    def __init__(self, predictor, settings: ClientSettings):
        super().__init__(name="aptnn-ipi-worker", daemon=True)
        self.predictor, self.settings = predictor, settings
        self.queue: queue.Queue = queue.Queue(maxsize=settings.queue_size)
        self.error: BaseException | None = None
        self.writer: StreamWriter | None = None
        self.steps_written = 0
        self.estimator: StepEstimator | None = None  # built at the first step, after i-PI's INIT parameters
        self.label = ""
        self.step_offset = 0          # stream step = i-PI step of this connection + offset (restarts)
        self.restart: dict | None = None

    def _make_estimator(self) -> StepEstimator:
        s = self.settings
        if s.dt_fs is None:
            raise ClientError("the time step is unknown: give --dt (fs), --ipi-input, or dt in <parameters>")
        nbeads = 1 if s.contracted else s.nbeads
        estimator = "centroid-apt" if s.contracted else s.estimator
        self.label = "increment/apt-at-centroid" if s.contracted else s.estimator
        return StepEstimator(estimator, nbeads, s.dt_fs, s.groups)

    def run(self) -> None:
        if self.settings.worker_nice:  # the MD gets the CPU first; the worker uses what is left
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.settings.worker_nice)
            except (AttributeError, OSError):  # not Linux: leave the priority alone
                pass
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    break
                self._process(*item)
        except BaseException as err:  # reported to the main thread, which stops the client
            self.error = err
            while True:  # keep draining so the main thread never blocks on a full queue
                try:
                    if self.queue.get(timeout=0.1) is None:
                        break
                except queue.Empty:
                    continue
        finally:
            if self.writer is not None:
                self.writer.close()

    def _frames(self, step_positions: list[np.ndarray], cell: np.ndarray | None) -> list[Atoms]:
        pbc = cell is not None
        return [Atoms(self.settings.symbols, positions=p, cell=cell, pbc=pbc) for p in step_positions]

    def _process(self, step: int, positions: list[np.ndarray], cell: np.ndarray | None, apts) -> None:
        if self.estimator is None:
            self.estimator = self._make_estimator()
            if self._continue_from_file(positions, cell):
                return  # the restart re-sent the last step already in the file
        step += self.step_offset
        if self.estimator.estimator == "centroid-apt" and len(positions) > 1:
            positions = [np.mean(positions, axis=0)]
            apts = None
        if apts is None:
            apts, _ = self.predictor.predict_batch(self._frames(positions, cell), "i-PI", step)
        out = self.estimator.update(step, np.stack(positions), np.stack(apts), cell)
        if out is None:
            return
        time_fs, row = out
        if self.writer is None:
            self._open(cell)
        self.writer.append([time_fs], row[None])
        self._save_state()
        self.steps_written += 1

    STATE = ("steps", "positions", "apt", "cell")

    def _save_state(self) -> None:
        """The estimator's history (last two steps) into the file, so that a restart can continue it."""
        hist = self.estimator.history[-2:]
        steps = np.full(2, np.nan)
        steps[2 - len(hist):] = [h[0] for h in hist]
        self.writer.set_state("steps", steps)
        for k, (_, pos, apt, cell) in enumerate(hist, start=2 - len(hist)):
            self.writer.file["state/positions"][k] = pos
            self.writer.file["state/apt"][k] = apt
            self.writer.file["state/cell"][k] = cell if cell is not None else np.zeros((3, 3))

    def _continue_from_file(self, positions: list[np.ndarray], cell) -> bool:
        """On a resumed file: check continuity with the stored last step and restore the history.

        Returns True when the first step received is the stored last step again (to be skipped).
        """
        s = self.settings
        if not (s.resume and os.path.exists(s.output)):
            return False
        state = read_state(s.output)
        if "steps" not in state or np.isnan(state["steps"][-1]):
            raise ClientError(f"{s.output}: exists but holds no i-PI client state to continue; use --overwrite")
        steps, stored = state["steps"], state["positions"]
        if stored.shape[1:] != np.shape(np.stack(positions)):
            raise ClientError(f"{s.output}: stored beads/atoms {stored.shape[1:3]} differ from i-PI's "
                              f"{np.shape(positions)[:2]}; use --overwrite or another output")
        last = np.stack(positions)
        jump = np.abs(minimum_image(last - stored[-1], cell)).max()
        if jump > 0.5:
            raise ClientError(f"{s.output}: i-PI's first positions are {jump:.2f} Å away from the last step in the "
                              "file: not a continuation of that run (restart i-PI from its RESTART file, or use "
                              "--overwrite)")
        for k in range(2):
            if not np.isnan(steps[k]):
                c = state["cell"][k] if np.abs(state["cell"][k]).sum() else None
                self.estimator.history.append((int(steps[k]), stored[k], state["apt"][k], c))
        duplicate = jump < 1e-6
        self.step_offset = int(steps[-1]) + (0 if duplicate else 1)
        return duplicate

    def _open(self, cell) -> None:
        s = self.settings
        volume = float(abs(np.linalg.det(cell))) if cell is not None else None
        b, n = (1 if self.estimator.estimator == "centroid-apt" else s.nbeads), len(s.symbols)
        state = {"steps": (2,), "positions": (2, b, n, 3), "apt": (2, b, n, 3, 3), "cell": (2, 3, 3)}
        self.writer = StreamWriter(s.output, self.estimator.series, dt_fs=s.dt_fs, temperature_K=s.temperature_K,
                                   volume_A3=volume, natoms=n, estimator=self.label,
                                   model=s.model_label, source=f"i-PI {s.address}", resume=s.resume,
                                   overwrite=not s.resume, nbeads=s.nbeads, state=state)


class IPIClient:
    """Runs the socket loop; see the module docstring."""

    def __init__(self, predictor, settings: ClientSettings):
        self.predictor, self.settings = predictor, settings
        self.worker = Worker(predictor, settings)
        self.pending: dict[int, Request] = {}
        self.step = 0
        self.stop_requested = False
        self.requests = 0
        self.ignored = 0
        self.fatal: ClientError | None = None   # raised once no request is in flight

    # --- signals: finish the request in flight, then leave between requests -----------------------------
    def _on_signal(self, signum, frame) -> None:
        self.stop_requested = True

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    # --- bookkeeping -------------------------------------------------------------------------------------
    def _bead_of(self, rid: int) -> int | None:
        s = self.settings
        n = 1 if s.contracted else s.nbeads
        k = rid - s.rid_offset
        return k if 0 <= k < n else None

    def _accept(self, req: Request, apt: np.ndarray | None) -> None:
        s = self.settings
        bead = self._bead_of(req.rid)
        if bead is None:
            self.ignored += 1
            return
        if len(req.positions) != len(s.symbols):
            raise ClientError(f"i-PI sent {len(req.positions)} atoms, but the species list has {len(s.symbols)} "
                              f"(step {self.step}): the atom count changed or the wrong structure was given")
        if bead in self.pending:
            raise ClientError(f"bead {bead} requested twice before step {self.step} was complete (have beads "
                              f"{sorted(self.pending)} of {1 if s.contracted else s.nbeads}): beads are missing "
                              "or a second client is connected to the same i-PI socket")
        self.pending[bead] = (req, apt)
        if len(self.pending) == (1 if s.contracted else s.nbeads):
            beads = [self.pending[k] for k in sorted(self.pending)]
            positions = [r.positions * units.BOHR_TO_ANGSTROM for r, _ in beads]
            h = beads[0][0].cell * units.BOHR_TO_ANGSTROM
            cell = h if np.abs(h).sum() > 0 else None
            apts = [a for _, a in beads] if all(a is not None for _, a in beads) else None
            self.pending = {}
            self._put((self.step, positions, cell, apts))
            self.step += 1

    def _put(self, item) -> None:
        while True:
            self._check_worker()
            try:
                self.worker.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _check_worker(self) -> None:
        if self.worker.error is not None:
            raise ClientError(f"the APT worker failed: {self.worker.error}") from self.worker.error

    # --- replies -----------------------------------------------------------------------------------------
    def _reply(self, req: Request):
        """(energy, forces, virial, extras, apt or None) for one request, in atomic units."""
        s = self.settings
        zeros = np.zeros_like(req.positions)
        if not (s.bec or s.efield is not None) or self._bead_of(req.rid) is None:
            return 0.0, zeros, np.zeros((3, 3)), "", None
        cell = req.cell * units.BOHR_TO_ANGSTROM
        atoms = Atoms(s.symbols, positions=req.positions * units.BOHR_TO_ANGSTROM,
                      cell=cell if np.abs(cell).sum() else None, pbc=bool(np.abs(cell).sum()))
        apt = exact_sum_rule(self.predictor.predict_batch([atoms], "i-PI", self.step)[0][0])
        forces = zeros if s.efield is None else np.einsum("nij,i->nj", apt, s.efield)
        extras = ""
        if s.bec:  # i-PI: Z[3i+α, β] = ∂μ_β/∂R_iα = P_i[β, α]
            extras = json.dumps({"BEC": apt.transpose(0, 2, 1).reshape(-1, 3).tolist()})
        return 0.0, forces, np.zeros((3, 3)), extras, apt

    def run(self) -> int:
        """Serve i-PI until EXIT, a signal or an error; returns the number of steps written."""
        self.worker.start()
        conn = Connection(connect(self.settings.address))
        rid, have_data, reply = None, False, None
        try:
            while True:
                try:
                    msg = conn.recv_header()
                except ConnectionResetError:
                    break
                if msg == "STATUS":
                    if not have_data:  # nothing in flight: leaving now cannot hang i-PI
                        if self.fatal is not None:
                            raise self.fatal
                        self._check_worker()
                        if self.stop_requested and not self.pending:
                            break  # between steps: a restarted client continues with the next step
                    conn.send(header("HAVEDATA" if have_data else "NEEDINIT" if rid is None else "READY"))
                elif msg == "INIT":
                    rid, text = conn.recv_init()
                    self._apply_init(parse_init(text))
                elif msg == "POSDATA":
                    if rid is None:
                        raise ClientError("i-PI sent positions before INIT")
                    req = conn.recv_posdata(rid)
                    have_data = True
                    self.requests += 1
                    try:
                        reply = self._reply(req)
                        if self.fatal is None:
                            self._accept(req, reply[4])
                    except APTNNError as err:  # answer this request first, then stop
                        self.fatal = err if isinstance(err, ClientError) else ClientError(str(err))
                        reply = (0.0, np.zeros_like(req.positions), np.zeros((3, 3)), "", None)
                elif msg == "GETFORCE":
                    conn.send_forces(*reply[:4])
                    have_data, rid, reply = False, None, None  # NEEDINIT next: i-PI re-sends the request id
                elif msg == "EXIT":
                    break
                else:
                    raise ClientError(f"unexpected i-PI message {msg!r}")
        finally:
            conn.sock.close()
            self.worker.queue.put(None)
            self.worker.join()
        self._check_worker()
        return self.worker.steps_written

    def _apply_init(self, params: dict[str, str]) -> None:
        s = self.settings
        if "nbeads" in params:
            s.nbeads = int(float(params["nbeads"]))
        if "rid_offset" in params:
            s.rid_offset = int(float(params["rid_offset"]))
        if "dt" in params and s.dt_fs is None:
            s.dt_fs = float(params["dt"])  # fs
