"""PGT (∂α_ξη/∂r_ζ) irreps ↔ Cartesian maps, parity, normalisation, sum rule, Voigt components, contraction."""
import math

import numpy as np
import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant

from aptnn.model.pgt_tensor import (
    BLOCK_SLICES,
    apply_sum_rule,
    block_scale,
    change_of_basis,
    contract,
    dadt_components,
    from_dadt_components,
    normalisation_stats,
    pgt_irreps,
    symmetrise,
    to_cartesian,
    to_irreps,
)

F64 = torch.float64


def rotate(g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """G'[a,b,c] = R_ai R_bj R_ck G[i,j,k] (any orthogonal R, so det R = −1 includes the parity)."""
    return torch.einsum("ai,bj,ck,...ijk->...abc", r, r, r, g)


def rand_sym(*shape: int) -> torch.Tensor:
    return symmetrise(torch.randn(*shape, 3, 3, 3, dtype=F64))


def orthogonal_matrices() -> list[torch.Tensor]:
    """Three random rotations, the same with det R = −1, and the inversion."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        rs = [o3.rand_matrix(dtype=F64) for _ in range(3)]
    return rs + [-r for r in rs] + [-torch.eye(3, dtype=F64)]


@pytest.fixture(autouse=True)
def _seed_and_float64():
    """Fixed seed; float64 default dtype, as e3nn 0.6 builds D(R) (and assert_equivariant's rotations) in the
    default dtype: under float32 D for l = 3 is only good to ~1e-6 even when R is float64."""
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(previous)


def test_irreps_are_odd_2x1o_2o_3o_of_dimension_18():
    irreps = pgt_irreps()
    assert irreps == o3.Irreps("2x1o+1x2o+1x3o") and irreps.dim == 18
    assert all(ir.p == -1 for _, ir in irreps)
    q = change_of_basis()
    assert q.shape == (18, 3, 3, 3) and q.dtype == F64
    gram = torch.einsum("kijl,mijl->km", q, q)
    assert torch.allclose(gram, torch.eye(18, dtype=F64), atol=1e-12)
    assert torch.equal(q, q.transpose(1, 2))  # every basis tensor symmetric in ξη
    assert change_of_basis(torch.float32).dtype == torch.float32


def test_round_trips_and_symmetrising_projection():
    g = rand_sym(5)
    assert torch.allclose(to_cartesian(to_irreps(g)), g, atol=1e-12)
    y = torch.randn(4, 18, dtype=F64)
    assert torch.allclose(to_irreps(to_cartesian(y)), y, atol=1e-12)
    raw = torch.randn(6, 3, 3, 3, dtype=F64)  # not symmetric: the map projects onto its symmetric part
    assert torch.allclose(to_cartesian(to_irreps(raw)), symmetrise(raw), atol=1e-12)
    assert torch.allclose(symmetrise(symmetrise(raw)), symmetrise(raw))
    assert torch.allclose(symmetrise(g), g)


def test_first_block_is_the_isotropic_gradient_and_the_rest_traceless():
    g = rand_sym()
    y = to_irreps(g)
    iso = torch.zeros_like(y)
    iso[BLOCK_SLICES["1o_iso"]] = y[BLOCK_SLICES["1o_iso"]]
    a = torch.einsum("iik->k", g)  # gradient of the trace of α
    assert torch.allclose(to_cartesian(iso), torch.einsum("ij,k->ijk", torch.eye(3, dtype=F64), a) / 3, atol=1e-12)
    assert torch.allclose(torch.einsum("iik->k", to_cartesian(y - iso)), torch.zeros(3, dtype=F64), atol=1e-12)


@pytest.mark.parametrize("r", orthogonal_matrices())
def test_irreps_map_is_equivariant_including_inversion(r):
    """R⊗R⊗R on the Cartesian tensor is e3nn's D(R) on the irreps, for det R = ±1 (odd parity)."""
    g = rand_sym(3)
    d = pgt_irreps().D_from_matrix(r)
    assert torch.allclose(to_irreps(rotate(g, r)), to_irreps(g) @ d.T, atol=1e-10)
    y = torch.randn(3, 18, dtype=F64)
    assert torch.allclose(to_cartesian(y @ d.T), rotate(to_cartesian(y), r), atol=1e-10)


def test_inversion_flips_the_sign():
    g = rand_sym(2)
    inv = -torch.eye(3, dtype=F64)
    assert torch.allclose(rotate(g, inv), -g)
    assert torch.allclose(pgt_irreps().D_from_matrix(inv), -torch.eye(18, dtype=F64), atol=1e-12)


def test_sum_rule_per_frame_is_exact_equivariant_and_idempotent():
    frame = torch.tensor([0, 0, 0, 1, 1, 2])
    g = rand_sym(6)
    out = apply_sum_rule(g, frame, 3)
    totals = torch.zeros(3, 3, 3, 3, dtype=F64).index_add_(0, frame, out)
    assert torch.allclose(totals, torch.zeros_like(totals), atol=1e-12)
    assert torch.allclose(out[5], torch.zeros(3, 3, 3, dtype=F64))  # a one-atom frame has G = 0
    assert torch.allclose(apply_sum_rule(out, frame, 3), out, atol=1e-12)
    r = -o3.rand_matrix(dtype=F64)
    assert torch.allclose(apply_sum_rule(rotate(g, r), frame, 3), rotate(out, r), atol=1e-12)
    # linear: the same on irreducible components
    assert torch.allclose(apply_sum_rule(to_irreps(g), frame, 3), to_irreps(out), atol=1e-12)
    # a rigid translation of a frame does not change α
    v = torch.randn(3, 3, dtype=F64)[frame]
    assert torch.allclose(contract(out, v, frame, 3), torch.zeros(3, 3, 3, dtype=F64), atol=1e-12)


def test_normalisation_is_rotation_and_inversion_invariant():
    torch.manual_seed(1)
    species = torch.arange(40) % 3
    scale = torch.tensor([1.0, 5.0, 0.0])[species]  # species 2 has no signal → fallback scale 1
    y = torch.randn(40, 18, dtype=F64) * scale[:, None]
    y[:, BLOCK_SLICES["3o"]] *= 3
    r = -o3.rand_matrix(dtype=F64)
    a = normalisation_stats(y, species, 4)
    b = normalisation_stats(to_irreps(rotate(to_cartesian(y), r)), species, 4)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-8)
    assert len(a["irrep_scale"]) == 4 and len(a["species_irrep_scale"]) == 4
    assert a["species_irrep_scale"][1][3] > 3 * a["species_irrep_scale"][1][0]
    assert a["species_irrep_scale"][2] == [1.0] * 4 and a["species_irrep_scale"][3] == a["irrep_scale"]
    s = block_scale(a["irrep_scale"])
    assert s.shape == (18,) and s[0] == a["irrep_scale"][0] and s[-1] == a["irrep_scale"][3]
    d = pgt_irreps().D_from_matrix(r)
    assert torch.allclose(torch.diag(s) @ d, d @ torch.diag(s), atol=1e-10)  # block scales commute with D


def _features(pos: torch.Tensor, hidden: o3.Irreps, tp: o3.FullyConnectedTensorProduct,
              lmax: int = 3) -> torch.Tensor:
    """Equivariant per-atom features of point cloud ``pos`` (N, 3): radial-weighted spherical harmonics of the
    neighbour vectors (0e+1o+2e+3o), squared with a tensor product to reach the other parities."""
    sh_irreps = o3.Irreps.spherical_harmonics(lmax)
    vec = pos[None, :, :] - pos[:, None, :]
    n = len(pos)
    mask = ~torch.eye(n, dtype=torch.bool)
    dist = vec[mask].norm(dim=-1)
    sh = o3.spherical_harmonics(sh_irreps, vec[mask], normalize=True).reshape(n, n - 1, -1)
    radial = torch.stack([torch.exp(-dist), torch.exp(-dist / 2)], dim=-1).reshape(n, n - 1, 2)
    a = torch.einsum("ijc,ijk->ick", radial, sh)  # (atom, channel, sh) → e3nn layout, 2 channels per irrep
    a = torch.cat([a[:, :, sl].reshape(n, -1) for sl in sh_irreps.slices()], dim=1)
    assert tp.irreps_out == hidden
    return tp(a, a)


def _pgt_model(hidden: o3.Irreps):
    torch.manual_seed(2)
    a_irreps = o3.Irreps([(2, ir) for _, ir in o3.Irreps.spherical_harmonics(3)])
    tp = o3.FullyConnectedTensorProduct(a_irreps, a_irreps, hidden).double()
    readout = o3.Linear(hidden, pgt_irreps()).double()
    return lambda pos: readout(_features(pos, hidden, tp))


def test_linear_readout_of_equivariant_features_gives_rotated_pgts():
    hidden = o3.Irreps("4x0e+4x0o+4x1o+4x1e+4x2e+4x2o+4x3o+4x3e")
    model = _pgt_model(hidden)
    torch.manual_seed(3)
    pos = torch.randn(5, 3, dtype=F64) * 1.5
    assert_equivariant(model, args_in=[pos], irreps_in=["cartesian_points"], irreps_out=[pgt_irreps()],
                       tolerance=1e-9)
    g = to_cartesian(model(pos))
    for r in orthogonal_matrices()[2:5]:
        assert torch.allclose(to_cartesian(model(pos @ r.T)), rotate(g, r), atol=1e-9)
    y = model(pos)
    assert all(y[:, sl].abs().max() > 1e-6 for sl in BLOCK_SLICES.values())  # every block is reached


def test_even_only_features_cannot_produce_a_pgt():
    """The APT network's last layer keeps 0e+1e+2e only: a linear readout to the odd PGT irreps is empty."""
    assert o3.Linear("8x0e+8x1e+8x2e", pgt_irreps()).weight_numel == 0
    lin = o3.Linear("8x0e+8x1o+8x2o", pgt_irreps())  # no 3o in the features: that block stays zero
    assert lin.weight_numel == 8 * 2 + 8
    assert torch.equal(lin(torch.randn(3, lin.irreps_in.dim))[:, BLOCK_SLICES["3o"]], torch.zeros(3, 7))


def test_voigt_order_and_round_trip():
    a = torch.tensor([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]], dtype=F64)
    assert dadt_components(a).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    c = torch.randn(2, 4, 6, dtype=F64)
    assert torch.allclose(dadt_components(from_dadt_components(c)), c)
    s = torch.randn(3, 3, 3, dtype=F64)
    s = s + s.transpose(-1, -2)
    assert torch.allclose(from_dadt_components(dadt_components(s)), s)


