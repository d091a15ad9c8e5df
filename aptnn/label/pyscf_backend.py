"""PySCF (HF or Kohn–Sham DFT, molecules) as a labelling backend, with three independent routes to APTs:

* an ASE calculator (:class:`PySCFCalculator`) with energies, forces and dipoles, optionally in a uniform
  electric field, for the generic finite-field and finite-displacement routes;
* :func:`analytic_apt`, the analytic dipole derivative from coupled-perturbed SCF (PySCF's nuclear-Hessian
  response ``solve_mo1``), which core PySCF does not expose as such.

Atomic units inside (the APT, ∂μ/∂R in e·bohr/bohr, is already in e); ASE units outside.
Analytic APT of atom A (D the AO density matrix, C_occ the occupied orbitals, U^Aζ their response)::

    P_A[ξ,ζ] = Z_A δ_ξζ − Tr(∂D/∂R_Aζ · r_ξ) + 2 Σ_μ Σ_{ν∈A} D_μν ⟨μ| r_ξ ∂_ζ |ν⟩,   ∂D/∂R = 2(U C_occᵀ + C_occ Uᵀ)

Under a field E (a.u.) the electronic Hamiltonian gains +E·r (electrons carry −e) and the nuclei −Z E·R, so
F_A = −∂E/∂R_A picks up the derivative of the field integrals and +Z_A E; then ∂F_Aζ/∂E_ξ = P_A[ξ,ζ].
"""
from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from aptnn import keys, units
from aptnn.label.routes import BackendMissing, LabelError


def _pyscf():
    try:
        import pyscf  # noqa: F401
        import pyscf.hessian  # noqa: F401
        from pyscf import dft, gto, scf
    except ImportError:
        raise BackendMissing("the pyscf backend needs PySCF: pip install pyscf") from None
    return gto, scf, dft


def build(atoms: Atoms, method: str = "b3lyp", basis: str = "6-31g*", charge: int | None = None,
          spin: int = 0, conv_tol: float = 1e-11):
    """(mol, mean-field object) for a molecule; ``method`` "hf" or a PySCF XC functional name."""
    gto, scf, dft = _pyscf()
    if atoms.pbc.any():
        raise LabelError("the pyscf backend labels molecules only (open boundaries); set pbc to False")
    charge = int(round(atoms.info.get(keys.CHARGE, 0))) if charge is None else charge
    mol = gto.M(atom=list(zip(atoms.get_chemical_symbols(), atoms.positions)), basis=basis, unit="Angstrom",
                charge=charge, spin=spin, verbose=0)
    if method.lower() in ("hf", "rhf"):
        mf = scf.RHF(mol)
    else:
        mf = dft.RKS(mol)
        mf.xc = method
        mf.grids.level = 5
    mf.conv_tol = conv_tol
    mf.conv_tol_grad = np.sqrt(conv_tol)
    return mol, mf


def _field_gradient_terms(mol, dm: np.ndarray, field_au: np.ndarray) -> np.ndarray:
    """∂/∂R_A of Tr(D E·r) through the moving basis functions, minus Z_A E (nuclei in the field); (natm, 3)."""
    nao = mol.nao
    irp = mol.intor("int1e_irp", comp=9).reshape(3, 3, nao, nao)  # ⟨μ| r_ξ ∂_ζ |ν⟩
    out = np.zeros((mol.natm, 3))
    for a, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
        # −2 Σ_ξ E_ξ Σ_μ Σ_{ν∈A} D_μν ⟨μ|r_ξ ∂_ζ|ν⟩
        out[a] = -2 * np.einsum("x,xzmn,mn->z", field_au, irp[:, :, :, p0:p1], dm[:, p0:p1])
    return out - mol.atom_charges()[:, None] * field_au[None, :]


def scf_in_field(atoms: Atoms, field_v_per_a=None, **options):
    """Converged (mol, mf) with an optional uniform field (V/Å); raises if the SCF does not converge."""
    mol, mf = build(atoms, **options)
    field = np.zeros(3) if field_v_per_a is None else (np.asarray(field_v_per_a, float)
                                                         / units.FIELD_AU_TO_V_PER_ANGSTROM)
    if np.any(field):
        mol.set_common_orig((0.0, 0.0, 0.0))
        h0 = mf.get_hcore()
        hfield = np.einsum("x,xij->ij", field, mol.intor("int1e_r", comp=3))
        mf.get_hcore = lambda *args: h0 + hfield
        e_nuc = mol.energy_nuc() - float(mol.atom_charges() @ mol.atom_coords() @ field)
        mf.energy_nuc = lambda *args: e_nuc
    mf.kernel()
    if not mf.converged:
        raise RuntimeError("SCF did not converge")
    return mol, mf, field


