"""Option decorators shared by several commands, declared once (help texts that differ per command are passed)."""
from __future__ import annotations

import click

LAMMPS_UNITS_HELP = ("LAMMPS unit style of the run (lengths, times and --timestep, velocities): real (Å, fs, Å/fs), "
                     "metal (Å, ps, Å/ps), si (m, s, m/s), cgs (cm, s, cm/s), electron (bohr, fs, bohr/fs), micro "
                     "(µm, µs, µm/µs), nano (nm, ns, nm/ns). Required for LAMMPS dumps unless the dump says it "
                     "('dump_modify ID units yes') or the run's log.lammps (or write_data file) lies next to it; "
                     "for H5MD only datasets without a unit attribute (default real).")
LAMMPS_UNITS_SHORT_HELP = ("LAMMPS unit style of a dump (real, metal, …; see aptnn-post --help), unless the dump or "
                           "the run's log.lammps next to it says it.")


def threads(help: str = "torch CPU threads (default: all cores).", type=int):
    return click.option("--threads", type=type, default=None, help=help)


def quiet(f):
    return click.option("--quiet", is_flag=True, help="No progress bar.")(f)


def float64(help: str = "Evaluate in double precision."):
    return click.option("--float64", is_flag=True, help=help)


def cell(help: str = "Box lengths (Å) for files without a cell."):
    return click.option("--cell", nargs=3, type=float, default=None, help=help)


def compile_model(f):
    return click.option("--compile", "compile_model", is_flag=True,
                        help="torch.compile the model: ~1.4× faster per frame on the CPU after ~10 s of "
                             "compilation.")(f)


def device(f):
    return click.option("--device", default="cpu", show_default=True, help="torch device: cpu or cuda.")(f)


def units(help: str = LAMMPS_UNITS_SHORT_HELP):
    return click.option("--units", "lammps_units", default=None, help=help)


def overwrite(f):
    return click.option("--overwrite", is_flag=True, help="Start the output anew instead of continuing it.")(f)


def model(help: str = "Checkpoint path or shipped model name."):
    return click.option("--model", default="water-rpbe-d3", show_default=True, help=help)


def evaluation(batch_size: int = 4):
    """The options of commands that evaluate a model on frames: --batch-size, --float64, --cell, --threads,
    --quiet."""
    def apply(f):
        for option in (quiet, threads(), cell(), float64(),
                       click.option("--batch-size", default=batch_size, show_default=True, type=click.IntRange(min=1),
                                    help="Frames per model call.")):
            f = option(f)
        return f
    return apply


TIMESTEP_HELP = ("The MD time step (the engine's own `timestep`) in fs; for LAMMPS dumps in the run's time unit "
                 "(--units). Frame times are step × timestep (the frame index stands in for the step where a file "
                 "records none).")


def timestep(help: str = TIMESTEP_HELP, default=None):
    """``--timestep``: one meaning everywhere (aptnn post, aptnn-ipi, which also accepts --dt)."""
    return click.option("--timestep", type=click.FloatRange(min=0, min_open=True), default=default, help=help)


def set_threads(n: int | None) -> None:
    """Apply ``--threads`` (torch CPU threads); None or 0 leaves torch's default."""
    if n:
        import torch

        torch.set_num_threads(n)


def raman(f):
    """``--raman/--no-raman``: stream dα/dt (Raman) beside dM/dt; default: when the model has a PGT head."""
    return click.option("--raman/--no-raman", default=None,
                        help="Also stream dα/dt, the polarizability's time derivative (/dAdt, e·Å²/(V·fs), Voigt xx, "
                             "yy, zz, yz, xz, xy) for `aptnn spectrum --raman`, from the model's PGT head (APTs and "
                             "PGTs in one model call: about 2× the cost of dM/dt alone). Default: whenever the model "
                             "has a PGT head; --raman with a model without one is an error.")(f)


def cell_list(values: tuple[float, ...] | None):
    """``--cell`` as the list the readers take, or None."""
    return list(values) if values else None


APT_EVERY_HELP = ("Run the APT network on every K-th frame (MD step for aptnn-ipi) only and interpolate the APTs in "
                  "between (cubic Lagrange in time; positions and velocities stay exact at every step): about 1/K "
                  "of the model's cost. Overrides --apt-every-fs.")


def apt_every(f):
    """``--apt-every K`` and ``--apt-every-fs X`` (the default rule: the network at least every X fs)."""
    from aptnn.defaults import APT_INTERVAL_FS

    default = "every frame" if APT_INTERVAL_FS is None else f"{APT_INTERVAL_FS:g} fs"
    f = click.option("--apt-every-fs", type=click.FloatRange(min=0, min_open=True), default=APT_INTERVAL_FS,
                     help=f"Run the APT network at least every this many fs (K = ⌊X / Δt⌋ frames, at least 1) and "
                          f"interpolate in between; default: {default} (README: accuracy against K).")(f)
    return click.option("--apt-every", type=click.IntRange(min=1), default=None, metavar="K", help=APT_EVERY_HELP)(f)
