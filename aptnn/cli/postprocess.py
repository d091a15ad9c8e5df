"""``aptnn post`` (alias ``aptnn-post``): the APT model over finished MD trajectories → dM/dt streams → spectrum."""
from __future__ import annotations

import click

from aptnn.cli import options
from aptnn.cli.errors import run_command
from aptnn.cli.options import set_threads


def run_post(trajectories, model, output, spectrum_csv, plot, stride, groups, batch_size, device, fmt, lammps_units,
             timestep, types, temperature, max_lag, max_wavenumber, estimator, overwrite, threads, quiet,
             compile_model, distributed, shard_frames, apt_every, apt_every_fs, raman=None) -> None:
    """``aptnn post``: stream dM/dt of ``trajectories`` to HDF5, then (``spectrum_csv``/``plot``) the spectrum."""
    from pathlib import Path

    from aptnn.io.stream import is_stream_file
    from aptnn.io.trajectory import open_run
    from aptnn.post import PostSettings, run
    from aptnn.spectrum import compute_spectrum

    set_threads(threads)
    if output and len(trajectories) > 1:
        raise click.UsageError("-o names one output: give one trajectory, or let outputs be named TRAJ.dmdt.h5")
    batch = batch_size or (1 if device == "cpu" else 16)
    settings = PostSettings(stride=stride, batch_size=batch, temperature_K=temperature,
                            overwrite=overwrite, progress=not quiet, compile=compile_model,
                            apt_every=apt_every, apt_every_fs=apt_every_fs, raman=raman)

    def open_sources(path):
        return open_run(path, fmt, lammps_units, types.split() if types else None, timestep)

    streams = [p if is_stream_file(p) else (output or f"{p}.dmdt.h5") for p in trajectories]
    todo = [(p, out) for p, out in zip(trajectories, streams) if p != out]
    if distributed:
        from aptnn import distributed as dist
        from aptnn.sharded_post import run_sharded

        ctx = dist.init(device, timeout_s=7 * 86400)  # ranks wait at the end for the slowest one
        try:
            run_sharded(ctx, [p for p, _ in todo], [o for _, o in todo], open_sources, model, settings,
                        list(groups), device, estimator, shard_frames)
        finally:
            dist.shutdown()
        if not ctx.is_main:
            return
        for _, out in todo:
            click.echo(f"wrote {out}")
    else:
        for path, out in todo:
            run(open_sources(path), model, out, settings, list(groups), device, estimator)
            click.echo(f"wrote {out}")
    if spectrum_csv or plot:
        import warnings

        from aptnn.io.stream import n_frames, read_info
        from aptnn.spectrum import REQUIRED_WAVENUMBER
        from aptnn.spectrum_checks import time_step
        from aptnn.units import C_CM_PER_FS

        spec = compute_spectrum(streams, max_lag_fs=max_lag, temperature_K=temperature,
                                required_wavenumber=min(REQUIRED_WAVENUMBER, max_wavenumber))
        length, path = min(((n_frames(p) - 1) * time_step(p, read_info(p)), p) for p in streams)
        if length < max_lag:  # the spectrum cut the lag to the shortest run: say so
            warnings.warn(f"{path}: the run is {length:g} fs long, shorter than --max-lag {max_lag:g} fs: the "
                          f"correlation is cut to {length:g} fs (resolution "
                          f"~{1 / (C_CM_PER_FS * length):.0f} cm⁻¹)", UserWarning, stacklevel=1)
        csv = spectrum_csv or str(Path(plot).with_suffix(".csv"))
        spec.write_csv(csv)
        if plot:
            spec.plot(plot, title=", ".join(trajectories), max_wavenumber=max_wavenumber)
        click.echo(f"{spec.summary()}; wrote {csv}" + (f" and {plot}" if plot else ""))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("trajectories", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@options.model()
@click.option("-o", "--output", default=None,
              help="Stream file (HDF5, dM/dt in e·Å/fs, and dα/dt in e·Å²/(V·fs) with a PGT model); default "
                   "TRAJ.dmdt.h5 next to each trajectory.")
@click.option("--spectrum", "spectrum_csv", default=None, help="Also compute the IR spectrum into this CSV.")
@click.option("--plot", default=None, help="Spectrum plot PNG (with --spectrum, or alone).")
@click.option("--stride", default=1, show_default=True, type=click.IntRange(min=1), help="Evaluate every K-th frame.")
@click.option("--groups", multiple=True, help="Extra groups as MDAnalysis selections, NAME=SELECTION "
              "(e.g. 'water=name O H'); element groups are always written.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Frames per model call (default 1 on the CPU, where batching only costs memory; 16 on a GPU).")
@options.device
@click.option("--format", "fmt", default=None, type=click.Choice(["extxyz", "h5md", "lammpsdump", "ipi", "ase"]),
              help="Trajectory format (default: from the content — HDF5, LAMMPS dumps plain or gzip/bzip2/xz — and "
                   "the name); 'ase' forces ASE's reader.")
@options.units(options.LAMMPS_UNITS_HELP)
@options.timestep()
@click.option("--types", default=None, help="Elements of LAMMPS atom types 1, 2, …, e.g. 'O H' (dumps without an "
              "element column, H5MD species); checked against an element column when both are present.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="K, stored for the spectrum (default: kinetic temperature of the first frame).")
@click.option("--max-lag", default=2000.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Spectrum correlation length in fs (capped at the run length, with a warning).")
@click.option("--max-wavenumber", default=4500.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Upper limit of the spectrum plot (cm⁻¹); the sampling must represent min(4000, this).")
@click.option("--estimator", default="centroid", show_default=True, type=click.Choice(["centroid", "centroid-apt"]),
              help="PIMD centroid series: bead average of Σ P(r_k)·v_k, or the APT at the centroid.")
@options.apt_every
@options.raman
@options.overwrite
@options.threads()
@options.quiet
@options.compile_model
@click.option("--distributed", is_flag=True,
              help="Share the work among the processes of a torchrun/srun launch: trajectories and time slices "
                   "of them (shards) over ranks; rank 0 merges each trajectory's parts into its stream file.")
@click.option("--shard-frames", type=int, default=None,
              help="Output frames per shard with --distributed (default: all frames divided by the ranks).")
def post(**kwargs):
    """Run the APT model over finished MD trajectories and stream dM/dt to HDF5 (then the IR spectrum).

    TRAJECTORIES: LAMMPS dumps, H5MD, extxyz/ASE files, i-PI output (a `prefix.pos_0.xyz` file brings in
    every bead of a PIMD run, with `prefix.vel_<k>.xyz` velocities; --timestep is the i-PI step in fs);
    several files are independent trajectories, each written to its own stream file and averaged in the
    spectrum. A dM/dt stream file goes straight to the
    spectrum. Velocities come from the file, else from central differences of positions (every step needed).
    """
    run_command(lambda: run_post(**kwargs))


def post_alias() -> None:
    """Entry point of ``aptnn-post`` (and ``python -m aptnn.cli_post``): the command ``aptnn post`` on its own."""
    post()
