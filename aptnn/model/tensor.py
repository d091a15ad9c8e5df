"""A general 3×3 tensor ↔ its irreducible parts 1x0e + 1x1e + 1x2e, equivariant normalisation, sum rule.

For P[ξ,ζ] = ∂M_ξ/∂r_ζ both indices are polar vectors (1o ⊗ 1o = 0e ⊕ 1e ⊕ 2e): 0e is the isotropic
part (trace), 1e the antisymmetric part (an axial vector), 2e the symmetric traceless part. The change of
basis comes from e3nn's ``ReducedTensorProducts('ij', i='1o', j='1o')``; it is orthonormal, so an RMSE over
the 9 irreducible components equals the RMSE over the 9 Cartesian components.

Normalisation scales each irrep by one number (and shifts only the isotropic part per species), which
commutes with rotations: unlike per-Cartesian-component scaling it keeps exact equivariance.
"""
from __future__ import annotations

import torch
from e3nn import o3

IRREPS_APT = o3.Irreps("1x0e+1x1e+1x2e")
#: slices of the 9 irreducible components
IRREP_SLICES = {"0e": slice(0, 1), "1e": slice(1, 4), "2e": slice(4, 9)}


def change_of_basis(dtype=torch.float64) -> torch.Tensor:
    """Q with shape (9, 3, 3): P[ξ,ζ] = Σ_k y_k Q[k,ξ,ζ] for irreducible components y (orthonormal)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # built exactly, whatever the default dtype, then rounded
    try:
        q = o3.ReducedTensorProducts("ij", i="1o", j="1o").change_of_basis
    finally:
        torch.set_default_dtype(previous)
    return q.detach().to(dtype)


def to_cartesian(y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(…, 9) irreducible components → (…, 3, 3) tensors P[ξ,ζ]."""
    return torch.einsum("...k,kij->...ij", y, q)


def to_irreps(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(…, 3, 3) tensors P[ξ,ζ] → (…, 9) irreducible components."""
    return torch.einsum("...ij,kij->...k", p, q)


def normalisation_stats(y: torch.Tensor, species: torch.Tensor, n_species: int) -> dict[str, list[float]]:
    """Per-species mean of the isotropic component and one RMS scale per irrep (0e, 1e, 2e).

    ``y``: (N, 9) irreducible components of labelled atoms, ``species``: (N,) species indices.
    Species without labels get the mean over all species.
    """
    y = y.double()
    overall = float(y[:, 0].mean())
    means = []
    for s in range(n_species):
        sel = species == s
        means.append(float(y[sel, 0].mean()) if sel.any() else overall)
    centred = y.clone()
    centred[:, 0] -= torch.tensor(means, dtype=y.dtype)[species]
    scales = []
    for sl in IRREP_SLICES.values():
        rms = float(centred[:, sl].pow(2).mean().sqrt())
        scales.append(rms if rms > 1e-8 else 1.0)
    return {"iso_mean": means, "irrep_scale": scales}


def apply_sum_rule(p: torch.Tensor, frame: torch.Tensor, n_frames: int,
                   total_charge: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Shift every P_i of a frame by the same tensor so that Σ_i P_i = Q·I exactly (Q in e per frame).

    The shift (Σ_i P_i − Q·I)/N transforms like P itself, so equivariance is preserved.
    """
    eye = torch.eye(3, dtype=p.dtype, device=p.device)
    total = torch.zeros(n_frames, 3, 3, dtype=p.dtype, device=p.device).index_add_(0, frame, p)
    counts = torch.zeros(n_frames, dtype=p.dtype, device=p.device).index_add_(
        0, frame, torch.ones_like(frame, dtype=p.dtype))
    charge = torch.as_tensor(total_charge, dtype=p.dtype, device=p.device).expand(n_frames)
    excess = (total - charge[:, None, None] * eye) / counts[:, None, None]
    return p - excess[frame]