class PySCFCalculator(Calculator):
    """ASE calculator: energy (eV), forces (eV/Å) and dipole (e·Å) from PySCF, optionally in a field (V/Å)."""

    implemented_properties = ["energy", "forces", "dipole"]

    def __init__(self, method: str = "b3lyp", basis: str = "6-31g*", field=None, **kwargs):
        super().__init__(**kwargs)
        self.options = {"method": method, "basis": basis}
        self.field = None if field is None else np.asarray(field, dtype=float)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        mol, mf, field = scf_in_field(self.atoms, self.field, **self.options)
        grad = mf.nuc_grad_method().kernel()
        if np.any(field):
            grad = grad + _field_gradient_terms(mol, mf.make_rdm1(), field)
        dipole_au = mf.dip_moment(unit="au", verbose=0)  # e·bohr; with a field the origin is (0, 0, 0)
        self.results = {"energy": float(mf.e_tot) * units.HARTREE_TO_EV,
                        "forces": -grad * units.FORCE_AU_TO_EV_PER_ANGSTROM,
                        "dipole": np.asarray(dipole_au) * units.BOHR_TO_ANGSTROM}


def pyscf_factory(method: str = "b3lyp", basis: str = "6-31g*"):
    """``make(field)`` for :func:`aptnn.label.field_route` (``make(None)``: no field)."""
    _pyscf()

    def make(field):
        return PySCFCalculator(method, basis, field)

    return make


def analytic_apt(atoms: Atoms, method: str = "b3lyp", basis: str = "6-31g*", field=None,
                 cpscf_tol: float | None = None) -> np.ndarray:
    """APTs (N, 3, 3) in e, P[i, ξ, ζ] = ∂μ_ξ/∂R_iζ, from coupled-perturbed SCF (closed shells), optionally in a
    uniform ``field`` (V/Å): the nuclear-derivative Hamiltonian of the CPHF equations then gains the moving basis
    functions' field term ∂/∂R_Aζ ⟨μ|E·r|ν⟩ = −Σ_ξ E_ξ (⟨μ|r_ξ ∂_ζ|ν⟩[ν∈A] + transpose). ``cpscf_tol``: the
    CPHF convergence (PySCF's default if None)."""
    mol, mf, field_au = scf_in_field(atoms, field, method=method, basis=basis)
    mol.set_common_orig((0.0, 0.0, 0.0))
    if cpscf_tol is not None:
        mf.conv_tol_cpscf = cpscf_tol
    nao = mol.nao
    irp = mol.intor("int1e_irp", comp=9).reshape(3, 3, nao, nao)  # ⟨μ| r_ξ ∂_ζ |ν⟩
    hess = mf.Hessian()
    h1ao = hess.make_h1(mf.mo_coeff, mf.mo_occ)
    slices = [(p0, p1) for _, _, p0, p1 in mol.aoslice_by_atom()]
    if np.any(field_au):
        for a, (p0, p1) in enumerate(slices):
            m = np.zeros((3, nao, nao))
            m[:, :, p0:p1] = -np.einsum("x,xzmn->zmn", field_au, irp[:, :, :, p0:p1])
            h1ao[a] = h1ao[a] + m + m.transpose(0, 2, 1)
    mo1, _ = hess.solve_mo1(mf.mo_energy, mf.mo_coeff, mf.mo_occ, h1ao)
    occ = mf.mo_coeff[:, mf.mo_occ > 0]
    dm = mf.make_rdm1()
    r = mol.intor("int1e_r", comp=3)
    apt = np.zeros((mol.natm, 3, 3))
    for a, (p0, p1) in enumerate(slices):
        # Tr(∂D/∂R_Aζ r_ξ) = 4 Σ U_pi C_qi r_ξ,pq  (∂D = 2(U Cᵀ + C Uᵀ), r symmetric)
        response = 4 * np.einsum("zpi,qi,xpq->xz", mo1[a], occ, r)
        basis_move = 2 * np.einsum("xzmn,mn->xz", irp[:, :, :, p0:p1], dm[:, p0:p1])
        apt[a] = mol.atom_charges()[a] * np.eye(3) - response + basis_move
    return apt
