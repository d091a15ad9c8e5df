"""The key vocabulary: every name aptnn reads from or writes to ASE ``Atoms`` (``arrays`` per atom, ``info`` per
frame) and extxyz files, in one place (like NequIP's ``data/_keys.py``). Units are part of each key's meaning.
"""
from __future__ import annotations

# per-atom arrays (atoms.arrays)
APT = "apt"                    # (N, 9) e: row-major P[ξ,ζ] = ∂M_ξ/∂r_ζ; NaN rows = unlabelled atoms
APT_STD = "apt_std"            # (N, 9) e: committee spread, same layout
PGT = "pgt"                    # (N, 27) e·Å/V: row-major G[ξ,η,ζ] = ∂α_ξη/∂r_ζ; NaN rows = unlabelled atoms
PGT_STD = "pgt_std"            # (N, 27) e·Å/V: committee spread, same layout
VELOCITIES = "velocities"      # (N, 3) Å/fs (written by aptnn; also read under the aliases below)
VELOCITY_ALIASES = (VELOCITIES, "velocity", "vel", "velo")

# per-frame values (atoms.info)
CHARGE = "charge"              # e, total charge of the frame (the APT sum rule Σ_i P_i = Q·I); default 0
TIME = "time"                  # fs
STEP = "step"                  # MD step index
SOURCE_FRAME = "source_frame"  # index of the frame in the trajectory it was selected from (aptnn select/learn)
APT_SPREAD = "apt_spread_e"    # e, committee spread of a selected frame (aptnn select --method committee)

#: Voigt order of the six independent components of a symmetric 3×3 tensor (α, dα/dt): xx, yy, zz, yz, xz, xy
#: (plain components, no √2 or 2 factors), as index pairs (ξ, η)
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
VOIGT_NAMES = ("xx", "yy", "zz", "yz", "xz", "xy")
