"""Where the model side of ``aptnn-ipi`` runs.

:class:`~aptnn.drivers.ipi.processor.StepProcessor` does the work; :class:`ThreadWorker` runs it in a thread
of the client process, :class:`ProcessWorker` in a child process of its own (default of the command line),
so that the socket loop answering i-PI never shares the GIL with the model and i-PI is answered at once.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time

from aptnn.drivers.ipi.processor import ClientError, ClientSettings, StepProcessor  # noqa: F401 (re-exported)
from aptnn.errors import APTNNError
from aptnn.io.stream_writer import writer_failed


class WorkerStopped(BaseException):
    """Raised in the worker process's main thread when its client died or asked it to stop at once."""


STOP_SIGNAL = signal.SIGUSR1  # client → worker: close the stream file now and leave


class Interrupter:
    """Turns :data:`STOP_SIGNAL` into :class:`WorkerStopped` in the main thread, wherever it is blocked (a
    queue read, the model), except inside :meth:`protect` blocks (an HDF5 row and its state are written
    whole), where it is raised at the end of the block. Raises once."""

    def __init__(self):
        self.depth, self.pending, self.fired = 0, False, False

    def handler(self, signum, frame) -> None:
        if self.fired:
            return
        if self.depth:
            self.pending = True
            return
        self.fired = True
        raise WorkerStopped()

    @contextlib.contextmanager
    def protect(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending and not self.fired:
                self.fired = True
                raise WorkerStopped()


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
        if self.ident is None:  # never started
            return
        while self.is_alive():
            try:
                self.queue.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self.join()

    def abort(self) -> None:
        """Stop after the step being processed; queued steps are dropped."""
        self.processor.aborted = True


class ProcessWorker:
    """Runs a :class:`StepProcessor` in a spawned child process that loads the model with ``loader``.

    The child ignores SIGINT/SIGTERM (the client finishes the step and sends the end marker). It leaves,
    closing the stream file cleanly, within a second of the client process's death whatever it is blocked
    in (a watchdog thread interrupts it with :data:`STOP_SIGNAL`), or at once on :meth:`abort`.
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
        self.aborted = False

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

    def abort(self) -> None:
        """Make the worker close the stream file and leave now (queued steps are dropped)."""
        self.aborted = True
        if self.process.pid is not None and self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, STOP_SIGNAL)

    def stop(self, grace_s: float = 30.0) -> None:
        """Send the end marker and wait for the worker to process the queued steps; after :meth:`abort` it
        is killed if it has not left within ``grace_s`` seconds."""
        if self.process.pid is None:  # never started
            return
        while self.process.is_alive():
            try:
                self.queue.put(None, timeout=0.5)
                break
            except queue.Full:  # a failed worker drains the queue; a live one makes room
                continue
        deadline = None
        while self.process.is_alive():
            self.process.join(0.5)
            if self.aborted:
                deadline = deadline or time.monotonic() + grace_s
                if time.monotonic() > deadline:
                    self.process.kill()
        self.process.join()
        self._poll()
        if self._error is None and self.process.exitcode != 0:
            self._error = f"the worker process died (exit code {self.process.exitcode})"


def _watch_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """Worker-side watchdog thread: when the client process is gone (this process re-parented), interrupt
    the main thread with :data:`STOP_SIGNAL`, wherever it is blocked (e.g. reading a message the dying
    client left half-written in the queue's pipe)."""
    while os.getppid() == parent_pid:
        time.sleep(interval_s)
    signal.pthread_kill(threading.main_thread().ident, STOP_SIGNAL)


def _process_main(loader, settings: ClientSettings, items, events) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    interrupter = Interrupter()
    parent = multiprocessing.parent_process()
    processor = StepProcessor(loader, settings, protect=interrupter.protect)
    try:
        signal.signal(STOP_SIGNAL, interrupter.handler)
        if parent is not None:
            threading.Thread(target=_watch_parent, args=(parent.pid,), name="aptnn-ipi-watchdog",
                             daemon=True).start()
        set_niceness(settings.worker_nice, 0)
        last = [time.monotonic()]

        def get():  # reports the steps written about once a second, for the client's status line
            if time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                events.put(("progress", processor.steps_written))
            return items.get()

        try:
            processor.consume(get)
        except WorkerStopped:
            raise
        except BaseException as err:
            events.put(("error", f"{type(err).__name__}: {err}" if not isinstance(err, APTNNError) else str(err)))
            drain(items)  # until the end marker (or STOP_SIGNAL), so the client never blocks on a full queue
        events.put(("done", processor.steps_written))
        if writer_failed():  # HDF5 may crash while releasing a file whose write failed: leave without that
            events.close()
            events.join_thread()
            os._exit(0)
    except WorkerStopped:  # the stream file is closed (consume's finally): leave without waiting for anything
        if parent is not None and os.getppid() == parent.pid:  # aborted by a live client: report the count
            events.put(("done", processor.steps_written))
            events.close()
            events.join_thread()
        sys.stderr.flush()
        os._exit(0)


def load_predictor(model: str, device: str = "cpu", threads: int | None = None, compile: bool = False):
    """The APT model for a worker (picklable through functools.partial); ``threads``: torch CPU threads;
    ``compile``: torch.compile it."""
    import torch

    from aptnn.predict import APTPredictor
    from aptnn.runtime import tune_malloc

    tune_malloc()  # the spawned worker is an entry point of its own
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
