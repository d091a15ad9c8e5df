"""An ASE calculator around an APT model: atomic polar tensors, dM/dt and the force of a static electric field.

Index convention (as everywhere in aptnn): ``apt[i, ξ, ζ] = P_i[ξ, ζ] = ∂M_ξ/∂r_iζ`` in e (row ξ = dipole
component, column ζ = displacement of atom i). The Born effective charges are the same numbers (the APT of a
neutral system, in units of e), stored under ASE's property name ``born_effective_charges`` with the same
layout, the one of VASP/phonopy (``Z[i, ξ, ζ] = ∂P_ξ/∂u_iζ``, polarisation index first). i-PI's ``BEC``
array is the transpose per atom, ``Z_ipi[3i+ζ, ξ] = ∂μ_ξ/∂R_iζ``::

    z_ipi = apt.transpose(0, 2, 1).reshape(3 * len(atoms), 3)

Units: positions Å; APTs e; dM/dt e·Å/fs; ``external_field`` V/Å; forces eV/Å (e · V/Å = eV/Å); energy eV.
ASE velocities (``atoms.get_velocities()``) are Å per ASE time unit (≈ 10.18 fs) and are converted to Å/fs
with :data:`aptnn.units.ASE_TIME_TO_FS`.
"""
from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes, compare_atoms

from aptnn import keys, units
from aptnn.errors import InputError
from aptnn.estimators import contributions

__all__ = ["APTCalculator"]


