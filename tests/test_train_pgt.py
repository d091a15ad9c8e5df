"""Training with polarisability-gradient targets (issue 17): xTB-labelled water (monomers and a dimer, open
boundaries) with APTs (e) and PGTs G[ξ,η,ζ] = ∂α_ξη/∂r_ζ (e·Å/V), targets ["apt", "pgt"] and ["pgt"]:
labels and masks, normalisation from the labels, the per-target loss, the learning curve, exact equivariance
and sum rule of the trained PGTs, checkpoints keeping their targets.
"""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from e3nn import o3

from aptnn.errors import InputError
from aptnn.graph import collate, frame_graph
from aptnn.labels import set_apt
from aptnn.model import pgt_tensor
from aptnn.model.checkpoint import load_checkpoint
from aptnn.train import TrainSettings, build_model, loss_weights, prepare, target_losses, train_committee

pytest.importorskip("tblite")
from aptnn.label.pgt import get_pgt, pgt_field_forces, set_pgt  # noqa: E402
from aptnn.label.routes import field_route  # noqa: E402
from aptnn.label.xtb import xtb_factory  # noqa: E402

TINY = dict(channels=4, cutoff=4.0)
BOTH = ["apt", "pgt"]


def geometries() -> list[Atoms]:
    """Five distorted water molecules and one (H2O)2 dimer (hydrogen bond ~2.9 Å O–O), seeded."""
    rng = np.random.default_rng(17)
    out = []
    for _ in range(5):
        a = molecule("H2O")
        a.positions += rng.normal(scale=0.06, size=a.positions.shape)
        out.append(a)
    b = molecule("H2O")
    b.rotate(90, "x")
    b.positions += [2.9, 0.0, 0.0]
    dimer = molecule("H2O") + b
    dimer.positions += rng.normal(scale=0.03, size=dimer.positions.shape)
    out.insert(2, dimer)
    for a in out:
        a.pbc = False
    return out


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    torch.set_num_threads(1)
    make = xtb_factory(accuracy=1e-3)
    out = []
    for atoms in geometries():
        set_apt(atoms, field_route(atoms, make))
        set_pgt(atoms, pgt_field_forces(atoms, make))
        out.append(atoms)
    return out


def pgt_only(frames: list[Atoms]) -> list[Atoms]:
    out = []
    for a in frames:
        b = a.copy()
        del b.arrays["apt"]
        out.append(b)
    return out


def predict(member, atoms: Atoms, targets) -> dict[str, np.ndarray]:
    batch = collate([frame_graph(atoms, member.config.species, member.config.cutoff)], dtype=torch.float64)
    with torch.no_grad():
        return {k: v.numpy() for k, v in member(batch, targets=targets).items()}


def test_labels_masks_and_normalisation(frames):
    g = get_pgt(frames[0])
    assert np.abs(g.sum(0)).max() < 1e-6 * np.abs(g).max()  # xTB labels obey the sum rule
    np.testing.assert_allclose(g, g.transpose(0, 2, 1, 3), atol=1e-12)
    partial = [a.copy() for a in frames[:2]]
    partial[0].arrays["pgt"][1:] = np.nan
    items = prepare(partial, [1, 8], 4.0)
    assert items[0].pgt_mask.tolist() == [True, False, False] and items[1].pgt_mask.all()
    assert items[0].mask.all()  # the APT labels are untouched
    net = build_model(items, [1, 8], torch.float64, **TINY)
    assert net.config.targets == BOTH
    y = pgt_tensor.to_irreps(torch.cat([it.pgt[it.pgt_mask] for it in items]))
    s = torch.cat([torch.from_numpy(it.graph.species)[it.pgt_mask] for it in items])
    assert net.config.pgt_irrep_scale == pgt_tensor.normalisation_stats(y, s, 2)["irrep_scale"]
    parts = target_losses(net, items, torch.float64, BOTH)
    assert parts["apt"][1] == 6 * 9 and parts["pgt"][1] == 4 * 27
    items[0].pgt[1:] = 123.0  # garbage where unlabelled must not matter
    again = target_losses(net, items, torch.float64, BOTH)
    assert float(again["pgt"][0].detach()) == pytest.approx(float(parts["pgt"][0].detach()), rel=1e-12)
    w = loss_weights(items, BOTH)
    for t, (value, mask) in {"apt": ("apt", "mask"), "pgt": ("pgt", "pgt_mask")}.items():
        labels = torch.cat([getattr(it, value)[getattr(it, mask)] for it in items])
        assert w[t] == pytest.approx(1 / float(labels.var()))
    assert loss_weights(items, ["apt"]) == {"apt": 1.0}


