"""APT → dM/dt: batched inference over frames (and beads) and the dM/dt estimators, in one place.

dM/dt = Σ_i P_i · v_i (matrix times vector, P[ξ,ζ] = ∂M_ξ/∂r_iζ in e, v in Å/fs → e·Å/fs). Group series
sum over the atoms of the group only. For path-integral beads k = 1…P:
  * ``centroid``: (1/P) Σ_k Σ_i P_i(r_i^k)·v_i^k, the time derivative of the bead-averaged dipole;
  * ``centroid-apt``: Σ_i P_i(r̄_i)·v̄_i with the APT evaluated at the centroid r̄ (a cheaper approximation).
"""
from __future__ import annotations

import numpy as np
from ase import Atoms

from aptnn.predict import APTPredictor


def series_sums(per_atom: np.ndarray, groups: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Per-atom contributions (…, N, 3) → (…, 1 + n_groups, 3): the total, then each group (atom masks)."""
    parts = [per_atom.sum(-2)] + [per_atom[..., mask, :].sum(-2) for mask in (groups or {}).values()]
    return np.stack(parts, axis=-2)


def dmdt(apt: np.ndarray, velocities: np.ndarray, groups: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Series (1 + n_groups, 3) of dM/dt in e·Å/fs: total, then each group (boolean atom masks)."""
    return series_sums(np.einsum("nij,nj->ni", apt, velocities), groups)


class DipoleDerivativeEngine:
    """Frames + velocities → dM/dt series (total and groups), batching frames through the model."""

    def __init__(self, predictor: APTPredictor, groups: dict[str, np.ndarray] | None = None):
        self.predictor = predictor
        self.groups = dict(groups or {})

    @property
    def series(self) -> list[str]:
        return ["total"] + [f"group:{name}" for name in self.groups]

    def compute(self, frames: list[Atoms], velocities: list[np.ndarray], source: str | None = None,
                first_index: int = 0) -> np.ndarray:
        """(n_frames, n_series, 3) dM/dt in e·Å/fs for frames with velocities in Å/fs."""
        apts, _ = self.predictor.predict_batch(frames, source, first_index)
        return np.stack([dmdt(p, v, self.groups) for p, v in zip(apts, velocities)])

    def compute_beads(self, beads: list[Atoms], velocities: list[np.ndarray], estimator: str = "centroid",
                      source: str | None = None, index: int = 0) -> np.ndarray:
        """One PIMD step: series bead0…bead(P−1), centroid, then groups (of the centroid estimator).

        Returns (P + 1 + n_groups, 3) in e·Å/fs. With ``estimator="centroid-apt"`` the centroid series uses the
        APT at the centroid geometry and the centroid velocity instead of the bead average.
        """
        apts, _ = self.predictor.predict_batch(beads, source, index)
        per_bead = np.stack([dmdt(p, v, self.groups) for p, v in zip(apts, velocities)])  # (P, 1+G, 3)
        if estimator == "centroid-apt":
            centroid = beads[0].copy()
            centroid.positions = np.mean([b.positions for b in beads], axis=0)
            apt_c, _ = self.predictor.predict_batch([centroid], source, index)
            centre = dmdt(apt_c[0], np.mean(velocities, axis=0), self.groups)
        elif estimator == "centroid":
            centre = per_bead.mean(0)
        else:
            raise ValueError(f"unknown estimator {estimator!r}")
        return np.concatenate([per_bead[:, 0], centre[:1], centre[1:]])
