"""Label frames: reference APTs (``apt``, e) and/or polarisability-gradient tensors (``pgt``, e·Å/V, for Raman) for
every frame of a file, written as extxyz, failures reported."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from aptnn.label.routes import BackendMissing, LabelError, displacement_route, field_route
from aptnn.labels import set_apt
from aptnn.progress import progress_bar

BACKENDS = ("xtb", "pyscf", "cp2k")
ROUTES = ("field", "displacement", "analytic")
#: PGT routes (:mod:`aptnn.label.pgt`): "field" (B: analytic APTs in ±E, pyscf), "displacement" (A: the
#: polarisability at ±δ; pyscf analytic, cp2k linear response) and "field-forces" (C: second differences of forces
#: in 19 fields; xtb, pyscf, cp2k Berry-phase fields)
PGT_ROUTES = ("field", "displacement", "field-forces")
PGT_ROUTES_OF = {"pyscf": ("field", "displacement", "field-forces"), "xtb": ("field-forces",),
                 "cp2k": ("field-forces", "displacement")}
#: default PGT route of each backend
PGT_DEFAULT_ROUTE = {"pyscf": "field", "xtb": "field-forces", "cp2k": "field-forces"}
#: default PGT field step (V/Å) of each (backend, route): second differences need a stronger field than APTs
PGT_DEFAULT_FIELD = {("pyscf", "field"): 0.05, ("pyscf", "field-forces"): 0.1, ("xtb", "field-forces"): 0.2}
#: default PGT displacement (Å) of each backend
PGT_DEFAULT_DELTA = {"pyscf": 0.005, "cp2k": 0.01}
#: xTB SCC accuracy of the PGT single points (second differences amplify force noise by 1/h²)
XTB_PGT_ACCURACY = 1e-3
CP2K_PGT_MISSING = "PGT labels with cp2k: not available in this version"


def factory(backend: str, **options):
    """``make(field)`` calculator factory of a backend (``options``: method, basis for pyscf)."""
    if backend == "xtb":
        from aptnn.label.xtb import xtb_factory

        return xtb_factory(**options)
    if backend == "pyscf":
        from aptnn.label.pyscf_backend import pyscf_factory

        return pyscf_factory(**options)
    raise LabelError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


def _keep_only(apt: np.ndarray, indices: list[int] | None) -> np.ndarray:
    """NaN rows (unlabelled) for atoms not in ``indices``."""
    if indices is not None:
        keep = np.zeros(len(apt), dtype=bool)
        keep[indices] = True
        apt[~keep] = np.nan
    return apt


def cp2k_frame(atoms: Atoms, workdir: Path, route: str, mode: str, field_v_per_a: float | None, delta: float,
               indices: list[int] | None, **options) -> np.ndarray | None:
    """One frame with CP2K in ``workdir``: ``mode`` "run" (locally), "jobs" (write the job folder, return None)
    or "collect" (parse a folder run elsewhere). Field in V/Å (default 5e-4 a.u.)."""
    from aptnn import units
    from aptnn.label import cp2k

    kw = dict(options)
    if route == "field":
        kw["field_au"] = 5e-4 if field_v_per_a is None else field_v_per_a / units.FIELD_AU_TO_V_PER_ANGSTROM
    else:
        kw.update(delta=delta, indices=indices)
    if mode == "collect":
        return cp2k.collect(workdir)
    if mode == "jobs":
        cp2k.write_jobs(atoms, workdir, route, **kw)
        return None
    if route == "field":
        return cp2k.field_route_cp2k(atoms, workdir, **kw)
    return cp2k.displacement_route_cp2k(atoms, workdir, **kw)


def _cp2k_pgt():
    """:mod:`aptnn.label.cp2k_pgt`, or a :class:`LabelError` where this version has none."""
    try:
        from aptnn.label import cp2k_pgt
    except ImportError:
        raise LabelError(CP2K_PGT_MISSING) from None
    needed = ("write_pgt_jobs", "collect_pgt", "pgt_field_pairs_cp2k", "pgt_linres_cp2k")
    if not all(hasattr(cp2k_pgt, name) for name in needed):
        raise LabelError(CP2K_PGT_MISSING)
    return cp2k_pgt


def cp2k_pgt_frame(atoms: Atoms, workdir: Path, route: str, mode: str, field_v_per_a: float | None,
                   delta: float | None, indices: list[int] | None, **options) -> np.ndarray | None:
    """PGTs (N, 3, 3, 3) in e·Å/V of one periodic frame with CP2K in ``workdir`` (:mod:`aptnn.label.cp2k_pgt`):
    ``route`` "field-forces" (19 Berry-phase fields, step ``field_v_per_a`` V/Å, default 3e-3 a.u.) or
    "displacement" (linear-response α at ±``delta`` Å of the atoms ``indices``); ``mode`` as :func:`cp2k_frame`."""
    from aptnn import units

    cp2k_pgt = _cp2k_pgt()
    name = "field_pairs" if route == "field-forces" else "linres"
    kw = dict(options)
    if name == "field_pairs":
        if field_v_per_a is not None:
            kw["field_au"] = field_v_per_a / units.FIELD_AU_TO_V_PER_ANGSTROM
    else:
        kw.update(delta=PGT_DEFAULT_DELTA["cp2k"] if delta is None else delta, indices=indices)
    if mode == "collect":
        return cp2k_pgt.collect_pgt(workdir)
    if mode == "jobs":
        cp2k_pgt.write_pgt_jobs(atoms, workdir, name, **kw)
        return None
    if name == "field_pairs":
        return cp2k_pgt.pgt_field_pairs_cp2k(atoms, workdir, **kw)
    return cp2k_pgt.pgt_linres_cp2k(atoms, workdir, **kw)


def pgt_frame(atoms: Atoms, backend: str, route: str, field_v_per_a: float | None, delta: float | None,
              **options) -> tuple[np.ndarray, dict]:
    """(PGTs (N, 3, 3, 3) in e·Å/V, extra info) of one cluster/molecule with xtb or pyscf (``options``: method,
    basis for pyscf). Routes as :data:`PGT_ROUTES`; field step in V/Å, displacement in Å (None: defaults)."""
    from aptnn.label import pgt

    strength = PGT_DEFAULT_FIELD.get((backend, route)) if field_v_per_a is None else field_v_per_a
    if backend == "xtb":
        return pgt.pgt_field_forces(atoms, factory("xtb", accuracy=XTB_PGT_ACCURACY), strength), {}
    if route == "field-forces":
        return pgt.pgt_field_forces(atoms, factory("pyscf", **options), strength), {}
    if route == "field":
        g, asymmetry = pgt.pgt_field(atoms, strength=strength, **options)
        return g, {"pgt_asymmetry": asymmetry}
    return pgt.pgt_displacement(atoms, delta=PGT_DEFAULT_DELTA["pyscf"] if delta is None else delta, **options), {}


def check_pgt_route(backend: str, route: str | None) -> str:
    """The PGT route to use (None: the backend's default); a :class:`LabelError` for a route it lacks."""
    route = PGT_DEFAULT_ROUTE.get(backend) if route is None else route
    if route not in PGT_ROUTES:
        raise LabelError(f"unknown PGT route {route!r} ({', '.join(PGT_ROUTES)})")
    if route not in PGT_ROUTES_OF.get(backend, ()):
        raise LabelError(f"the {backend} backend has no PGT route {route!r} (it has: "
                         f"{', '.join(PGT_ROUTES_OF.get(backend, ()))})")
    return route


def label_frames(frames: list[Atoms], backend: str = "xtb", route: str = "field", field: float | None = None,
                 delta: float = 0.01, indices: list[int] | None = None, source: str = "",
                 progress: bool = True, workdir: str | Path = "cp2k-jobs", mode: str = "run", apt: bool = True,
                 pgt: bool = False, pgt_route: str | None = None, pgt_field: float | None = None,
                 pgt_delta: float | None = None, **options) -> tuple[list[Atoms], list[tuple[int, str]]]:
    """(labelled copies of the frames that worked, [(frame index, reason)] of those that failed).

    ``field``: V/Å (default 0.01 V/Å; CP2K 5e-4 a.u.); ``delta``: Å. ``options`` go to the backend (pyscf:
    ``method`` "hf" or an XC functional, ``basis``; cp2k: ``basis``, ``xc``, ``cutoff_ry``, ``dispersion``).
    CP2K works in ``workdir/frame<k>`` and ``mode`` "run", "jobs" (only write the job folders: returns no
    frames) or "collect" (read folders whose jobs ran elsewhere).

    ``apt``: label APTs (``apt``, e); ``pgt``: label PGTs (``pgt``, e·Å/V, G[ξ,η,ζ] = ∂α_ξη/∂r_ζ) with
    ``pgt_route`` (None: pyscf "field", xtb and cp2k "field-forces"), field step ``pgt_field`` (V/Å) and
    displacement ``pgt_delta`` (Å) (None: the route's default); CP2K's PGT folders are ``workdir/frame<k>-pgt``.
    Atoms not in ``indices`` get NaN rows.
    """
    if not apt and not pgt:
        raise LabelError("nothing to label: ask for APTs, PGTs or both")
    if apt and route not in ROUTES:
        raise LabelError(f"unknown route {route!r} ({', '.join(ROUTES)})")
    if apt and route == "analytic" and backend != "pyscf":
        raise LabelError("the analytic route needs the pyscf backend")
    if backend not in BACKENDS:
        raise LabelError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    pgt_route = check_pgt_route(backend, pgt_route) if pgt else None
    if backend == "cp2k":
        if not all(a.pbc.all() for a in frames):
            raise LabelError(f"{source}: the cp2k backend labels periodic boxes (a cell and pbc on all axes)")
        if pgt:
            _cp2k_pgt()  # refuse now, not after the first frame
        make = None
    else:
        make = factory(backend, **options)
    if backend != "cp2k" and any(a.pbc.any() for a in frames):
        why = ("tblite's field and dipole are not gauge-invariant under periodic boundaries" if backend == "xtb"
               else "PySCF is used for molecules here")
        raise LabelError(f"{source}: the {backend} backend labels clusters only ({why}); set pbc to False")
    what = ", ".join(([f"{route} route"] if apt else []) + ([f"PGT {pgt_route}"] if pgt else []))
    done, failed = [], []
    bar = progress_bar(iterable=frames, desc=f"label ({backend}, {what})", disable=not progress)
    for k, atoms in enumerate(bar):
        out = atoms.copy()
        out.calc = None
        try:
            written = False
            if apt:
                value = _apt(atoms, k, backend, route, make, field, delta, indices, workdir, mode, options)
                if value is None:
                    written = True
                else:
                    set_apt(out, value)
                    out.info.update(apt_backend=backend, apt_route=route)
            if pgt:
                if backend == "cp2k":
                    g = cp2k_pgt_frame(atoms, Path(workdir) / f"frame{k:05d}-pgt", pgt_route, mode, pgt_field,
                                       pgt_delta, indices, **options)
                    extra = {}
                else:
                    g, extra = pgt_frame(atoms, backend, pgt_route, pgt_field, pgt_delta, **options)
                if g is None:
                    written = True
                else:
                    from aptnn.label.pgt import set_pgt

                    set_pgt(out, g if pgt_route == "displacement" and backend == "cp2k" else _keep_only(g, indices))
                    out.info.update(pgt_backend=backend, pgt_route=pgt_route, **extra)
            if written:
                continue  # job folders written
        except BackendMissing:
            raise
        except LabelError as err:
            if backend != "cp2k":
                raise LabelError(f"{source}, frame {k}: {err}" if source else f"frame {k}: {err}") from None
            failed.append((k, str(err)))  # a CP2K run that failed or did not converge: go on with the others
            continue
        except Exception as err:  # an SCF that fails: record the frame, go on with the others
            failed.append((k, f"{type(err).__name__}: {err}"))
            continue
        done.append(out)
    return done, failed


def _apt(atoms: Atoms, k: int, backend: str, route: str, make, field: float | None, delta: float,
         indices: list[int] | None, workdir, mode: str, options: dict) -> np.ndarray | None:
    """APTs (N, 3, 3) in e of frame ``k`` (None: CP2K job folder written)."""
    if backend == "cp2k":
        apt = cp2k_frame(atoms, Path(workdir) / f"frame{k:05d}", route, mode, field, delta, indices, **options)
        if apt is None:
            return None
        return _keep_only(apt, indices) if route == "field" else apt
    if route == "field":
        return _keep_only(field_route(atoms, make, 0.01 if field is None else field), indices)
    if route == "displacement":
        return displacement_route(atoms, make(None), delta, indices)
    from aptnn.label.pyscf_backend import analytic_apt

    return _keep_only(analytic_apt(atoms, **options), indices)
