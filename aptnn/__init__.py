"""aptnn: equivariant atomic polar tensors for IR spectra from (path-integral) molecular dynamics.

Data flow: frames → graph → APT → dM/dt → stream → spectrum.
Conventions: positions in Å, APTs in e with P[ξ,ζ] = ∂M_ξ/∂r_ζ (row = dipole component),
stored row-major as 9 numbers per atom.
"""
from __future__ import annotations

__version__ = "0.1.0"

from aptnn.errors import APTNNError, InputError  # noqa: E402
from aptnn.runtime import tune_malloc  # noqa: E402

tune_malloc()

__all__ = ["__version__", "APTNNError", "InputError", "load_model"]


def load_model(name_or_path: str = "water-rpbe-d3", dtype: str | None = None, device: str = "cpu",
               compile: bool = False):
    """Load a trained APT model (a shipped model name or a checkpoint path) as an :class:`APTPredictor`;
    ``compile=True`` torch.compiles it (faster per frame after a one-off compilation)."""
    from aptnn.predict import APTPredictor

    return APTPredictor.load(name_or_path, dtype=dtype, device=device, compile=compile)
