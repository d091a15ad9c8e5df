"""The PGT readout of the network (targets ["apt", "pgt"]): exact O(3) equivariance of G[ξ,η,ζ] = ∂α_ξη/∂r_ζ
(det R = −1 included: G is odd), sum rule Σ_i G_i = 0 per frame, translation and permutation invariance, ξη
symmetry, checkpoints and committees with a PGT head, and that APT-only models keep their old structure.

All networks are float64 with random weights and non-trivial normalisation (helpers.random_network).
"""
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from e3nn import o3
from helpers import apts, random_network, water_box

from aptnn.errors import CheckpointError
from aptnn.graph import collate, frame_graph
from aptnn.model.checkpoint import SHIPPED_DIR, check_config, load_checkpoint, save_checkpoint
from aptnn.model.network import APTNetwork, HeadsNetwork, ModelConfig, run_committee
from aptnn.model.pgt_tensor import BLOCK_SLICES, to_irreps

TOL = 1e-9  # float64 reaches ~1e-15
PGT_SCALE = [0.5, 2.0, 1.5, 3.0]
BOTH = ["apt", "pgt"]


def pgt_network(targets=BOTH, **kw) -> APTNetwork:
    return random_network(targets=list(targets), pgt_irrep_scale=PGT_SCALE, **kw)


def outputs(net, frames: Atoms | list[Atoms], targets=BOTH) -> dict[str, np.ndarray]:
    frames = frames if isinstance(frames, list) else [frames]
    batch = collate([frame_graph(a, net.config.species, net.config.cutoff) for a in frames], dtype=torch.float64)
    with torch.no_grad():
        return {k: v.numpy() for k, v in net(batch, targets=targets).items()}


