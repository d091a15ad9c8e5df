"""``aptnn train | predict | evaluate | models``: training, applying and checking APT models.

Units everywhere: positions and cutoffs in Å, APTs in e with P[ξ,ζ] = ∂M_ξ/∂r_ζ (row = dipole component),
stored per atom as 9 numbers row-major in the extxyz array ``apt``; ``aptnn train --targets pgt`` learns
polarisability-gradient tensors G[ξ,η,ζ] = ∂α_ξη/∂r_ζ in e·Å/V (27 numbers row-major in ``pgt``).
"""
from __future__ import annotations

import json

import click

from aptnn.cli import options
from aptnn.cli.errors import run_command
from aptnn.cli.options import cell_list, set_threads
from aptnn.defaults import COMMITTEE_KINDS, DEFAULT_CHANNELS, DEFAULT_COMMITTEE_KIND

#: the targets ``aptnn train --targets`` accepts: (extxyz array, what it is, units of its RMSE)
TARGETS = {"apt": ("apt", "APT", "e"), "pgt": ("pgt", "PGT", "e·Å/V")}


def parse_targets(value) -> list[str]:
    """``--targets`` ("apt", "pgt", "apt,pgt", or a list of names) as a list in canonical order; an
    :class:`~aptnn.errors.InputError` for an unknown, repeated or missing name."""
    from aptnn.errors import InputError

    names = [t.strip().lower() for t in (value.split(",") if isinstance(value, str) else value)]
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        raise InputError(f"--targets {','.join(names) or '(empty)'}: unknown target "
                         f"{unknown[0] if unknown else '(none)'!r}; choose apt, pgt or apt,pgt")
    if len(set(names)) != len(names):
        raise InputError(f"--targets {','.join(names)}: a target is named twice")
    return [t for t in TARGETS if t in names]


def _targets_option(ctx, param, value):
    from aptnn.errors import InputError

    try:
        return parse_targets(value)
    except InputError as err:
        raise click.BadParameter(str(err).removeprefix("--targets ")) from None


def check_target_labels(frames, targets, path: str) -> None:
    """An :class:`~aptnn.errors.InputError` naming ``path`` when no frame carries a finite label of a target."""
    import numpy as np

    from aptnn.errors import InputError

    def labelled(atoms, key: str) -> bool:
        return key in atoms.arrays and bool(np.isfinite(np.asarray(atoms.arrays[key], dtype=float)
                                                        .reshape(len(atoms), -1)).all(axis=1).any())

    for t in targets:
        key, name, units = TARGETS[t]
        if not any(labelled(a, key) for a in frames):
            how = "aptnn label --pgt (or --pgt-only)" if t == "pgt" else "aptnn label"
            raise InputError(f"--targets {','.join(targets)}: no frame has '{key}' labels ({name}s, {units}); "
                             f"label them with `{how}` or leave '{t}' out of --targets", path)


def _metric_line(m: dict, targets: list[str]) -> str:
    """Best validation RMSE of every target, with units (the metrics of :func:`aptnn.train.fit`)."""
    parts = []
    for t in targets:
        key = "valid_rmse_e" if t == "apt" else f"valid_rmse_{t}"
        if key in m:
            parts.append(f"{TARGETS[t][1]} {m[key]:.5f} {TARGETS[t][2]}")
    text = ", ".join(parts)
    if len(targets) > 1 and "valid_score" in m:
        text += f" (weighted score {m['valid_score']:.4f}, dimensionless)"
    return text


