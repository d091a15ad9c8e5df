"""Command-line interface: ``aptnn train | predict | evaluate | models | post | spectrum | merge | demo | label |
select | learn``, and ``aptnn-post`` (the same as ``aptnn post``).

One module per command family; each command is a thin call of an importable ``run_…`` function through the one
error path :func:`aptnn.cli.errors.run_command` (aptnn's errors → ``aptnn: error: …``, exit status 2).
Units everywhere: positions and cutoffs in Å, APTs in e with P[ξ,ζ] = ∂M_ξ/∂r_ζ (row = dipole component),
stored per atom as 9 numbers row-major in the extxyz array ``apt``.
"""
from __future__ import annotations

import click

from aptnn._version import __version__
from aptnn.cli.errors import fail, leave, run_command
from aptnn.cli.model import evaluate, models, predict, train
from aptnn.cli.postprocess import post, post_alias
from aptnn.cli.spectra import merge, spectrum
from aptnn.cli.workflows import demo, label, learn, select_frames

__all__ = ["main", "post", "post_alias", "merge", "spectrum", "train", "predict", "evaluate", "models", "demo",
           "label", "select_frames", "learn", "run_command", "fail", "leave"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aptnn")
def main() -> None:
    """aptnn: learn atomic polar tensors (APTs) with an E(3)-equivariant network and use them for IR spectra.

    Conventions: positions in Å; APT P[ξ,ζ] = ∂M_ξ/∂r_ζ in units of e, 9 numbers per atom row-major in the
    extxyz per-atom array `apt`.
    """


for _command in (train, predict, evaluate, spectrum, merge, models, post, label, select_frames, learn, demo):
    main.add_command(_command)
