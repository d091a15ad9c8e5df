"""Command-line interface: ``aptnn train | predict | evaluate | models``.

Units everywhere: positions and cutoffs in Å, APTs in e with P[ξ,ζ] = ∂M_ξ/∂r_ζ (row = dipole component),
stored per atom as 9 numbers row-major in the extxyz array ``apt``.
"""
from __future__ import annotations

import json
import os
import sys

import click

from aptnn import __version__
from aptnn.errors import APTNNError


def _run(fn):
    """Turn aptnn's own errors into one clear line on stderr and exit status 2."""
    from aptnn.progress import setup_warnings

    setup_warnings()
    try:
        return fn()
    except APTNNError as err:
        if not getattr(err, "quiet", False):  # a distributed failure is printed by rank 0 only
            click.echo(f"aptnn: error: {err}", err=True)
        leave(2)


def leave(code: int) -> None:
    """Exit with ``code``; after a failed HDF5 write (disk full) without releasing HDF5, which may crash."""
    stream = sys.modules.get("aptnn.io.stream_writer")
    if stream is not None and stream.writer_failed():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _cell(values: tuple[float, ...] | None):
    return list(values) if values else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aptnn")
def main() -> None:
    """aptnn: learn atomic polar tensors (APTs) with an E(3)-equivariant network and use them for IR spectra.

    Conventions: positions in Å; APT P[ξ,ζ] = ∂M_ξ/∂r_ζ in units of e, 9 numbers per atom row-major in the
    extxyz per-atom array `apt`.
    """


@main.command()
@click.argument("train_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--valid", "valid_file", type=click.Path(exists=True, dir_okay=False),
              help="Validation frames; without it a seeded fraction of TRAIN_FILE is held out.")
@click.option("-o", "--output", default="model.pt", show_default=True, help="Checkpoint to write.")
@click.option("--epochs", default=400, show_default=True, type=click.IntRange(min=1), help="Maximum number of epochs.")
@click.option("--max-time", type=float, default=None,
              help="Stop after this many minutes (wall) with the best model.")
@click.option("--lr", default=0.01, show_default=True, help="Adam learning rate.")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1),
              help="Frames per optimiser step.")
@click.option("--patience", default=10, show_default=True, help="Plateau epochs before lr is multiplied by 0.1.")
@click.option("--early-stopping", default=40, show_default=True,
              help="Stop after this many epochs without improvement.")
