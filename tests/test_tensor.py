"""Irreps ↔ Cartesian conversion, index convention, equivariant normalisation and the sum rule."""
import numpy as np
import torch
from e3nn import o3

from aptnn.model.tensor import (
    IRREP_SLICES,
    apply_sum_rule,
    change_of_basis,
    normalisation_stats,
    to_cartesian,
    to_irreps,
)


def test_change_of_basis_is_orthonormal_and_round_trips():
    q = change_of_basis()
    gram = torch.einsum("kij,lij->kl", q, q)
    assert torch.allclose(gram, torch.eye(9, dtype=q.dtype), atol=1e-12)
    p = torch.randn(5, 3, 3, dtype=torch.float64)
    assert torch.allclose(to_cartesian(to_irreps(p, q), q), p, atol=1e-12)


def test_irreducible_parts_are_trace_antisymmetric_and_symmetric_traceless():
    q = change_of_basis()
    p = torch.randn(3, 3, dtype=torch.float64)
    y = to_irreps(p, q)
    iso = to_cartesian(torch.cat([y[:1], torch.zeros(8, dtype=y.dtype)]), q)
    assert torch.allclose(iso, torch.eye(3, dtype=p.dtype) * torch.trace(p) / 3, atol=1e-12)
    anti = y.clone()
    anti[IRREP_SLICES["0e"]] = 0
    anti[IRREP_SLICES["2e"]] = 0
    assert torch.allclose(to_cartesian(anti, q), (p - p.T) / 2, atol=1e-12)
    # the antisymmetric part must transpose with a sign flip: P and Pᵀ differ exactly in 1e
    yt = to_irreps(p.T, q)
    assert torch.allclose(yt[IRREP_SLICES["1e"]], -y[IRREP_SLICES["1e"]], atol=1e-12)
    assert torch.allclose(yt[IRREP_SLICES["2e"]], y[IRREP_SLICES["2e"]], atol=1e-12)


def test_irreps_rotate_with_wigner_matrices():
    """P → R P Rᵀ in Cartesian space is the block-diagonal D(R) on the irreducible components."""
    q = change_of_basis()
    r = o3.rand_matrix(dtype=torch.float64)
    p = torch.randn(3, 3, dtype=torch.float64)
    d = o3.Irreps("0e+1e+2e").D_from_matrix(r)
    assert torch.allclose(to_irreps(r @ p @ r.T, q), d @ to_irreps(p, q), atol=1e-10)


def test_normalisation_is_rotation_invariant():
    """Statistics from rotated labels are identical: no per-Cartesian-component scaling."""
    q = change_of_basis()
    p = torch.randn(50, 3, 3, dtype=torch.float64) + torch.eye(3, dtype=torch.float64)
    species = torch.arange(50) % 2
    r = o3.rand_matrix(dtype=torch.float64)
    a = normalisation_stats(to_irreps(p, q), species, 2)
    b = normalisation_stats(to_irreps(r @ p @ r.T, q), species, 2)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-8)
    assert a["irrep_scale"][0] > 0 and a["iso_mean"][0] != a["iso_mean"][1]


def test_sum_rule_exact_per_frame():
    p = torch.randn(7, 3, 3, dtype=torch.float64)
    frame = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    out = apply_sum_rule(p, frame, 2, torch.tensor([0.0, 2.0], dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(out[:3].sum(0), 0 * eye, atol=1e-12)
    assert torch.allclose(out[3:].sum(0), 2 * eye, atol=1e-12)
