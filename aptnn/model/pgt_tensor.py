"""Polarisability-gradient tensors (PGTs) ↔ irreducible parts 2x1o + 1x2o + 1x3o, normalisation, sum rule,
and the contraction dα/dt = Σ_i G_i·v_i for Raman streams.

The PGT of atom i is G_i[ξ,η,ζ] = ∂α_ξη/∂r_iζ, layout (N, 3, 3, 3) indexed [i, ξ, η, ζ], in e·Å/V
(α in e·Å²/V, r in Å). It is symmetric in ξη; as α is an even tensor and r a polar vector it transforms as
G'[a,b,c] = R_ai R_bj R_ck G[i,j,k] for every orthogonal R, so inversion (R = −I) gives G → −G: odd parity.
Sym²(1o) ⊗ 1o = (0e ⊕ 2e) ⊗ 1o = 1o ⊕ (1o ⊕ 2o ⊕ 3o): 18 components in four blocks (in this order)

    "1o_iso"    the gradient of the isotropic part, G[ξ,η,ζ] ⊃ δ_ξη a_ζ/3 with a_ζ = Σ_ξ G[ξ,ξ,ζ]
    "1o_aniso"  the vector part of the gradient of the anisotropic (traceless) part
    "2o", "3o"  the rest of the traceless part (3o needs l = 3 features or a tensor product at the readout)

The change of basis is e3nn's ``ReducedTensorProducts('ijk=jik', i='1o', k='1o')``, built in float64; it is
orthonormal, so RMSEs over the 18 irreducible components equal RMSEs over the 27 Cartesian components of
ξη-symmetric tensors, and ``to_irreps`` of any tensor projects it onto its ξη-symmetric part.

Normalisation uses one scale per block (no mean: none of the odd irreps has an isotropic part), which commutes
with rotations and inversion; scaling Cartesian components separately would break equivariance.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from e3nn import o3

from aptnn.keys import VOIGT

IRREPS_PGT = o3.Irreps("2x1o+1x2o+1x3o")
#: slices of the 18 irreducible components, one per block (each block gets one normalisation scale)
BLOCK_SLICES = {"1o_iso": slice(0, 3), "1o_aniso": slice(3, 6), "2o": slice(6, 11), "3o": slice(11, 18)}
BLOCK_DIMS = (3, 3, 5, 7)


def pgt_irreps() -> o3.Irreps:
    """The irreps of a ξη-symmetric PGT: 2x1o+1x2o+1x3o (dimension 18)."""
    return IRREPS_PGT


@lru_cache(maxsize=None)
def _basis64() -> torch.Tensor:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        rtp = o3.ReducedTensorProducts("ijk=jik", i="1o", k="1o")
    finally:
        torch.set_default_dtype(previous)
    assert rtp.irreps_out == IRREPS_PGT, rtp.irreps_out
    return rtp.change_of_basis.detach().double()


def change_of_basis(dtype=torch.float64, device=None) -> torch.Tensor:
    """Q with shape (18, 3, 3, 3): G[ξ,η,ζ] = Σ_k y_k Q[k,ξ,η,ζ] (orthonormal rows, each symmetric in ξη)."""
    return _basis64().to(dtype=dtype, device=device, copy=True)   # a copy: modules load weights into theirs


def _q(q: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return change_of_basis(like.dtype, like.device) if q is None else q


def to_cartesian(y: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
    """(…, 18) irreducible components → (…, 3, 3, 3) ξη-symmetric tensors G[ξ,η,ζ] (same units)."""
    return torch.einsum("...k,kijl->...ijl", y, _q(q, y))


def to_irreps(g: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
    """(…, 3, 3, 3) tensors G[ξ,η,ζ] → (…, 18) irreducible components of their ξη-symmetric part."""
    return torch.einsum("...ijl,kijl->...k", g, _q(q, g))


def symmetrise(g: torch.Tensor) -> torch.Tensor:
    """Projection of (…, 3, 3, 3) tensors onto their ξη-symmetric part (G + G^{ηξζ})/2."""
    return (g + g.transpose(-3, -2)) / 2


def block_scale(scales, dtype=torch.float64, device=None) -> torch.Tensor:
    """Four per-block scales (…, 4) → per-component scales (…, 18) (block k repeated BLOCK_DIMS[k] times)."""
    s = torch.as_tensor(scales, dtype=dtype, device=device)
    return s.repeat_interleave(torch.tensor(BLOCK_DIMS, device=s.device), dim=-1)


def normalisation_stats(y: torch.Tensor, species: torch.Tensor, n_species: int) -> dict[str, list]:
    """One RMS scale per block (1o_iso, 1o_aniso, 2o, 3o) of labelled PGTs, overall and per species.

    ``y``: (N, 18) irreducible components in e·Å/V, ``species``: (N,) species indices. The mean is zero by
    symmetry (odd irreps have no invariant part), so nothing is subtracted. Returns ``irrep_scale`` (4 floats,
    e·Å/V) and ``species_irrep_scale`` (n_species × 4; species without labels get the overall scales). Both are
    rotation- and inversion-invariant, so de-normalising with either keeps exact equivariance.
    """
    y = y.double()

    def rms(rows: torch.Tensor) -> list[float]:
        out = []
        for sl in BLOCK_SLICES.values():
            r = float(rows[:, sl].pow(2).mean().sqrt()) if len(rows) else 0.0
            out.append(r if r > 1e-8 else 1.0)
        return out

    overall = rms(y)
    per_species = [rms(y[species == s]) if bool((species == s).any()) else list(overall) for s in range(n_species)]
    return {"irrep_scale": overall, "species_irrep_scale": per_species}


def apply_sum_rule(g: torch.Tensor, frame: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Subtract the per-frame mean over atoms so that Σ_i G_i = 0 exactly in every frame.

    ``g``: (N, …) per-atom PGTs (Cartesian (N, 3, 3, 3) or irreducible (N, 18): the map is linear, so both
    give the same result), ``frame``: (N,) frame index of every atom. The shift transforms like G itself, so
    equivariance is preserved (``aptnn.model.tensor.apply_sum_rule`` with total charge 0).
    """
    total = torch.zeros((n_frames,) + g.shape[1:], dtype=g.dtype, device=g.device).index_add_(0, frame, g)
    counts = torch.zeros(n_frames, dtype=g.dtype, device=g.device).index_add_(
        0, frame, torch.ones_like(frame, dtype=g.dtype))
    mean = total / counts.clamp(min=1).reshape((n_frames,) + (1,) * (g.dim() - 1))
    return g - mean[frame]


