"""The aptnn i-PI client: answers force requests at once, and a worker (a child process, or a thread) runs
the APT model batched over all beads of a step and streams dM/dt into the HDF5 stream file.

Bookkeeping: request ids rid_offset … rid_offset + nbeads − 1 are the beads of this force; a step is complete
when each has arrived once. Other ids (cloned estimator requests) are answered with zeros and ignored. A bead
requested twice before the step is complete means beads are missing, or a second client shares the socket:
that is an error, never a corrupted series.
"""
from __future__ import annotations

import json
import queue
import signal
import sys
import time

import numpy as np
from ase import Atoms

from aptnn import units
from aptnn.drivers.ipi.protocol import Connection, Interrupted, Request, connect, header, parse_init
from aptnn.drivers.ipi.worker import ClientError, ClientSettings, ProcessWorker, ThreadWorker
from aptnn.errors import APTNNError


def exact_sum_rule(apt: np.ndarray, charge: float = 0.0) -> np.ndarray:
    """Σ_i P_i = Q·I to float64 precision (i-PI checks BEC to 1e-8 per atom)."""
    apt = np.asarray(apt, dtype=np.float64)
    return apt - (apt.sum(0) - charge * np.eye(3)) / len(apt)


class IPIClient:
    """Runs the socket loop; see the module docstring."""

    def __init__(self, predictor, settings: ClientSettings, worker: str = "thread", loader=None,
                 connect_timeout: float = 60.0, status_every: float = 0.0):
        """``predictor`` answers BEC/field requests in this process (None: loaded by ``loader`` when needed);
        ``worker`` "thread" runs the model in a thread of this process, "process" in a child process that
        loads it with ``loader`` (a picklable zero-argument callable), so the socket loop never waits for
        the GIL. ``connect_timeout``: seconds to wait for the i-PI server; ``status_every``: seconds between
        status lines on stderr (0: none)."""
        self.settings, self.connect_timeout = settings, connect_timeout
        self.status_every, self._last_status = status_every, time.monotonic()
        self._predictor, self.loader = predictor, loader
        if worker == "process":
            self.worker = ProcessWorker(loader, settings)
        elif worker == "thread":
            self.worker = ThreadWorker(predictor if predictor is not None else loader, settings)
        else:
            raise ValueError(f"worker must be 'thread' or 'process', not {worker!r}")
        self.pending: dict[int, Request] = {}
        self.step = 0
        self.stop_requested = False    # first SIGTERM/SIGINT: leave between steps
        self.abort_requested = False   # second one: leave now, the worker drops its queue
        self.have_data = False         # a request is in flight (received, not yet answered)
        self.connected = False
        self.requests = 0
        self.ignored = 0
        self.fatal: ClientError | None = None   # raised once no request is in flight

    # --- signals: finish the request in flight, then leave between requests -----------------------------
    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested:  # asked twice: do not wait for i-PI or the queued steps
            self.abort_requested = True
            self.worker.abort()
        self.stop_requested = True

    def _give_up(self, idle: bool) -> bool:
        """Asked while i-PI sends nothing: leave on a stop request when no request or step is open (i-PI
        sees the socket close and re-queues whatever it sends next), or at once on an abort."""
        return self.abort_requested or (idle and self.stop_requested and not self.have_data and not self.pending)

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
            if self.step == 0:  # the settings as completed by INIT, for a worker in another process
                self._put(self.settings)
            self._put((self.step, positions, cell, apts))
            self.step += 1

    @property
    def predictor(self):
        if self._predictor is None:
            self._predictor = self.loader()
        return self._predictor

    def _put(self, item) -> None:
        while True:
            self._check_worker()
            if self.abort_requested:
                raise Interrupted()
            try:
                self.worker.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _check_worker(self) -> None:
        error = self.worker.error
        if error is not None:
            raise ClientError(f"the APT worker failed: {error}") from (error if isinstance(error, BaseException)
                                                                       else None)

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
        """Connect, then serve i-PI until EXIT, a signal or an error; returns the number of steps written.

        The worker starts only once i-PI is there; on every way out it is stopped (after the queued steps;
        at once after a second signal) before this returns or raises.
        """
        try:
            sock = connect(self.settings.address, self.connect_timeout, give_up=lambda: self.stop_requested)
        except Interrupted:
            return 0
        self.connected = True
        conn = Connection(sock, give_up=self._give_up)
        reply, rid = None, None
        try:
            self.worker.start()
            while True:
                try:
                    msg = conn.recv_header()
                except (ConnectionResetError, Interrupted):
                    break
                if msg == "STATUS":
                    self._status()
                    if not self.have_data:  # nothing in flight: leaving now cannot hang i-PI
                        if self.fatal is not None:
                            raise self.fatal
                        self._check_worker()
                        if self.stop_requested and not self.pending:
                            break  # between steps: a restarted client continues with the next step
                    conn.send(header("HAVEDATA" if self.have_data else "NEEDINIT" if rid is None else "READY"))
                elif msg == "INIT":
                    rid, text = conn.recv_init()
                    self._apply_init(parse_init(text))
                elif msg == "POSDATA":
                    if rid is None:
                        raise ClientError("i-PI sent positions before INIT")
                    req = conn.recv_posdata(rid)
                    self.have_data = True
                    self.requests += 1
                    reply = self._answer(req)
                elif msg == "GETFORCE":
                    conn.send_forces(*reply[:4])
                    self.have_data, rid, reply = False, None, None  # NEEDINIT next: i-PI re-sends the request id
                elif msg == "EXIT":
                    break
                else:
                    raise ClientError(f"unexpected i-PI message {msg!r}")
        except Interrupted:  # an abort while waiting for the worker
            pass
        finally:
            sock.close()
            backlog = self.backlog()
            if self.status_every and backlog > 0 and not self.abort_requested:
                print(f"aptnn-ipi: i-PI is done with this client; writing the {backlog} queued step(s)",
                      file=sys.stderr, flush=True)
            self.worker.stop()
        self._check_worker()
        return self.worker.steps_written

    def backlog(self) -> int:
        """Steps received from i-PI but not yet written by the worker (the first step of a stream or restart
        writes no row, hence the approximate count)."""
        self._check_worker_quietly()
        return max(0, self.step - 1 - self.worker.steps_written)

    def _check_worker_quietly(self) -> None:
        try:
            self.worker.error  # noqa: B018 — polls the worker's events (steps written)
        except Exception:  # noqa: BLE001 — reported by _check_worker
            pass

    def _status(self) -> None:
        """A status line every ``status_every`` seconds: steps received, written, queued."""
        now = time.monotonic()
        if not self.status_every or now - self._last_status < self.status_every:
            return
        self._last_status = now
        print(f"aptnn-ipi: {self.step} steps received, {self.worker.steps_written} written, {self.backlog()} queued "
              f"({self.requests} requests)", file=sys.stderr, flush=True)

    def _answer(self, req: Request):
        """The reply to one request; a failure is answered with zeros first and raised at the next STATUS."""
        try:
            reply = self._reply(req)
            if self.fatal is None:
                self._accept(req, reply[4])
            return reply
        except APTNNError as err:
            self.fatal = err if isinstance(err, ClientError) else ClientError(str(err))
            return 0.0, np.zeros_like(req.positions), np.zeros((3, 3)), "", None

    def _apply_init(self, params: dict[str, str]) -> None:
        s = self.settings
        if "nbeads" in params:
            s.nbeads = int(float(params["nbeads"]))
        if "rid_offset" in params:
            s.rid_offset = int(float(params["rid_offset"]))
        if "dt" in params and s.dt_fs is None:
            s.dt_fs = float(params["dt"])  # fs