def run_train(train_file, valid_file, output, epochs, max_time, lr, batch_size, patience, early_stopping,
              valid_fraction, seed, committee, committee_kind, cutoff, channels, layers, lmax, no_sum_rule,
              float64, cell, description, log_file, threads, quiet, distributed, targets="apt") -> None:
    """``aptnn train``: train a committee on ``train_file`` and write the checkpoint ``output``; ``targets``
    ("apt", "pgt", "apt,pgt" or a list) become ``ModelConfig.targets``."""
    from pathlib import Path

    from aptnn import distributed as dist
    from aptnn.errors import InputError, OutputError
    from aptnn.io import read_frames
    from aptnn.model.network import ModelConfig, target_problem
    from aptnn.train import TrainSettings, train_committee

    targets = parse_targets(targets)
    problem = target_problem(ModelConfig(species=[1], lmax=lmax, n_layers=layers, targets=targets))
    if problem:  # before reading any data
        problem = problem.replace("lmax", "--lmax").replace("n_layers", "--layers")
        raise InputError(f"--targets {','.join(targets)}: {problem}")
    set_threads(threads)
    for out in (output, log_file or output):  # fail now, not after hours of training
        if not Path(out).resolve().parent.is_dir():
            raise OutputError("cannot write: its folder does not exist", out)
    frames = read_frames(train_file, cell=cell_list(cell))
    valid = read_frames(valid_file, cell=cell_list(cell)) if valid_file else None
    check_target_labels(frames, targets, train_file)
    if valid is not None:
        check_target_labels(valid, targets, valid_file)
    settings = TrainSettings(epochs=epochs, max_time=max_time * 60 if max_time else None, lr=lr,
                             batch_size=batch_size, patience=patience, early_stopping=early_stopping,
                             valid_fraction=valid_fraction, seed=seed, dtype="float64" if float64 else "float32")
    log = log_file or str(Path(output).with_suffix(".csv"))
    # a rank that fails exits at once; torchrun (or srun --kill-on-bad-exit) then stops the others
    ctx = dist.init() if distributed else dist.SERIAL
    try:
        metrics = train_committee(frames, valid, output, settings, committee, log, progress=not quiet,
                                  description=description, source=train_file,
                                  valid_source=valid_file or train_file, ctx=ctx, kind=committee_kind,
                                  cutoff=cutoff, channels=channels, n_layers=layers, lmax=lmax,
                                  sum_rule=not no_sum_rule, targets=targets)
    finally:
        dist.shutdown()
    if not ctx.is_main:
        return
    for m in metrics:
        who = (f"heads 0…{len(m['members']) - 1} (shared trunk)" if m.get("kind") == "heads"
               else f"member {m['member']}")
        click.echo(f"{who}: best validation RMSE {_metric_line(m, targets)} at epoch "
                   f"{m['best_epoch']} ({m['epochs_run']} epochs, {m['wall_s'] / 60:.1f} min)")
    if committee > 1 and valid_file and "apt" in targets:
        from aptnn.model.checkpoint import read_committee

        click.echo(f"committee std calibration on {valid_file}: uncertainty_scale "
                   f"{read_committee(output)['uncertainty_scale']:.3f}")
    click.echo(f"wrote {output} and learning curve {log}")


@click.command()
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
@click.option("--committee-kind", type=click.Choice(COMMITTEE_KINDS), default=DEFAULT_COMMITTEE_KIND,
              show_default=True,
              help="full: independent networks (N× the cost per frame); heads: one shared trunk with N readout "
                   "heads (about the cost of one network). With --valid, the committee std's calibration "
                   "factor is stored as uncertainty_scale.")
@click.option("--cutoff", default=6.0, show_default=True, type=click.FloatRange(0, 20, min_open=True),
              help="Neighbour cutoff in Å.")
@click.option("--channels", default=DEFAULT_CHANNELS, show_default=True, type=click.IntRange(1, 512),
              help="Multiplicity of each hidden irrep.")
@click.option("--layers", default=2, show_default=True, type=click.IntRange(1, 8), help="Message-passing layers.")
@click.option("--lmax", default=2, show_default=True, type=click.IntRange(0, 4),
              help="Maximum spherical-harmonic degree.")
@click.option("--no-sum-rule", is_flag=True, help="Do not enforce Σ_i P_i = Q·I (Q = frame charge, info 'charge').")
@click.option("--targets", default="apt", show_default=True, callback=_targets_option,
              help="What to learn: apt (APTs, e, per-atom `apt`), pgt (polarisability-gradient tensors for Raman, "
                   "e·Å/V, per-atom `pgt`) or apt,pgt (both, one network; loss terms weighted by 1/variance of "
                   "each target's labels). The training frames must carry the labels.")