def test_contract_matches_einsum_reference_and_rotates():
    g, v = rand_sym(7), torch.randn(7, 3, dtype=F64)
    ref = torch.einsum("nijk,nk->ij", g, v)
    out = contract(g, v)
    assert torch.allclose(out, ref, atol=1e-12) and torch.allclose(out, out.T)
    assert torch.allclose(contract(g, v, voigt=True), dadt_components(ref), atol=1e-12)
    loops = sum(g[n, i, j, k] * v[n, k] for n in range(7) for k in range(3) for i, j in [(1, 2)])
    assert math.isclose(float(out[1, 2]), float(loops), rel_tol=1e-12)
    frame = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    per_frame = contract(g, v, frame, 3)
    for f in range(3):
        sel = frame == f
        assert torch.allclose(per_frame[f], torch.einsum("nijk,nk->ij", g[sel], v[sel]), atol=1e-12)
    assert contract(g, v, frame, 3, voigt=True).shape == (3, 6)
    assert contract(g[None].expand(2, -1, -1, -1, -1), v[None].expand(2, -1, -1)).shape == (2, 3, 3)
    r = -o3.rand_matrix(dtype=F64)  # G odd, v polar: dα/dt is an even tensor, R dα/dt Rᵀ
    assert torch.allclose(contract(rotate(g, r), v @ r.T), r @ out @ r.T, atol=1e-10)