@click.option("--valid-fraction", default=0.1, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fraction held out when --valid is absent.")
@click.option("--seed", default=0, show_default=True, help="Seeds torch and numpy (member k uses seed+k).")
@click.option("--committee", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Number of committee members to train.")
@click.option("--cutoff", default=6.0, show_default=True, type=click.FloatRange(0, 20, min_open=True),
              help="Neighbour cutoff in Å.")
@click.option("--channels", default=8, show_default=True, type=click.IntRange(1, 512),
              help="Multiplicity of each hidden irrep.")
@click.option("--layers", default=2, show_default=True, type=click.IntRange(1, 8), help="Message-passing layers.")
@click.option("--lmax", default=2, show_default=True, type=click.IntRange(0, 4),
              help="Maximum spherical-harmonic degree.")
@click.option("--no-sum-rule", is_flag=True, help="Do not enforce Σ_i P_i = Q·I (Q = frame charge, info 'charge').")
@click.option("--float64", is_flag=True, help="Train in double precision (default float32).")
@click.option("--cell", nargs=3, type=float, default=None, help="Box lengths (Å), anchor xyz.")
@click.option("--description", default="", help="Free text stored in the checkpoint (shown by `aptnn models`).")
@click.option("--log", "log_file", default=None, help="Learning-curve CSV (default: OUTPUT with .csv).")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--distributed", is_flag=True,
              help="Train with all processes of a torchrun/srun launch: one member data-parallel (each "
                   "--batch-size frames shared out over the ranks), or committee members spread over ranks.")
def train(train_file, valid_file, output, epochs, max_time, lr, batch_size, patience, early_stopping,
          valid_fraction, seed, committee, cutoff, channels, layers, lmax, no_sum_rule, float64, cell,
          description, log_file, threads, quiet, distributed):
    """Train an APT model on TRAIN_FILE (extxyz with per-atom `apt`, or anchor xyz; partial labels allowed)."""
    from pathlib import Path

    from aptnn import distributed as dist
    from aptnn.io import read_frames
    from aptnn.train import TrainSettings, train_committee

    def go():
        from aptnn.errors import OutputError

        _threads(threads)
        for out in (output, log_file or output):  # fail now, not after hours of training
            if not Path(out).resolve().parent.is_dir():
                raise OutputError("cannot write: its folder does not exist", out)
        frames = read_frames(train_file, cell=_cell(cell))
        valid = read_frames(valid_file, cell=_cell(cell)) if valid_file else None
        settings = TrainSettings(epochs=epochs, max_time=max_time * 60 if max_time else None, lr=lr,
                                 batch_size=batch_size, patience=patience, early_stopping=early_stopping,
                                 valid_fraction=valid_fraction, seed=seed,
                                 dtype="float64" if float64 else "float32")
        log = log_file or str(Path(output).with_suffix(".csv"))
        # a rank that fails exits at once; torchrun (or srun --kill-on-bad-exit) then stops the others
        ctx = dist.init() if distributed else dist.SERIAL
        try:
            metrics = train_committee(frames, valid, output, settings, committee, log, progress=not quiet,
                                      description=description, source=train_file,
                                      valid_source=valid_file or train_file, ctx=ctx, cutoff=cutoff,
                                      channels=channels, n_layers=layers, lmax=lmax, sum_rule=not no_sum_rule)
        finally:
            dist.shutdown()
        if not ctx.is_main:
            return
        for m in metrics:
            click.echo(f"member {m['member']}: best validation RMSE {m['valid_rmse_e']:.5f} e at epoch "
                       f"{m['best_epoch']} ({m['epochs_run']} epochs, {m['wall_s'] / 60:.1f} min)")
        click.echo(f"wrote {output} and learning curve {log}")

    _run(go)


@main.command()
@click.argument("model")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, help="extxyz to write, with per-atom `apt` (and `apt_std`), e.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1), help="Frames per model call.")
@click.option("--float64", is_flag=True, help="Evaluate in double precision.")
@click.option("--cell", nargs=3, type=float, default=None, help="Box lengths (Å) for files without a cell.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predict(model, input_file, output, batch_size, float64, cell, threads, quiet):
    """Predict APTs with MODEL (a checkpoint or a shipped model name, e.g. water-rpbe-d3) for INPUT_FILE."""
    from aptnn.io import read_frames, write_frames
    from aptnn.predict import APTPredictor

    def go():
        _threads(threads)
        predictor = APTPredictor.load(model, dtype="float64" if float64 else "float32")
        frames = read_frames(input_file, cell=_cell(cell))
        out = predictor.annotate(frames, batch_size=batch_size, source=input_file, progress=not quiet)
        write_frames(output, out)
        click.echo(f"wrote APTs (e) of {len(out)} frame(s) to {output}")

    _run(go)


@main.command()
@click.argument("model")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--plot", default=None, help="Write a parity plot PNG here.")
@click.option("--json", "json_file", default=None, help="Write the metrics (e) as JSON here.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1), help="Frames per model call.")
@click.option("--float64", is_flag=True, help="Evaluate in double precision.")
@click.option("--cell", nargs=3, type=float, default=None, help="Box lengths (Å) for files without a cell.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(model, files, plot, json_file, batch_size, float64, cell, threads, quiet):
    """Compare MODEL's APTs with the labels in FILES: component RMSE in e, per species and per irrep."""
    from pathlib import Path

    from aptnn.evaluate import check_labelled, format_metrics, metrics, parity_plot
    from aptnn.frames import APT_KEY
    from aptnn.io import read_frames
    from aptnn.predict import APTPredictor

    def go():
        _threads(threads)
        predictor = APTPredictor.load(model, dtype="float64" if float64 else "float32")
        inputs = [read_frames(path, cell=_cell(cell)) for path in files]
        for path, frames in zip(files, inputs):  # before any model call: a file without labels is an error
            check_labelled(frames, path)
        refs, preds = [], []
        for path, frames in zip(files, inputs):
            out = predictor.annotate(frames, batch_size=batch_size, source=path, progress=not quiet)
            refs += frames
            preds += [a.arrays[APT_KEY].reshape(-1, 3, 3) for a in out]
        m = metrics(refs, preds)
        click.echo(format_metrics(m))
        if json_file:
            with open(json_file, "w") as fh:
                json.dump(m, fh, indent=2)
        if plot:
            parity_plot(refs, preds, plot, title=f"{Path(model).name} on {', '.join(Path(f).name for f in files)}")
            click.echo(f"wrote parity plot {plot}")

    _run(go)


@main.command()
@click.argument("streams", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", default="spectrum.csv", show_default=True,
              help="CSV: wavenumber_cm-1, total (alpha_n_cm-1, or cross_section_cm2 without a volume), ± error, "
                   "decomposition columns.")
@click.option("--plot", default=None, help="Also write a PNG plot here.")
@click.option("--max-lag", default=2000.0, show_default=True,
              help="Correlation length in fs, > 0 (resolution ~1/(c·lag)); capped at the shortest file.")
@click.option("--window", "window_name", default="hann", show_default=True,
              type=click.Choice(["hann", "hamming", "blackman", "gaussian", "none"]),
              help="Window applied to the correlation function (w(0) = 1).")
@click.option("--qcf", default="harmonic", show_default=True,
              type=click.Choice(["harmonic", "standard", "schofield", "none"]),
              help="Quantum correction factor; harmonic reproduces the paper's eq. 2.")
@click.option("--temperature", type=float, default=None,
              help="K, > 0; overrides the temperature_K of every file (default: each file's own).")
@click.option("--volume", type=float, default=None,
              help="Å³, > 0; overrides the volume_A3 of every file (default: each file's own; files without "
                   "one give the cross-section per system in cm²; the two kinds cannot be mixed).")
@click.option("--series", multiple=True, help="Series averaged into the total (glob, e.g. 'bead*'); "
              "default total, else centroid.")
@click.option("--blocks", type=int, default=None,
              help="Time blocks per file for the ± standard error: ≥ 1, each of at least 2 frames "
                   "(default 8, fewer for files under 16 frames).")
@click.option("--biased", is_flag=True, help="Divide lag sums by N instead of N − lag.")
@click.option("--keep-mean", is_flag=True, help="Do not subtract the mean of dM/dt.")
@click.option("--pad", default=4, show_default=True,
              help="Zero-padding factor of the correlation (finer grid): whole number ≥ 1, "
                   "pad × lags ≤ 2²⁰ points.")
@click.option("--no-decompose", is_flag=True, help="Skip the group auto/cross columns.")
@click.option("--max-wavenumber", default=4500.0, show_default=True,
              help="Upper limit of the plot (cm⁻¹), > 0. The sampling must represent min(4000, this) cm⁻¹ "
                   "(1/(2c·Δt)): coarser streams are refused unless you lower it.")
def spectrum(streams, output, plot, max_lag, window_name, qcf, temperature, volume, series, blocks, biased,
             keep_mean, pad, no_decompose, max_wavenumber):
    """IR spectrum from dM/dt stream files (HDF5; several files = independent trajectories, averaged).

    α(ω)n(ω) = πβ/(3Vcε₀)·(1/2π)∫dt e^{-iωt}⟨Ṁ(0)·Ṁ(t)⟩ in cm⁻¹ (harmonic quantum correction), or the
    absorption cross-section in cm² for open boundaries. Each file keeps its own temperature and volume
    (the result is the pair-count-weighted average of the single-file spectra) unless --temperature or
    --volume is given. Prints peak positions and the integrated intensity.
    """
    from aptnn.spectrum import REQUIRED_WAVENUMBER, compute_spectrum
    from aptnn.spectrum_checks import positive_number

    def go():
        positive_number(max_wavenumber, "maximum wavenumber (--max-wavenumber)", "cm⁻¹")
        spec = compute_spectrum(list(streams), max_lag_fs=max_lag, window_name=window_name, qcf=qcf,
                                temperature_K=temperature, volume_A3=volume, series=list(series) or None,
                                decompose=not no_decompose, n_blocks=blocks, biased=biased,
                                remove_mean=not keep_mean, pad=pad,
                                required_wavenumber=min(REQUIRED_WAVENUMBER, max_wavenumber))
        spec.write_csv(output)
        if plot:
            spec.plot(plot, title=", ".join(streams), max_wavenumber=max_wavenumber)
        click.echo(f"{spec.summary()}; wrote {output}" + (f" and {plot}" if plot else ""))

    _run(go)


@main.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, help="Merged stream file (HDF5).")
def merge(parts, output):
    """Concatenate consecutive dM/dt stream files of one run (e.g. the shards of an interrupted
    `aptnn-post --distributed`, OUTPUT.parts/*.h5) into one stream file, in the order given."""
    from aptnn.io.stream import n_frames
    from aptnn.io.stream_repair import merge_streams

    _run(lambda: click.echo(f"wrote {merge_streams(list(parts), output)} ({n_frames(output)} frames)"))


@main.command()
def models():
    """List the models shipped inside the package."""
    from aptnn.model.checkpoint import load_checkpoint, shipped_models

    def go():
        for name in shipped_models():
            members, training = load_checkpoint(name)
            cfg = members[0].config
            click.echo(f"{name}: species {cfg.species}, cutoff {cfg.cutoff} Å, {len(members)} member(s), "
                       f"{training.get('description', '')}")

    _run(go)




@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("trajectories", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", default="water-rpbe-d3", show_default=True, help="Checkpoint path or shipped model name.")
@click.option("-o", "--output", default=None,
              help="Stream file (HDF5, dM/dt in e·Å/fs); default TRAJ.dmdt.h5 next to each trajectory.")
@click.option("--spectrum", "spectrum_csv", default=None, help="Also compute the IR spectrum into this CSV.")
@click.option("--plot", default=None, help="Spectrum plot PNG (with --spectrum, or alone).")
@click.option("--stride", default=1, show_default=True, type=click.IntRange(min=1), help="Evaluate every K-th frame.")
@click.option("--groups", multiple=True, help="Extra groups as MDAnalysis selections, NAME=SELECTION "
              "(e.g. 'water=name O H'); element groups are always written.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Frames per model call (default 1 on the CPU, where batching only costs memory; 16 on a GPU).")
@click.option("--device", default="cpu", show_default=True, help="torch device: cpu or cuda.")
@click.option("--format", "fmt", default=None, type=click.Choice(["extxyz", "h5md", "lammpsdump", "ipi", "ase"]),
              help="Trajectory format (default: from the content — HDF5, LAMMPS dumps plain or gzip/bzip2/xz — and "
                   "the name); 'ase' forces ASE's reader.")
@click.option("--units", "lammps_units", default=None,
              help="LAMMPS unit style of the run (lengths, times and --timestep, velocities): real (Å, fs, Å/fs), "
                   "metal (Å, ps, Å/ps), si (m, s, m/s), cgs (cm, s, cm/s), electron (bohr, fs, bohr/fs), micro "
                   "(µm, µs, µm/µs), nano (nm, ns, nm/ns). Required for LAMMPS dumps unless the dump says it "
                   "('dump_modify ID units yes') or the run's log.lammps (or write_data file) lies next to it; "
                   "for H5MD only datasets without a unit attribute (default real).")
@click.option("--timestep", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time between steps for files without times: fs, or the LAMMPS time unit for dumps.")
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
@click.option("--overwrite", is_flag=True, help="Start the output anew instead of continuing it.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the model: ~1.4× faster per frame on the CPU after ~10 s of compilation.")
@click.option("--distributed", is_flag=True,
              help="Share the work among the processes of a torchrun/srun launch: trajectories and time slices "
                   "of them (shards) over ranks; rank 0 merges each trajectory's parts into its stream file.")
@click.option("--shard-frames", type=int, default=None,
              help="Output frames per shard with --distributed (default: all frames divided by the ranks).")
def post(trajectories, model, output, spectrum_csv, plot, stride, groups, batch_size, device, fmt, lammps_units,
         timestep, types, temperature, max_lag, max_wavenumber, estimator, overwrite, threads, quiet, compile_model,
         distributed, shard_frames):
    """Run the APT model over finished MD trajectories and stream dM/dt to HDF5 (then the IR spectrum).

    TRAJECTORIES: LAMMPS dumps, H5MD, extxyz/ASE files, i-PI output (a `prefix.pos_0.xyz` file brings in
    every bead of a PIMD run, with `prefix.vel_<k>.xyz` velocities; --timestep is the i-PI step in fs);
    several files are independent trajectories, each written to its own stream file and averaged in the
    spectrum. A dM/dt stream file goes straight to the
    spectrum. Velocities come from the file, else from central differences of positions (every step needed).
    """
    from pathlib import Path

    from aptnn.io.stream import is_stream_file
    from aptnn.io.trajectory import open_run
    from aptnn.post import PostSettings, run
    from aptnn.spectrum import compute_spectrum

    def go():
        _threads(threads)
        if output and len(trajectories) > 1:
            raise click.UsageError("-o names one output: give one trajectory, or let outputs be named TRAJ.dmdt.h5")
        batch = batch_size or (1 if device == "cpu" else 16)
        settings = PostSettings(stride=stride, batch_size=batch, temperature_K=temperature,
                                overwrite=overwrite, progress=not quiet, compile=compile_model)
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

    _run(go)


from aptnn import cli_workflows  # noqa: E402,F401  (registers demo, label, select, learn)

if __name__ == "__main__":  # run the imported module's group, where the workflow commands registered
    from aptnn.cli import main as registered_main

    registered_main()