@options.float64("Train in double precision (default float32).")
@options.cell("Box lengths (Å), anchor xyz.")
@click.option("--description", default="", help="Free text stored in the checkpoint (shown by `aptnn models`).")
@click.option("--log", "log_file", default=None, help="Learning-curve CSV (default: OUTPUT with .csv).")
@options.threads()
@options.quiet
@click.option("--distributed", is_flag=True,
              help="Train with all processes of a torchrun/srun launch: one member data-parallel (each "
                   "--batch-size frames shared out over the ranks), or committee members spread over ranks.")
def train(**kwargs):
    """Train an APT (and/or PGT, --targets) model on TRAIN_FILE (extxyz with per-atom `apt`, e, and/or `pgt`,
    e·Å/V, or anchor xyz; partial labels allowed). Prints each member's best validation RMSE per target."""
    run_command(lambda: run_train(**kwargs))


def run_predict(model, input_file, output, batch_size, float64, cell, threads, quiet) -> None:
    """``aptnn predict``: APTs of ``model`` for the frames of ``input_file``, written to ``output``."""
    from aptnn.io import read_frames, write_frames
    from aptnn.predict import APTPredictor

    set_threads(threads)
    predictor = APTPredictor.load(model, dtype="float64" if float64 else "float32")
    frames = read_frames(input_file, cell=cell_list(cell))
    out = predictor.annotate(frames, batch_size=batch_size, source=input_file, progress=not quiet)
    write_frames(output, out)
    what = " and ".join({"apt": "APTs (e)", "pgt": "PGTs (e·Å/V)"}[t] for t in predictor.targets)
    click.echo(f"wrote {what} of {len(out)} frame(s) to {output}")


@click.command()
@click.argument("model")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True,
              help="extxyz to write, with per-atom `apt` (and `apt_std`, the raw committee std: multiply by the "
                   "model's uncertainty_scale for calibrated error bars), e; a model with a PGT head adds `pgt` (and "
                   "`pgt_std`), 27 numbers row-major G[ξ,η,ζ] = ∂α_ξη/∂r_ζ in e·Å/V.")
@options.evaluation()
def predict(**kwargs):
    """Predict APTs (and PGTs, for a model with a PGT head) with MODEL (a checkpoint or a shipped model name, e.g.
    water-rpbe-d3) for INPUT_FILE."""
    run_command(lambda: run_predict(**kwargs))


def run_evaluate(model, files, plot, json_file, batch_size, float64, cell, threads, quiet) -> dict:
    """``aptnn evaluate``: ``model`` against the labels of ``files``; returns the metrics (e)."""
    from pathlib import Path

    from aptnn.evaluate import check_labelled, format_metrics, metrics, parity_plot
    from aptnn.io import read_frames
    from aptnn.labels import APT_KEY
    from aptnn.predict import APTPredictor

    set_threads(threads)
    predictor = APTPredictor.load(model, dtype="float64" if float64 else "float32")
    inputs = [read_frames(path, cell=cell_list(cell)) for path in files]
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
    return m


@click.command()
@click.argument("model")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--plot", default=None, help="Write a parity plot PNG here.")
@click.option("--json", "json_file", default=None, help="Write the metrics (e) as JSON here.")
@options.evaluation()
def evaluate(**kwargs):
    """Compare MODEL's APTs with the labels in FILES: component RMSE in e, per species and per irrep."""
    run_command(lambda: run_evaluate(**kwargs))


def run_models() -> None:
    """``aptnn models``: one line per model shipped inside the package."""
    from aptnn.model.checkpoint import load_checkpoint, shipped_models
    from aptnn.model.network import HeadMember

    for name in shipped_models():
        members, training = load_checkpoint(name)
        cfg = members[0].config
        kind = "heads" if isinstance(members[0], HeadMember) else "full"
        click.echo(f"{name}: species {cfg.species}, cutoff {cfg.cutoff} Å, {len(members)} member(s)"
                   f"{f' ({kind})' if len(members) > 1 else ''}, "
                   f"{training.get('description', '')}")


@click.command()
def models():
    """List the models shipped inside the package."""
    run_command(run_models)