def transform(atoms: Atoms, r: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ r.T
    if atoms.pbc.any():
        out.cell = atoms.cell.array @ r.T
    return out


def rotate_pgt(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.einsum("ai,bj,ck,nijk->nabc", r, r, r, g)


def orthogonal_matrices() -> list[np.ndarray]:
    """Two random rotations, a rotation times −1 (det −1) and the inversion."""
    with torch.random.fork_rng():
        torch.manual_seed(5)
        rs = [o3.rand_matrix(dtype=torch.float64).numpy() for _ in range(3)]
    return [rs[0], rs[1], -rs[2], -np.eye(3)]


@pytest.fixture(scope="module")
def net() -> APTNetwork:
    return pgt_network()


@pytest.mark.parametrize("pbc", [True, False])
def test_pgt_and_apt_are_exactly_o3_equivariant(net, pbc):
    atoms = water_box(pbc=pbc)
    ref = outputs(net, atoms)
    g, p = ref["pgt"], ref["apt"]
    assert g.shape == (len(atoms), 3, 3, 3) and p.shape == (len(atoms), 3, 3)
    y = to_irreps(torch.from_numpy(g))
    assert all(float(y[:, sl].abs().max()) > 1e-3 for sl in BLOCK_SLICES.values())  # 2x1o, 2o and 3o reached
    for r in orthogonal_matrices():
        out = outputs(net, transform(atoms, r))
        np.testing.assert_allclose(out["pgt"], rotate_pgt(g, r), atol=TOL)
        np.testing.assert_allclose(out["apt"], r @ p @ r.T, atol=TOL)
    inverted = outputs(net, transform(atoms, -np.eye(3)))
    np.testing.assert_allclose(inverted["pgt"], -g, atol=TOL)  # odd parity
    np.testing.assert_allclose(inverted["apt"], p, atol=TOL)   # even


def test_pgt_is_symmetric_in_xi_eta(net, waters):
    g = outputs(net, waters)["pgt"]
    np.testing.assert_allclose(g, g.transpose(0, 2, 1, 3), atol=1e-15)
    assert np.abs(g - g.transpose(0, 1, 3, 2)).max() > 1e-3  # not symmetric in ηζ: a general tensor


def test_pgt_sum_rule_exact_per_frame(net):
    frames = [water_box(), water_box(3, seed=2, pbc=False)]
    g = outputs(net, frames)["pgt"]
    n0 = len(frames[0])
    assert np.abs(g).max() > 1e-2
    for part in (g[:n0], g[n0:]):
        np.testing.assert_allclose(part.sum(0), 0.0, atol=1e-12)
    free = pgt_network(sum_rule=False)
    assert np.abs(outputs(free, frames[0])["pgt"].sum(0)).max() > 1e-3  # the rule is really switched off


def test_pgt_translation_and_permutation(net, waters):
    g = outputs(net, waters)["pgt"]
    shifted = waters.copy()
    shifted.positions += np.array([0.37, -1.9, 2.4])
    np.testing.assert_allclose(outputs(net, shifted)["pgt"], g, atol=TOL)
    unwrapped = waters.copy()
    rng = np.random.default_rng(3)
    unwrapped.positions += rng.integers(-40, 40, size=(len(waters), 3)) @ waters.cell.array
    np.testing.assert_allclose(outputs(net, unwrapped)["pgt"], g, atol=TOL)
    perm = np.random.default_rng(0).permutation(len(waters))
    np.testing.assert_allclose(outputs(net, waters[perm])["pgt"], g[perm], atol=TOL)


def test_forward_keeps_returning_apts_and_targets_select_a_dict(net, waters):
    batch = collate([frame_graph(waters, [1, 8], 6.0)], dtype=torch.float64)
    with torch.no_grad():
        p = net(batch)
        both = net(batch, targets=BOTH)
        only = net(batch, targets=["pgt"])
        g = net.forward_pgt(batch)
    assert isinstance(p, torch.Tensor) and set(both) == {"apt", "pgt"} and set(only) == {"pgt"}
    assert torch.equal(both["apt"], p) and torch.equal(both["pgt"], g) and torch.equal(only["pgt"], g)
    with torch.no_grad():
        y = net.pgt_irreducible(batch)
    assert y.shape == (len(waters), 18)
    with pytest.raises(ValueError, match="targets"):
        random_network()(batch, targets=["pgt"])  # an APT-only model has no PGT readout


def test_pgt_only_network(waters):
    net = pgt_network(targets=["pgt"])
    assert not hasattr(net, "readout") and not any(k in net.state_dict() for k in ("iso_mean", "q"))
    assert {str(ir) for _, ir in net.layers[-1].irreps_out} == {"0e", "1o", "2o", "3o"}
    g = outputs(net, waters, ["pgt"])["pgt"]
    r = -orthogonal_matrices()[0]
    np.testing.assert_allclose(outputs(net, transform(waters, r), ["pgt"])["pgt"], rotate_pgt(g, r), atol=TOL)
    batch = collate([frame_graph(waters, [1, 8], 6.0)], dtype=torch.float64)
    with pytest.raises(ValueError, match="not APTs"):
        net(batch)


def test_apt_only_structure_is_unchanged():
    """Default targets: the last layer keeps 0e+1e+2e, no PGT modules, the config writes no new keys."""
    net = random_network()
    assert {str(ir) for _, ir in net.layers[-1].irreps_out} == {"0e", "1e", "2e"}
    assert not any("pgt" in k for k in net.state_dict())
    assert "targets" not in net.config.to_dict() and "pgt_irrep_scale" not in net.config.to_dict()
    both = pgt_network()
    assert {str(ir) for _, ir in both.layers[-1].irreps_out} == {"0e", "1e", "2e", "1o", "2o", "3o"}
    assert both.config.to_dict()["targets"] == BOTH


def test_shipped_checkpoint_builds_without_pgt_modules():
    payload = torch.load(SHIPPED_DIR / "water-rpbe-d3.pt", weights_only=True)
    config = json.loads(payload["config"])
    config.pop("units")
    assert "targets" not in config and "pgt_irrep_scale" not in config
    cfg = check_config(dict(config), "shipped")
    assert cfg.targets == ["apt"] and cfg.to_dict() == config
    state = APTNetwork(cfg).state_dict()
    stored = payload["members"][0]
    assert set(state) == set(stored) and all(state[k].shape == v.shape for k, v in stored.items())
    net = load_checkpoint("water-rpbe-d3", torch.float64)[0][0]
    assert not any("pgt" in k for k in net.state_dict())


def test_pgt_checkpoint_round_trip(tmp_path, net, waters):
    save_checkpoint(tmp_path / "m.pt", [net])
    config = json.loads(torch.load(tmp_path / "m.pt", weights_only=True)["config"])
    assert config["targets"] == BOTH and config["pgt_irrep_scale"] == PGT_SCALE and "pgt" in config["units"]
    loaded = load_checkpoint(tmp_path / "m.pt", torch.float64)[0][0]
    a, b = outputs(loaded, waters), outputs(net, waters)
    assert all(np.array_equal(a[k], b[k]) for k in BOTH)
    np.testing.assert_array_equal(apts(loaded, waters), b["apt"])


@pytest.mark.parametrize("problem, message", [
    ({"targets": ["apt", "dipole"]}, "targets"), ({"targets": []}, "targets"),
    ({"targets": BOTH, "lmax": 1}, "lmax >= 2"), ({"targets": ["pgt"], "n_layers": 1}, "n_layers >= 2"),
    ({"targets": BOTH, "pgt_irrep_scale": [1.0]}, "pgt_irrep_scale")])
def test_bad_targets_are_refused(problem, message):
    config = dict(ModelConfig(species=[1, 8]).to_dict(), **problem)
    with pytest.raises(CheckpointError, match=message):
        check_config(config, "test")
    with pytest.raises(ValueError, match=message):
        APTNetwork(ModelConfig(**config))


def test_heads_committee_with_pgt_heads(tmp_path, waters):
    torch.manual_seed(4)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        heads = HeadsNetwork(ModelConfig(species=[1, 8], channels=4, avg_neighbours=20.0, iso_mean=[0.4, -0.8],
                                         targets=BOTH, pgt_irrep_scale=PGT_SCALE), 3).eval()
    finally:
        torch.set_default_dtype(previous)
    batch = collate([frame_graph(waters, [1, 8], 6.0)], dtype=torch.float64)
    with torch.no_grad():
        out = heads(batch, targets=BOTH)
        p = heads(batch)
        committee = run_committee(heads.members(), batch, targets=BOTH)
        single = heads.members()[1].forward_pgt(batch)
    assert out["pgt"].shape == (3, len(waters), 3, 3, 3) and torch.equal(out["apt"], p)
    assert torch.equal(committee["pgt"], out["pgt"]) and torch.equal(single, out["pgt"][1])
    assert float((out["pgt"][0] - out["pgt"][1]).abs().max()) > 1e-4  # heads differ
    np.testing.assert_allclose(out["pgt"].sum(1).numpy(), 0.0, atol=1e-12)
    save_checkpoint(tmp_path / "h.pt", heads)
    members, _ = load_checkpoint(tmp_path / "h.pt", torch.float64)
    with torch.no_grad():
        assert torch.equal(run_committee(members, batch, targets=["pgt"])["pgt"], out["pgt"])


def test_float32_checkpoint_in_float64_is_exactly_equivariant(tmp_path):
    """A checkpoint saved in float32 stores its constant buffers (changes of basis, Wigner 3j) rounded; loaded in
    float64 the network keeps its own exact ones (else equivariance breaks at ~1e-8), and loading never alters
    the shared change of basis other networks are built from."""
    from aptnn.model.pgt_tensor import change_of_basis

    before = change_of_basis().clone()
    save_checkpoint(tmp_path / "f32.pt", [pgt_network(dtype=torch.float32)])
    (member,), _ = load_checkpoint(tmp_path / "f32.pt", torch.float64)
    assert torch.equal(change_of_basis(), before)
    atoms = water_box(2, 3.1, seed=2, pbc=False)
    ref = outputs(member, atoms)
    for r in orthogonal_matrices():
        out = outputs(member, transform(atoms, r))
        np.testing.assert_allclose(out["pgt"], rotate_pgt(ref["pgt"], r), atol=1e-12)
        np.testing.assert_allclose(out["apt"], np.einsum("ai,ck,nik->nac", r, r, ref["apt"]), atol=1e-12)
    state = torch.load(tmp_path / "f32.pt", weights_only=False)
    assert state["members"][0]["pgt_q"].dtype == torch.float32   # what the file holds is rounded …
    np.testing.assert_array_equal(member.pgt_q.numpy(), before.numpy())   # … the network uses the exact one
