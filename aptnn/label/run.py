"""Label frames: reference APTs for every frame of a file, written as extxyz (``apt``, e), failures reported."""
from __future__ import annotations

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from aptnn.frames import set_apt
from aptnn.label.routes import LabelError, displacement_route, field_route

BACKENDS = ("xtb", "pyscf")
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


def label_frames(frames: list[Atoms], backend: str = "xtb", route: str = "field", field: float = 0.01,
                 delta: float = 0.01, indices: list[int] | None = None, source: str = "",
                 progress: bool = True, **options) -> tuple[list[Atoms], list[tuple[int, str]]]:
    """(labelled copies of the frames that worked, [(frame index, reason)] of those that failed).

    ``options`` go to the backend (pyscf: ``method`` "hf" or an XC functional, ``basis``).
    """
    if route not in ROUTES:
        raise LabelError(f"unknown route {route!r} ({', '.join(ROUTES)})")
    if route == "analytic" and backend != "pyscf":
        raise LabelError("the analytic route needs the pyscf backend")
    make = factory(backend, **options)
    if any(a.pbc.any() for a in frames):
        why = ("tblite's field and dipole are not gauge-invariant under periodic boundaries" if backend == "xtb"
               else "PySCF is used for molecules here")
        raise LabelError(f"{source}: the {backend} backend labels clusters only ({why}); set pbc to False")
    done, failed = [], []
    for k, atoms in enumerate(tqdm(frames, desc=f"label ({backend}, {route})", disable=not progress)):
        try:
            if route == "field":
                apt = field_route(atoms, make, field)
                if indices is not None:
                    keep = np.zeros(len(atoms), dtype=bool)
                    keep[indices] = True
                    apt[~keep] = np.nan
            elif route == "displacement":
                apt = displacement_route(atoms, make(None), delta, indices)
            else:
                from aptnn.label.pyscf_backend import analytic_apt

                apt = analytic_apt(atoms, **options)
                if indices is not None:
                    keep = np.zeros(len(atoms), dtype=bool)
                    keep[indices] = True
                    apt[~keep] = np.nan
        except LabelError:
            raise
        except Exception as err:  # an SCF that fails: record the frame, go on with the others
            failed.append((k, f"{type(err).__name__}: {err}"))
            continue
        out = atoms.copy()
        out.calc = None
        set_apt(out, apt)
        out.info.update(apt_backend=backend, apt_route=route)
        done.append(out)
    return done, failed
