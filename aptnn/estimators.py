"""The dM/dt estimators: one core for every producer (``aptnn-post``, ``aptnn-ipi``). Units: positions and
cells Å, velocities Å/fs, times fs, APTs e (P[ξ,ζ] = ∂M_ξ/∂r_iζ), dM/dt e·Å/fs.

A producer feeds steps: positions (B, N, 3), velocities (B, N, 3) or None, cell (3×3, rows = vectors) or None
(an all-zero cell also means open boundaries), the step index (time = step × Δt) and the APTs (B, N, 3, 3) of
the B geometries evaluated; out come rows (n_series, 3) with their time.

Estimators (a base, and for path integrals, P > 1 beads, a centroid mode; the name ``base/mode``, or ``base``
alone for P = 1, is the stream's ``estimator`` attribute):

* ``velocity``: Σ_i P_i(n)·v_i(n) at time nΔt, with the velocities given, or else central differences of the
  positions (minimum image), v_i(n) = (r_i(n+1) − r_i(n−1))/(2Δt): the row of step n comes with step n+1;
* ``increment``: ΔM/Δt = Σ_i ½(P_i(n) + P_i(n+1))·(r_i(n+1) − r_i(n))/Δt at time (n+½)Δt (minimum image):
  the exact dipole change for a dipole quadratic in the step (trapezoidal rule), robust under thermostats;
* ``…/centroid``: each bead's estimator (series ``bead<k>``), and ``centroid`` their mean: the time derivative
  of the bead-averaged dipole;
* ``…/apt-at-centroid``: ``centroid`` is the base estimator with the APT evaluated at the centroid geometry
  r̄ and the centroid velocity v̄ (or centroid increments): a cheaper approximation.

Streamed quantities (the "response" rows): the estimators contract per-atom tensors R_i (…, N, C, 3) with
vectors (…, N, 3) into rows (n_series, C). C = 3: R_i is the APT (e) and a row is dM/dt (e·Å/fs). C = 9 (a
model with a PGT head, for Raman): :func:`response` stacks the APT's 3 rows and the PGT's 6 Voigt rows
∂α_v/∂r_iζ (e·Å/V, v = xx, yy, zz, yz, xz, xy), and :func:`split_rows` gives dM/dt and dα/dt (e·Å²/(V·fs)) back:
every estimator, interpolation and committee series below works unchanged on either.

Series, in this order: ``bead0``…``bead<P−1>`` (when per-bead series are written), ``centroid`` (``total`` for
a classical ``aptnn-post`` run), then ``group:<name>`` per atom group (summed over its atoms; of the centroid
series), then, for a committee model of M ≥ 2 members, ``member0``…``member<M−1>``: each member's own centre
series (its total, or for path integrals its centroid), the spread behind the spectrum's model band. All
other series use the committee-mean APT. APT arrays then carry the members first: (M, B, N, 3, 3). Names
accepted (aliases → canonical, with the producer's default base: velocity for aptnn-post, increment for
aptnn-ipi and aptnn-lammps)::

    aptnn-post --estimator centroid       →  velocity/centroid
    aptnn-post --estimator centroid-apt   →  velocity/apt-at-centroid   (was stored as velocity/centroid-apt)
    aptnn-ipi  --estimator increment      →  increment/centroid         (was stored as increment)
    aptnn-ipi  --estimator velocity       →  velocity/centroid          (was stored as velocity)
    aptnn-ipi  --estimator centroid-apt   →  increment/apt-at-centroid  (was stored as centroid-apt)
    i-PI <force nbeads='1'> (contraction) →  <base>/apt-at-centroid

With P = 1 the mode is dropped (``velocity``, ``increment``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aptnn.keys import VOIGT

BASES = ("velocity", "increment")
MODES = ("centroid", "apt-at-centroid")
ALIASES = {"centroid-apt": "apt-at-centroid"}
#: names the command lines accept
ESTIMATORS = BASES + MODES + tuple(ALIASES) + tuple(f"{b}/{m}" for b in BASES for m in MODES)


@dataclass(frozen=True)
class EstimatorName:
    base: str = "velocity"       # velocity | increment
    mode: str = "centroid"       # centroid | apt-at-centroid (path integrals)

    def label(self, nbeads: int) -> str:
        """The stream's ``estimator`` attribute for a run of ``nbeads`` beads."""
        return self.base if nbeads == 1 else f"{self.base}/{self.mode}"


