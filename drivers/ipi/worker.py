"""The model side of ``aptnn-ipi``: complete steps → APTs (batched over beads) → dM/dt rows in the stream.

:class:`StepProcessor` does the work; :class:`ThreadWorker` runs it in a thread of the client process,
:class:`ProcessWorker` in a child process of its own (default of the command line), so that the socket loop
answering i-PI never shares the GIL with the model and i-PI is answered at once.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from aptnn.drivers.ipi.estimators import StepEstimator, minimum_image
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
    worker_nice: int = 10               # niceness added to the worker (0: same priority as the MD)
    resume: bool = True
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    model_label: str = ""


class StepProcessor:
    """Evaluates APTs of complete steps (batched over beads) and writes stream rows; runs in the worker.

    ``predictor`` is the model, or a zero-argument callable that loads it (called at the first step that
    needs the model, inside the worker process).
    """

    def __init__(self, predictor, settings: ClientSettings):
        self._predictor, self.settings = predictor, settings
        self.writer: StreamWriter | None = None
        self.steps_written = 0
        self.estimator: StepEstimator | None = None  # built at the first step, after i-PI's INIT parameters
        self.label = ""
        self.step_offset = 0          # stream step = i-PI step of this connection + offset (restarts)

    @property
    def predictor(self):
        if callable(self._predictor) and not hasattr(self._predictor, "predict_batch"):
            self._predictor = self._predictor()
        return self._predictor

    def _make_estimator(self) -> StepEstimator:
        s = self.settings
        if s.dt_fs is None:
            raise ClientError("the time step is unknown: give --dt (fs), --ipi-input, or dt in <parameters>")
        nbeads = 1 if s.contracted else s.nbeads
        estimator = "centroid-apt" if s.contracted else s.estimator
        self.label = "increment/apt-at-centroid" if s.contracted else s.estimator
        return StepEstimator(estimator, nbeads, s.dt_fs, s.groups)

    def consume(self, get) -> None:
        """Process items from ``get()`` until it returns None; the stream file is closed in any case.

        Items are steps ``(step, positions, cell, apts)`` or :class:`ClientSettings`: the client's settings as
        completed by i-PI's INIT parameters (a worker process holds a copy made before they arrived).
        """
        try:
            while True:
                item = get()
                if item is None:
                    break
                if isinstance(item, ClientSettings):
                    self.settings = item
                    continue
                self._process(*item)
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



class ThreadWorker(threading.Thread):
    """Runs a :class:`StepProcessor` in a thread; ``error`` holds what stopped it."""

    def __init__(self, predictor, settings: ClientSettings):
        super().__init__(name="aptnn-ipi-worker", daemon=True)
        self.processor = StepProcessor(predictor, settings)
        self.queue: queue.Queue = queue.Queue(maxsize=settings.queue_size)
        self.error: BaseException | None = None

    @property
    def steps_written(self) -> int:
        return self.processor.steps_written

    def run(self) -> None:
        set_niceness(self.processor.settings.worker_nice, threading.get_native_id())
        try:
            self.processor.consume(self.queue.get)
        except BaseException as err:  # reported to the main thread, which stops the client
            self.error = err
            drain(self.queue)

    def stop(self) -> None:
        self.queue.put(None)
        self.join()


class ProcessWorker:
    """Runs a :class:`StepProcessor` in a spawned child process that loads the model with ``loader``.

    The child ignores SIGINT/SIGTERM (the client finishes the step and sends the end marker) and leaves by
    itself when the client process dies, closing the stream file cleanly.
    """

    def __init__(self, loader, settings: ClientSettings):
        if loader is None:
            raise ValueError("a process worker needs a picklable loader for the model")
        ctx = multiprocessing.get_context("spawn")
        self.queue = ctx.Queue(maxsize=settings.queue_size)
        self.events = ctx.Queue()
        self.process = ctx.Process(target=_process_main, args=(loader, settings, self.queue, self.events),
                                   name="aptnn-ipi-worker", daemon=True)
        self._error: str | None = None
        self.steps_written = 0

    def start(self) -> None:
        self.process.start()

    def _poll(self) -> None:
        while True:
            try:
                kind, value = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "error":
                self._error = value
            else:
                self.steps_written = value

    @property
    def error(self) -> str | None:
        self._poll()
        if self._error is None and not self.process.is_alive() and self.process.exitcode not in (None, 0):
            self._error = f"the worker process died (exit code {self.process.exitcode})"
        return self._error

    def stop(self) -> None:
        while self.process.is_alive():
            try:
                self.queue.put(None, timeout=0.5)
                break
            except queue.Full:  # a failed worker drains the queue; a live one makes room
                continue
        self.process.join()
        self._poll()
        if self._error is None and self.process.exitcode != 0:
            self._error = f"the worker process died (exit code {self.process.exitcode})"


def _process_main(loader, settings: ClientSettings, items, events) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    set_niceness(settings.worker_nice, 0)
    parent = multiprocessing.parent_process()
    processor = StepProcessor(loader, settings)

    def get():
        while True:
            try:
                return items.get(timeout=1.0)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    return None  # the client is gone: close the file and leave
    try:
        processor.consume(get)
    except BaseException as err:
        events.put(("error", f"{type(err).__name__}: {err}" if not isinstance(err, APTNNError) else str(err)))
        drain(items)
    finally:
        events.put(("done", processor.steps_written))


def load_predictor(model: str, device: str = "cpu", threads: int | None = None, compile: bool = False):
    """The APT model for a worker (picklable through functools.partial); ``threads``: torch CPU threads;
    ``compile``: torch.compile it."""
    import torch

    from aptnn.predict import APTPredictor

    if threads:
        torch.set_num_threads(threads)
    return APTPredictor.load(model, device=device, compile=compile)


def set_niceness(nice: int, native_id: int) -> None:
    """Lower the priority of a thread (``native_id``) or this process (0): the MD gets the CPU first."""
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, native_id, nice)
        except (AttributeError, OSError):  # not Linux: leave the priority alone
            pass


def drain(q) -> None:
    """Keep taking items until the end marker, so the client never blocks on a full queue."""
    while True:
        try:
            if q.get(timeout=0.1) is None:
                return
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
