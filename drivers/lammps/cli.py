"""``aptnn-lammps``: run a LAMMPS input and stream dM/dt of its MD steps into an HDF5 file, with no dump."""
from __future__ import annotations

import os

import click

from aptnn.cli import options


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_script", metavar="IN.lammps", type=click.Path(exists=True, dir_okay=False))
@options.model()
@click.option("-o", "--output", default="run.dmdt.h5", show_default=True,
              help="Stream file (HDF5, dM/dt in e·Å/fs, time in fs); an existing one is continued when the input "
                   "restarts (read_restart) from a step the stream holds.")
@click.option("--var", "variables", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A LAMMPS index variable, as `lmp -var NAME VALUE` (repeat for more).")
@click.option("--estimator", default="increment", show_default=True, type=click.Choice(["increment", "velocity"]),
              help="increment: Σ½(P(n)+P(n+1))·Δr/Δt per step (the exact dipole change; robust under thermostats); "
                   "velocity: P(n)·v(n) with v(n) = (r(n+1) − r(n−1))/2Δt, velocity Verlet's full-step velocity "
                   "for NVE and Langevin dynamics.")
@click.option("--types", default=None, metavar="'O H …'",
              help="The element of each LAMMPS atom type, in type order (default: from the type masses; D and T "
                   "masses read as H).")
@click.option("--skip-runs", default=0, show_default=True, type=click.IntRange(min=0),
              help="Leading `run` commands not streamed (equilibration); a `run` inside a loop counts each time.")
@click.option("--temperature", type=float, default=None,
              help="K, stored for the spectrum (default: the mean kinetic temperature of the streamed steps, "
                   "LAMMPS' `compute temp`).")
@click.option("--log", default="log.lammps", show_default=True, help="LAMMPS log file ('none': no log).")
@click.option("--screen/--no-screen", default=True, show_default=True, help="LAMMPS' own output on stdout.")
@click.option("--lammps-arg", "lammps_args", multiple=True, metavar="ARG",
              help="A further LAMMPS command-line argument, e.g. --lammps-arg=-sf --lammps-arg=omp (repeat).")
@click.option("--worker", type=click.Choice(["process", "thread"]), default="process", show_default=True,
              help="Run the model in a child process (LAMMPS never shares the GIL with it) or in a thread.")
@click.option("--queue", "queue_size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Steps buffered for the model before LAMMPS is held back (memory: steps × atoms × 24 B).")
@click.option("--nice", "worker_nice", default=10, show_default=True,
              help="Niceness of the model worker: it uses the CPU LAMMPS leaves idle (0: same priority).")
@click.option("--status-every", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between status lines on stderr (steps streamed, written, queued); 0: none.")
@options.apt_every
@options.raman
@options.overwrite
@options.threads(help="torch CPU threads of the model worker (default: all cores).")
@options.device
@options.compile_model
def main(input_script, model, output, variables, estimator, types, skip_runs, temperature, log,
         screen, lammps_args, worker, queue_size, worker_nice, status_every, apt_every, apt_every_fs, overwrite,
         threads, device, compile_model, raman):
    """Run the LAMMPS input IN.lammps (unmodified) and stream dM/dt (e·Å/fs) of every MD step into an HDF5
    file: IR spectra from LAMMPS with no trajectory on disk (`aptnn spectrum run.dmdt.h5`); with a model with a
    PGT head also dα/dt (e·Å²/(V·fs)) for Raman spectra (`aptnn spectrum run.dmdt.h5 --raman`).

    Units come from the input's `units` command (real, metal, si, cgs, electron, micro, nano; lengths to Å, the
    time step to fs), the time step from LAMMPS, the species from the type masses (or `--types "O H"`, one
    element per type). Positions are unwrapped with LAMMPS' image flags. A changing
    cell (NPT) is recorded per frame (/volume, Å³) and the spectrum uses the mean volume.

    The model runs beside LAMMPS in a worker process with a bounded queue (--queue): LAMMPS waits only when the
    model falls behind. `minimize` commands are not streamed; `run` commands are joined into one trajectory.
    Under `mpirun -np N aptnn-lammps …` rank 0 gathers the atoms and runs the model.

    Exit status: 0 at the end of the input, or after SIGTERM/SIGINT (the run stops after the current step, the
    queued steps are written; a second signal drops them); 2 on an error (one line on stderr: LAMMPS' error
    with the input line, or aptnn's), after the stream was closed. A stream killed with SIGKILL stays readable;
    rerun the input from a restart file (`read_restart`) at or before the stream's last step with the same -o
    to continue it.
    """
    import functools

    from aptnn.cli.errors import fail, start
    from aptnn.drivers.ipi.cli import check_species, check_targets
    from aptnn.drivers.ipi.worker import ClientSettings, load_predictor
    from aptnn.drivers.lammps.session import LammpsStreamer
    from aptnn.errors import APTNNError
    from aptnn.model.checkpoint import resolve
    from aptnn.model.fingerprint import model_fingerprint

    start()
    streamer = None
    try:
        checkpoint = str(resolve(model))  # a wrong name fails now, before LAMMPS runs
        check_targets(raman, model, checkpoint)
        settings = ClientSettings(
            address="", output=os.path.abspath(output), symbols=[], estimator=estimator, temperature_K=temperature,
            resume=not overwrite, worker_nice=worker_nice, queue_size=queue_size, apt_every=apt_every,
            apt_every_fs=apt_every_fs, model_label=model_fingerprint(model), engine="LAMMPS", centre="total",
            # the source must not name the input file: a resumed stream must have the same source (the writer
            # refuses another), and a restart runs another input (read_restart instead of read_data and
            # velocity); the positions' fingerprints check that the restart continues this stream
            source="LAMMPS", record_temperature=temperature is None, raman=raman)
        cmdargs = ["-log", log] + ([] if screen else ["-screen", "none"]) + list(lammps_args)
        loader = functools.partial(load_predictor, model, device, threads, compile_model)
        elements = types.replace(",", " ").split() if types else None
        streamer = LammpsStreamer(input_script, settings, loader=loader, worker=worker, variables=variables,
                                  types=elements, skip_runs=skip_runs, cmdargs=cmdargs, status_every=status_every,
                                  check_species=lambda symbols: check_species(symbols, model, checkpoint,
                                                                              input_script))
        streamer.install_signal_handlers()
        steps = streamer.run()
        if streamer.rank == 0:
            stopped = " (stopped by a signal)" if streamer.stop_requested else ""
            from aptnn.io.stream import n_frames

            held = f" (the file holds {n_frames(output)})" if os.path.exists(output) else ""
            click.echo(f"aptnn-lammps: {steps} rows written to {output}{held}{stopped}", err=True)
    except APTNNError as err:
        if streamer is not None and streamer.rank != 0:
            err.quiet = True   # rank 0 says it
        fail(err, "aptnn-lammps")
    finally:
        if streamer is not None:
            streamer.close()


if __name__ == "__main__":
    main()