def resolve(name: str, default_base: str) -> EstimatorName:
    """``name`` (canonical or alias, see the module docstring) → base and mode; ValueError if unknown."""
    text = name.strip()
    base, _, mode = text.partition("/") if "/" in text else \
        ((text, "", "centroid") if text in BASES else (default_base, "", text))
    mode = ALIASES.get(mode, mode)
    if base not in BASES or mode not in MODES:
        raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
    return EstimatorName(base, mode)


def canonical(name: str, default_base: str, nbeads: int) -> str:
    """The canonical label of a (possibly old) label: what a stream written by this version would hold (an
    unknown name unchanged)."""
    try:
        return resolve(name, default_base).label(nbeads)
    except ValueError:
        return name


def species_groups(symbols: list[str]) -> dict[str, np.ndarray]:
    """One group per element: {"O": mask, "H": mask} (boolean atom masks, in order of first appearance)."""
    arr = np.array(symbols)
    return {s: arr == s for s in dict.fromkeys(symbols)}


def minimum_image(disp: np.ndarray, cell: np.ndarray | None, pbc=None) -> np.ndarray:
    """Displacements (…, 3) Å reduced to the nearest periodic image of ``cell`` (rows = vectors, Å) along the
    periodic directions ``pbc`` (default all). None or an all-zero cell: open boundaries (unchanged). Exact
    (the input itself) when no displacement crosses the cell."""
    if cell is None:
        return disp
    cell = np.asarray(cell, dtype=float)
    periodic = np.ones(3, bool) if pbc is None else np.asarray(pbc, bool)
    if not np.abs(cell).sum() or not periodic.any():
        return disp
    inverse = np.linalg.inv(cell) if abs(np.linalg.det(cell)) > 1e-12 else np.linalg.pinv(cell)
    shift = np.round(disp @ inverse) * periodic
    return disp - shift @ cell if shift.any() else disp


def centroid(positions: np.ndarray, cell: np.ndarray | None = None, pbc=None) -> np.ndarray:
    """Bead positions (B, N, 3) Å → the centroid (N, 3), each bead taken at its image nearest to bead 0 (beads
    wrapped into the cell one by one stay one ring polymer); velocities alike (no ``cell``)."""
    if cell is not None and len(positions) > 1:
        offset = positions - positions[0]
        positions = positions - (offset - minimum_image(offset, cell, pbc))  # unchanged when nothing wraps
    return np.mean(positions, axis=0)


def central_difference(r_prev: np.ndarray, r_next: np.ndarray, cell, span_fs: float, pbc=None) -> np.ndarray:
    """Velocities (Å/fs) from the positions (Å) one step before and after: minimum image of r_next − r_prev,
    divided by the time between them, ``span_fs`` = 2Δt."""
    return minimum_image(r_next - r_prev, cell, pbc) / span_fs


def committee_size(predictor) -> int:
    """Members M of a predictor's committee (1: a single model)."""
    return int(getattr(predictor, "n_members", None) or len(getattr(predictor, "members", ())) or 1)


def kinetic_temperature(numbers: np.ndarray, velocities: np.ndarray) -> float:
    """Equipartition temperature (K) of velocities (N, 3) Å/fs with ASE's atomic masses (amu) of the atomic
    ``numbers``, 3N degrees of freedom (for ring-polymer beads: P times the physical temperature)."""
    from ase.data import atomic_masses
    from scipy import constants as si

    from aptnn import units

    m = atomic_masses[np.asarray(numbers)] * si.atomic_mass
    v = np.asarray(velocities, dtype=float) * units.ANGSTROM_PER_FS_TO_M_PER_S
    return float(np.sum(m[:, None] * v**2) / (3 * len(m) * si.k))


