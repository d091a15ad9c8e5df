"""GFN2-xTB through tblite's ASE calculator (clusters only: under PBC tblite's field and dipole are not
gauge-invariant). tblite 0.8.0 passes the field array to ``tblite_new_electric_field`` unconverted and raises a
cffi TypeError; :func:`patch_tblite_field` converts it (applied only where that bug is present)."""
from __future__ import annotations

import numpy as np

from aptnn.label.routes import BackendMissing


def _tblite():
    try:
        import tblite.ase
        import tblite.interface
        import tblite.library
    except ImportError:
        raise BackendMissing("the xtb backend needs tblite: pip install tblite") from None
    return tblite


def patch_tblite_field() -> bool:
    """Convert the field to a C double[3] for tblite versions that do not (returns True when patched)."""
    tblite = _tblite()
    lib = tblite.library
    original = lib.new_electric_field
    if getattr(original, "_aptnn_patched", False):
        return True
    try:
        original(None, None, None, np.zeros(3))
        return False  # accepted as it is: nothing to patch
    except TypeError:
        pass

    def new_electric_field(ctx, mol, calc, efield):
        return lib.lib.tblite_new_electric_field(lib.ffi.new("double[3]", [float(v) for v in efield]))

    new_electric_field._aptnn_patched = True
    lib.new_electric_field = new_electric_field
    tblite.interface.Calculator._interaction["electric-field"] = new_electric_field
    return True


def xtb_factory(method: str = "GFN2-xTB", accuracy: float = 0.01):
    """``make(field)`` for :func:`aptnn.label.field_route`; ``make(None)`` is the zero-field calculator."""
    tblite = _tblite()
    patch_tblite_field()

    def make(field):
        kw = {"method": method, "accuracy": accuracy, "verbosity": 0}
        if field is not None:
            kw["electric_field"] = np.asarray(field, dtype=float)
        return tblite.ase.TBLite(**kw)

    return make