def test_apt_and_pgt_training(frames, tmp_path):
    settings = TrainSettings(epochs=30, seed=0, lr=0.01, early_stopping=100, dtype="float64")
    (info,) = train_committee(frames[:5], frames[5:], tmp_path / "m.pt", settings, progress=False,
                              log_path=tmp_path / "m.csv", **TINY)
    assert info["targets"] == BOTH and "valid_rmse_e" in info and "valid_rmse_pgt" in info
    rows = [line.split(",") for line in (tmp_path / "m.csv").read_text().splitlines()]
    assert rows[0] == ["epoch", "wall_s", "lr", "train_rmse_e", "valid_rmse_e", "train_rmse_pgt", "valid_rmse_pgt"]
    curve = np.array([[float(x) for x in r[3:]] for r in rows[1:]])
    w = info["loss_weights"]
    train_loss = w["apt"] * curve[:, 0] ** 2 + w["pgt"] * curve[:, 2] ** 2
    assert train_loss[-5:].mean() < 0.8 * train_loss[0]  # it learned
    assert info["valid_score"] <= np.sqrt(w["apt"] * curve[0, 1] ** 2 + w["pgt"] * curve[0, 3] ** 2)

    members, training = load_checkpoint(tmp_path / "m.pt", torch.float64)
    (member,) = members
    assert member.config.targets == BOTH and len(member.config.pgt_irrep_scale) == 4
    assert training["members"][0]["targets"] == BOTH
    atoms = frames[2]  # the dimer
    ref = predict(member, atoms, BOTH)
    g = ref["pgt"]
    assert np.abs(g.sum(0)).max() < 1e-12 and np.abs(g).max() > 1e-4  # exact sum rule, not trivially zero
    with torch.random.fork_rng():
        torch.manual_seed(3)
        rot = o3.rand_matrix(dtype=torch.float64).numpy()
    for r in (rot, -rot):
        moved = atoms.copy()
        moved.positions = atoms.positions @ r.T
        out = predict(member, moved, BOTH)
        np.testing.assert_allclose(out["pgt"], np.einsum("ai,bj,ck,nijk->nabc", r, r, r, g), atol=1e-10)
        np.testing.assert_allclose(out["apt"], np.einsum("ai,ck,nik->nac", r, r, ref["apt"]), atol=1e-10)


def test_pgt_only_training(frames, tmp_path):
    data = pgt_only(frames)
    with pytest.raises(InputError, match="no training frame carries 'apt'"):
        train_committee(data[:5], data[5:], tmp_path / "x.pt", TrainSettings(epochs=1), progress=False,
                        targets=BOTH, **TINY)
    settings = TrainSettings(epochs=20, seed=1, lr=0.01, early_stopping=100, dtype="float64")
    metrics = train_committee(data[:5], data[5:], tmp_path / "p.pt", settings, committee=2, progress=False,
                              log_path=tmp_path / "p.csv", **TINY)
    assert [m["targets"] for m in metrics] == [["pgt"], ["pgt"]]
    assert all("valid_rmse_e" not in m and m["valid_rmse_pgt"] == m["valid_score"] for m in metrics)
    rows = [line.split(",") for line in (tmp_path / "p.member0.csv").read_text().splitlines()]
    assert rows[0][3:] == ["train_rmse_pgt", "valid_rmse_pgt"]
    train = np.array([float(r[3]) for r in rows[1:]])
    assert train[-5:].mean() < 0.9 * train[0]
    members, training = load_checkpoint(tmp_path / "p.pt", torch.float64)
    assert [m.config.targets for m in members] == [["pgt"], ["pgt"]]
    assert training["uncertainty_scale"] == 1.0  # the APT calibration does not apply
    g = predict(members[0], frames[2], ["pgt"])["pgt"]
    assert np.abs(g.sum(0)).max() < 1e-12
    with pytest.raises(ValueError, match="targets"):
        predict(members[0], frames[2], ["apt"])
