"""Per-step dM/dt from the APTs and positions of all beads, as an MD run streams them in.

``increment`` (default): ΔM = Σ_i ½(P_i(n−1) + P_i(n))·(r_i(n) − r_i(n−1)) per bead and step, stored as
ΔM/Δt at time (n − ½)Δt: the exact change of the dipole along the path for a dipole quadratic in the step
(trapezoidal rule), robust under stochastic thermostats. ``velocity``: central-difference velocities,
P_i(n)·(r_i(n+1) − r_i(n−1))/(2Δt), stored at time nΔt (one step later). ``centroid-apt``: the APT evaluated
at the centroid, with increments of the centroid positions; the only choice when i-PI sends the centroid alone
(``<force nbeads='1'>``, ring-polymer contraction). Units: Å, e, fs → e·Å/fs.
"""
from __future__ import annotations

import numpy as np

from aptnn.engine import series_sums

ESTIMATORS = ("increment", "velocity", "centroid-apt")


def minimum_image(disp: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Displacements (…, 3) Å reduced to the nearest periodic image of ``cell`` (rows = vectors, Å)."""
    if cell is None or not np.abs(cell).sum():
        return disp
    frac = disp @ np.linalg.inv(cell)
    return (frac - np.round(frac)) @ cell


class StepEstimator:
    """Turns consecutive steps (positions and APTs of every bead) into rows of the stream file.

    Series: bead0…bead(P−1) and centroid when P > 1 (centroid only for ``centroid-apt`` or P = 1), then one
    series per group (summed over the group's atoms, averaged over beads).
    """

    def __init__(self, estimator: str, nbeads: int, dt_fs: float, groups: dict[str, np.ndarray]):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose from {ESTIMATORS}")
        self.estimator, self.nbeads, self.dt = estimator, nbeads, dt_fs
        self.groups = groups
        self.per_bead = estimator != "centroid-apt" and nbeads > 1
        self.history: list[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]] = []

    @property
    def series(self) -> list[str]:
        beads = [f"bead{k}" for k in range(self.nbeads)] if self.per_bead else []
        return beads + ["centroid"] + [f"group:{g}" for g in self.groups]

    def _row(self, per_atom: np.ndarray) -> np.ndarray:
        sums = series_sums(per_atom, self.groups)  # (B, 1 + G, 3)
        mean = sums.mean(0)                    # centroid and bead-averaged groups
        rows = [sums[:, 0]] if self.per_bead else []
        return np.concatenate(rows + [mean[:1], mean[1:]])

    def update(self, step: int, positions: np.ndarray, apt: np.ndarray, cell: np.ndarray | None):
        """Add step ``step``: positions (B, N, 3) Å and APTs (B, N, 3, 3) e of the B beads (B = 1 for the
        centroid). Returns (time fs, row (n_series, 3) e·Å/fs) or None while the estimator needs more steps."""
        self.history.append((step, positions, apt, cell))
        self.history = self.history[-3:]
        if self.estimator in ("increment", "centroid-apt"):
            if len(self.history) < 2:
                return None
            (s0, r0, p0, _), (s1, r1, p1, c1) = self.history[-2:]
            disp = minimum_image(r1 - r0, c1)
            dm = np.einsum("bnij,bnj->bni", 0.5 * (p0 + p1), disp) / ((s1 - s0) * self.dt)
            return (s0 + s1) / 2 * self.dt, self._row(dm)
        if len(self.history) < 3:
            return None
        (s0, r0, _, _), (s1, _, p1, c1), (s2, r2, _, _) = self.history
        v = minimum_image(r2 - r0, c1) / ((s2 - s0) * self.dt)
        return s1 * self.dt, self._row(np.einsum("bnij,bnj->bni", p1, v))