def contributions(apt: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Per-atom P_i·x_i: APTs (…, N, 3, 3) e (or response rows (…, N, C, 3)) times vectors (…, N, 3) → (…, N, C)."""
    return np.einsum("...nij,...nj->...ni", apt, vectors)


def response(apt: np.ndarray, pgt: np.ndarray | None = None) -> np.ndarray:
    """The per-atom response rows the estimators contract: APTs (…, N, 3, 3) e alone, or with PGTs
    (…, N, 3, 3, 3) e·Å/V, G[ξ,η,ζ] = ∂α_ξη/∂r_ζ, → (…, N, 9, 3): the APT's rows, then the PGT's (ξη-symmetrised)
    rows in Voigt order (:data:`aptnn.keys.VOIGT`)."""
    if pgt is None:
        return apt
    rows = [(pgt[..., i, j, :] + pgt[..., j, i, :]) / 2 for i, j in VOIGT]
    return np.concatenate([apt, np.stack(rows, axis=-2)], axis=-2)


def split_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows (…, C) of the estimators → (dM/dt (…, 3) e·Å/fs, dα/dt (…, 6) e·Å²/(V·fs) Voigt, or None for C = 3)."""
    return rows[..., :3], (rows[..., 3:] if rows.shape[-1] > 3 else None)


def series_sums(per_atom: np.ndarray, groups: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Per-atom contributions (…, N, 3) → (…, 1 + n_groups, 3): the total, then each group (atom masks)."""
    parts = [per_atom.sum(-2)] + [per_atom[..., mask, :].sum(-2) for mask in (groups or {}).values()]
    return np.stack(parts, axis=-2)


def series_names(nbeads: int, groups, per_bead: bool, centre: str = "centroid", members: int = 1) -> list[str]:
    """Series of a stream: ``bead<k>`` (if ``per_bead``), ``centre``, ``group:<name>``, then ``member<k>``
    (committees of ``members`` ≥ 2)."""
    beads = [f"bead{k}" for k in range(nbeads)] if per_bead else []
    committee = [f"member{k}" for k in range(members)] if members > 1 else []
    return beads + [centre] + [f"group:{g}" for g in groups] + committee


def member_series(apt: np.ndarray, vectors: np.ndarray, centre_apt: np.ndarray | None = None) -> np.ndarray:
    """(M, 3) e·Å/fs: each committee member's centre series. ``apt`` (M, B, N, 3, 3) e, ``vectors``
    (B, N, 3) (velocities Å/fs or displacements per time); ``centre_apt`` (M, N, 3, 3): the members' APTs
    at the centroid, contracted with the centroid of ``vectors``."""
    if centre_apt is not None:
        return contributions(centre_apt, np.mean(vectors, axis=0)[None]).sum(-2)
    return contributions(apt, vectors[None]).sum(-2).mean(1)


def assemble(per_atom: np.ndarray, groups, per_bead: bool, centre_per_atom: np.ndarray | None = None) -> np.ndarray:
    """One row (n_series, 3) e·Å/fs from per-atom terms of the B geometries (B, N, 3): bead totals (if
    ``per_bead``), then the centre series and its groups: the bead mean, or ``centre_per_atom`` (N, 3) (the
    APT at the centroid)."""
    sums = series_sums(per_atom, groups)   # (B, 1 + G, 3)
    centre = sums.mean(0) if centre_per_atom is None else series_sums(centre_per_atom, groups)
    return np.concatenate(([sums[:, 0]] if per_bead else []) + [centre])


class StepEstimator:
    """Consecutive steps → rows of the stream; the one estimator code of every producer.

    ``name``: an estimator name (see the module docstring), resolved with ``default_base``; ``nbeads``: the
    ring polymer's beads P (1: classical); ``dt_fs``: the time step. ``per_bead`` (default: P > 1 and not
    ``apt-at-centroid``): write ``bead<k>`` series; then the steps carry all beads (and, for
    ``apt-at-centroid``, ``centre_apt``), else the geometry evaluated is the centroid alone (B = 1, see
    :meth:`geometries`). ``centre``: the name of the centre series. ``members`` (M ≥ 2, a committee): APT
    arguments carry the members first, (M, B, N, 3, 3) and (M, N, 3, 3); rows gain the ``member<k>`` series.
    """

    def __init__(self, name: str | EstimatorName, nbeads: int, dt_fs: float | None,
                 groups: dict[str, np.ndarray] | None = None, per_bead: bool | None = None,
                 centre: str = "centroid", default_base: str = "increment", members: int = 1):
        self.name = name if isinstance(name, EstimatorName) else resolve(name, default_base)
        self.nbeads, self.dt, self.groups, self.centre = nbeads, dt_fs, dict(groups or {}), centre
        self.members = members
        self.at_centroid = self.name.mode == "apt-at-centroid" and nbeads > 1
        self.per_bead = (nbeads > 1 and not self.at_centroid) if per_bead is None else per_bead
        self.history: list[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]] = []

    @property
    def base(self) -> str:
        return self.name.base

    @property
    def label(self) -> str:
        return self.name.label(self.nbeads)

    @property
    def series(self) -> list[str]:
        return series_names(self.nbeads, self.groups, self.per_bead, self.centre, self.members)

    @property
    def centroid_only(self) -> bool:
        """The geometry evaluated is the centroid alone (B = 1)."""
        return self.at_centroid and not self.per_bead

    def geometries(self, positions: np.ndarray, cell: np.ndarray | None = None) -> np.ndarray:
        """The geometries (B, N, 3) Å whose APTs a step needs: the beads, or their centroid alone."""
        return centroid(positions, cell)[None] if self.centroid_only and len(positions) > 1 else positions

    def velocity_row(self, apt: np.ndarray, velocities: np.ndarray, centre_apt: np.ndarray | None = None):
        """Row (n_series, 3) e·Å/fs of the velocity estimator: APTs (B, N, 3, 3) e, velocities (B, N, 3) Å/fs;
        ``centre_apt`` (N, 3, 3): the APT at the centroid (``apt-at-centroid`` with per-bead series)."""
        return self._row(apt, velocities, centre_apt)

    def _row(self, apt: np.ndarray, vectors: np.ndarray, centre_apt: np.ndarray | None = None,
             span: float | None = None) -> np.ndarray:
        """Row from APTs and per-atom vectors of the B geometries: velocities, or displacements over the time
        ``span`` (fs) they took."""
        committee = self.members > 1
        mean = apt.mean(0) if committee else apt
        centre_mean = None if centre_apt is None else (centre_apt.mean(0) if committee else centre_apt)
        centre = None if centre_mean is None else contributions(centre_mean, centroid(vectors))
        per_atom = contributions(mean, vectors)
        row = assemble(per_atom if span is None else per_atom / span, self.groups, self.per_bead, centre)
        if committee:
            members = member_series(apt, vectors, centre_apt)
            row = np.concatenate([row, members if span is None else members / span])
        return row

    def update(self, step: int, positions: np.ndarray, apt: np.ndarray, cell: np.ndarray | None,
               velocities: np.ndarray | None = None, centre_apt: np.ndarray | None = None):
        """Add step ``step``: positions (B, N, 3) Å and APTs (B, N, 3, 3) e of the geometries evaluated,
        ``velocities`` (B, N, 3) Å/fs if known. Returns (time fs, row (n_series, 3) e·Å/fs), or None while
        the estimator needs more steps."""
        if velocities is not None and self.base == "velocity":
            return step * self.dt, self.velocity_row(apt, velocities, centre_apt)
        if centre_apt is not None:
            raise ValueError("the APT at the centroid with per-bead series needs the velocities")
        self.history.append((step, positions, apt, cell))
        self.history = self.history[-3:]
        if self.base == "increment":
            if len(self.history) < 2:
                return None
            (s0, r0, p0, _), (s1, r1, p1, c1) = self.history[-2:]
            span = (s1 - s0) * self.dt
            return (s0 + s1) / 2 * self.dt, self._row(0.5 * (p0 + p1), minimum_image(r1 - r0, c1), span=span)
        if len(self.history) < 3:
            return None
        (s0, r0, _, _), (s1, _, p1, c1), (s2, r2, _, _) = self.history
        return s1 * self.dt, self.velocity_row(p1, central_difference(r0, r2, c1, (s2 - s0) * self.dt))
