"""Label frames: reference APTs for every frame of a file, written as extxyz (``apt``, e), failures reported."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from aptnn.label.routes import BackendMissing, LabelError, displacement_route, field_route
from aptnn.labels import set_apt
from aptnn.progress import progress_bar

BACKENDS = ("xtb", "pyscf", "cp2k")
ROUTES = ("field", "displacement", "analytic")


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


def label_frames(frames: list[Atoms], backend: str = "xtb", route: str = "field", field: float | None = None,
                 delta: float = 0.01, indices: list[int] | None = None, source: str = "",
                 progress: bool = True, workdir: str | Path = "cp2k-jobs", mode: str = "run",
                 **options) -> tuple[list[Atoms], list[tuple[int, str]]]:
    """(labelled copies of the frames that worked, [(frame index, reason)] of those that failed).

    ``field``: V/Å (default 0.01 V/Å; CP2K 5e-4 a.u.); ``delta``: Å. ``options`` go to the backend (pyscf:
    ``method`` "hf" or an XC functional, ``basis``; cp2k: ``basis``, ``xc``, ``cutoff_ry``, ``dispersion``).
    CP2K works in ``workdir/frame<k>`` and ``mode`` "run", "jobs" (only write the job folders: returns no
    frames) or "collect" (read folders whose jobs ran elsewhere).
    """
    if route not in ROUTES:
        raise LabelError(f"unknown route {route!r} ({', '.join(ROUTES)})")
    if route == "analytic" and backend != "pyscf":
        raise LabelError("the analytic route needs the pyscf backend")
    if backend == "cp2k":
        if not all(a.pbc.all() for a in frames):
            raise LabelError(f"{source}: the cp2k backend labels periodic boxes (a cell and pbc on all axes)")
        make = None
    else:
        make = factory(backend, **options)
    if backend != "cp2k" and any(a.pbc.any() for a in frames):
        why = ("tblite's field and dipole are not gauge-invariant under periodic boundaries" if backend == "xtb"
               else "PySCF is used for molecules here")
        raise LabelError(f"{source}: the {backend} backend labels clusters only ({why}); set pbc to False")
    done, failed = [], []
    bar = progress_bar(iterable=frames, desc=f"label ({backend}, {route})", disable=not progress)
    for k, atoms in enumerate(bar):
        try:
            if backend == "cp2k":
                apt = cp2k_frame(atoms, Path(workdir) / f"frame{k:05d}", route, mode, field, delta, indices,
                                 **options)
                if apt is None:
                    continue  # job folder written
                apt = _keep_only(apt, indices) if route == "field" else apt
            elif route == "field":
                apt = _keep_only(field_route(atoms, make, 0.01 if field is None else field), indices)
            elif route == "displacement":
                apt = displacement_route(atoms, make(None), delta, indices)
            else:
                from aptnn.label.pyscf_backend import analytic_apt

                apt = _keep_only(analytic_apt(atoms, **options), indices)
        except BackendMissing:
            raise
        except LabelError as err:
            if backend != "cp2k":
                raise
            failed.append((k, str(err)))  # a CP2K run that failed or did not converge: go on with the others
            continue
        except Exception as err:  # an SCF that fails: record the frame, go on with the others
            failed.append((k, f"{type(err).__name__}: {err}"))
            continue
        out = atoms.copy()
        out.calc = None
        set_apt(out, apt)
        out.info.update(apt_backend=backend, apt_route=route)
        done.append(out)
    return done, failed
