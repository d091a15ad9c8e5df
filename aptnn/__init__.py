"""aptnn: equivariant atomic polar tensors for IR spectra from (path-integral) molecular dynamics.

Data flow: frames → graph → APT → dM/dt → stream → spectrum.
Conventions: positions in Å, APTs in e with P[ξ,ζ] = ∂M_ξ/∂r_ζ (row = dipole component),
stored row-major as 9 numbers per atom.

Importing aptnn has no process-wide side effects; the command-line entry points (and :func:`load_model`) tune
glibc's malloc for fast inference (:func:`aptnn.runtime.tune_malloc`).
"""
from __future__ import annotations

from aptnn._version import __version__
from aptnn.errors import APTNNError, InputError

__all__ = ["__version__", "APTNNError", "InputError", "load_model", "APTCalculator", "DipoleDerivative"]


def __getattr__(name: str):
    """Lazy exports (no torch import until used): :class:`aptnn.calculator.APTCalculator` (ASE calculator) and
    :class:`aptnn.analysis.DipoleDerivative` (dM/dt of a trajectory, MDAnalysis style)."""
    if name == "APTCalculator":
        from aptnn.calculator import APTCalculator

        return APTCalculator
    if name == "DipoleDerivative":
        from aptnn.analysis import DipoleDerivative

        return DipoleDerivative
    raise AttributeError(f"module 'aptnn' has no attribute {name!r}")


def load_model(name_or_path: str = "water-rpbe-d3", dtype: str | None = None, device: str = "cpu",
               compile: bool = False):
    """Load a trained APT model (a shipped model name or a checkpoint path) as an :class:`APTPredictor`;
    ``compile=True`` torch.compiles it (faster per frame after a one-off compilation). Tunes malloc for
    inference (once; ``APTNN_MALLOC_TUNING=0`` leaves it alone)."""
    from aptnn.predict import APTPredictor
    from aptnn.runtime import tune_malloc

    tune_malloc()
    return APTPredictor.load(name_or_path, dtype=dtype, device=device, compile=compile)