class APTCalculator(Calculator):
    """ASE calculator that predicts atomic polar tensors with an aptnn model.

    >>> calc = APTCalculator("water-rpbe-d3", external_field=(0.0, 0.0, 0.1))   # field in V/Å
    >>> atoms.calc = calc
    >>> apt = calc.get_property("apt", atoms)          # (N, 3, 3) e, P[i, ξ, ζ] = ∂M_ξ/∂r_iζ
    >>> forces = atoms.get_forces()                    # (N, 3) eV/Å, F_i = P_iᵀ·E

    Properties (``calc.get_property(name, atoms)``):

    * ``apt`` (N, 3, 3) in e, the committee mean; ``born_effective_charges`` the same array (ASE's name);
    * ``apt_std`` (N, 3, 3) in e, the committee's standard deviation (only for models with several members);
    * ``dipole_derivative`` (3,) in e·Å/fs, dM/dt = Σ_i P_i·v_i for the atoms' velocities (ASE momenta, so
      ``atoms.get_velocities()`` converted from ASE units to Å/fs); atoms without momenta are an error. For
      velocities in Å/fs from elsewhere use :meth:`get_dipole_derivative`;
    * ``forces`` (N, 3) in eV/Å, the force of the static uniform field ``external_field`` E (V/Å) on the
      dipole, F_iζ = -∂(-M·E)/∂r_iζ = Σ_ξ E_ξ P_i[ξ, ζ] = (P_iᵀ·E)_ζ; zero without a field;
    * ``energy`` and ``free_energy``: 0 eV. The field energy -M·E needs the absolute dipole M, which an APT
      model does not give, so this calculator contributes the field's *force* only: combine it with a force
      field (:class:`ase.calculators.mixing.SumCalculator`); the total energy then lacks -M·E and is not
      conserved in NVE with a field (the field does work on the dipole).

    ``model``: a shipped model name, a checkpoint path or a loaded :class:`~aptnn.predict.APTPredictor`;
    ``dtype`` ("float32" default, "float64"), ``device`` and ``compile`` as in
    :meth:`APTPredictor.load <aptnn.predict.APTPredictor.load>` (ignored for a loaded predictor). The total
    charge of a frame is read from ``atoms.info["charge"]`` (e, default 0).
    """

    implemented_properties = ["apt", "apt_std", "born_effective_charges", "dipole_derivative", "forces",
                              "energy", "free_energy"]
    default_parameters = {"external_field": None}

    def __init__(self, model="water-rpbe-d3", external_field=None, dtype: str | None = None, device: str = "cpu",
                 compile: bool = False, **kwargs):
        from aptnn.predict import APTPredictor

        if isinstance(model, APTPredictor):
            self.predictor, self.model_name = model, None
        elif isinstance(model, (str, os.PathLike)):
            self.predictor = APTPredictor.load(str(model), dtype=dtype, device=device, compile=compile)
            self.model_name = str(model)
        else:
            raise TypeError(f"model must be a model name, a checkpoint path or an APTPredictor, not "
                            f"{type(model).__name__}")
        self.implemented_properties = [p for p in type(self).implemented_properties
                                       if p != "apt_std" or len(self.predictor.members) > 1]
        self._cache: tuple[Atoms, np.ndarray, np.ndarray | None] | None = None   # APTs of the last geometry
        super().__init__(external_field=external_field, **kwargs)

    # --- parameters -----------------------------------------------------------------------------------------
    def set(self, **kwargs) -> dict:
        """Change parameters (``external_field`` in V/Å, or None for no field); resets the results."""
        if "external_field" in kwargs:
            kwargs["external_field"] = _field(kwargs["external_field"])
        changed = super().set(**kwargs)
        if changed:
            self.reset()
        return changed

    @property
    def external_field(self) -> np.ndarray:
        """The static field E (3,) in V/Å (zeros without a field)."""
        field = self.parameters.get("external_field")
        return np.zeros(3) if field is None else np.asarray(field, dtype=float)

    # --- ASE protocol ---------------------------------------------------------------------------------------
    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changes (positions, numbers, cell, pbc, …) plus ``momenta``: dM/dt depends on the velocities."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and "momenta" not in changes:
            old, new = self.atoms.arrays.get("momenta"), atoms.arrays.get("momenta")
            if (old is None) != (new is None) or (old is not None and not np.array_equal(old, new)):
                changes.append("momenta")
        return changes

    def calculate(self, atoms: Atoms | None = None, properties=("apt",), system_changes=all_changes) -> None:
        """Fill ``results`` with every property for ``atoms`` (dipole_derivative only when it has momenta)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        apt, std = self._predict(atoms)
        self.results = {"apt": apt, "born_effective_charges": apt.copy()}
        if std is not None:
            self.results["apt_std"] = std
        self.results["forces"] = np.einsum("nxz,x->nz", apt, self.external_field)
        self.results["energy"] = self.results["free_energy"] = 0.0
        if "momenta" in atoms.arrays:
            self.results["dipole_derivative"] = _dmdt(apt, ase_velocities_to_fs(atoms.get_velocities()))
        elif "dipole_derivative" in properties:
            raise InputError("dipole_derivative needs velocities: the atoms have no momenta (set them with "
                             "atoms.set_velocities, in ASE units), or call get_dipole_derivative(atoms, "
                             "velocities=...) with velocities in Å/fs")

    # --- conveniences ---------------------------------------------------------------------------------------
    def get_apt(self, atoms: Atoms | None = None) -> np.ndarray:
        """(N, 3, 3) APTs in e, P[i, ξ, ζ] = ∂M_ξ/∂r_iζ."""
        return self.get_property("apt", atoms)

    def get_born_effective_charges(self, atoms: Atoms | None = None) -> np.ndarray:
        """(N, 3, 3) Born effective charges in e, the same layout as :meth:`get_apt` (i-PI: transpose per atom)."""
        return self.get_property("born_effective_charges", atoms)

    def get_dipole_derivative(self, atoms: Atoms | None = None, velocities=None) -> np.ndarray:
        """dM/dt (3,) in e·Å/fs: Σ_i P_i·v_i with ``velocities`` (N, 3) in Å/fs, or by default the atoms'
        own velocities (ASE momenta, converted from ASE units)."""
        if velocities is None:
            return self.get_property("dipole_derivative", atoms)
        apt = self.get_property("apt", atoms)
        v = np.asarray(velocities, dtype=float)
        if v.shape != (len(apt), 3):
            raise InputError(f"velocities have shape {v.shape}, expected ({len(apt)}, 3) in Å/fs")
        return _dmdt(apt, v)

    def _predict(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray | None]:
        """APTs (and committee std) of ``atoms``, reused while only momenta or the field change."""
        if self._cache is not None:
            old, apt, std = self._cache
            if not compare_atoms(old, atoms) and old.info.get(keys.CHARGE, 0.0) == atoms.info.get(keys.CHARGE, 0.0):
                return apt, std
        means, stds = self.predictor.predict_batch([atoms])
        apt, std = means[0], (stds[0] if stds is not None else None)
        self._cache = (atoms.copy(), apt, std)
        return apt, std


def ase_velocities_to_fs(velocities) -> np.ndarray:
    """Velocities in Å per ASE time unit (``atoms.get_velocities()``) → Å/fs."""
    return np.asarray(velocities, dtype=float) / units.ASE_TIME_TO_FS


def _dmdt(apt: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Σ_i P_i·v_i (3,) in e·Å/fs for APTs in e and velocities in Å/fs."""
    return contributions(apt, velocities).sum(0)


def _field(value) -> tuple[float, float, float] | None:
    """A static field as three finite floats (V/Å), or None."""
    if value is None:
        return None
    field = np.asarray(value, dtype=float)
    if field.shape != (3,) or not np.isfinite(field).all():
        raise InputError(f"external_field must be three finite numbers (Ex, Ey, Ez) in V/Å, not {value!r}")
    return tuple(float(x) for x in field)
