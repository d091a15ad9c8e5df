"""Label frames: reference APTs for every frame of a file, written as extxyz (``apt``, e), failures reported."""
from __future__ import annotations

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from aptnn.frames import set_apt
from aptnn.label.routes import LabelError, displacement_route, field_route

BACKENDS = ("xtb",)


def factory(backend: str, **options):
    """``make(field)`` calculator factory of a backend."""
    if backend == "xtb":
        from aptnn.label.xtb import xtb_factory

        return xtb_factory(**options)
    raise LabelError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


def label_frames(frames: list[Atoms], backend: str = "xtb", route: str = "field", field: float = 0.01,
                 delta: float = 0.01, indices: list[int] | None = None, source: str = "",
                 progress: bool = True) -> tuple[list[Atoms], list[tuple[int, str]]]:
    """(labelled copies of the frames that worked, [(frame index, reason)] of those that failed)."""
    make = factory(backend)
    if backend == "xtb" and any(a.pbc.any() for a in frames):
        raise LabelError(f"{source}: the xtb backend labels clusters only (tblite's field and dipole are not "
                         "gauge-invariant under periodic boundaries); set pbc to False or use another backend")
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
                raise LabelError(f"unknown route {route!r} (field or displacement)")
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