def dadt_components(a: torch.Tensor) -> torch.Tensor:
    """Symmetric (…, 3, 3) → (…, 6) components in Voigt order xx, yy, zz, yz, xz, xy (plain components,
    no √2 or 2 factors; the symmetric part is taken). Units unchanged (dα/dt: e·Å²/(V·fs))."""
    a = (a + a.transpose(-2, -1)) / 2
    return torch.stack([a[..., i, j] for i, j in VOIGT], dim=-1)


def from_dadt_components(c: torch.Tensor) -> torch.Tensor:
    """(…, 6) Voigt components (xx, yy, zz, yz, xz, xy) → the symmetric (…, 3, 3) tensor."""
    a = c.new_zeros(c.shape[:-1] + (3, 3))
    for k, (i, j) in enumerate(VOIGT):
        a[..., i, j] = c[..., k]
        a[..., j, i] = c[..., k]
    return a


def contract(g: torch.Tensor, v: torch.Tensor, frame: torch.Tensor | None = None, n_frames: int | None = None,
             voigt: bool = False) -> torch.Tensor:
    """dα/dt = Σ_i G_i·v_i, i.e. dα_ξη/dt = Σ_i Σ_ζ G_i[ξ,η,ζ] v_iζ.

    ``g``: (…, N, 3, 3, 3) PGTs in e·Å/V, ``v``: (…, N, 3) velocities in Å/fs → (…, 3, 3) in e·Å²/(V·fs), or
    (…, 6) in Voigt order with ``voigt=True``. With ``frame`` ((N,) frame indices of a batch, g (N, 3, 3, 3))
    the sum runs per frame: (n_frames, 3, 3) or (n_frames, 6).
    """
    per_atom = torch.einsum("...ijk,...k->...ij", g, v)
    if frame is None:
        out = per_atom.sum(dim=-3)
    else:
        n = int(frame.max()) + 1 if n_frames is None else n_frames
        out = per_atom.new_zeros((n, 3, 3)).index_add_(0, frame, per_atom)
    return dadt_components(out) if voigt else out
