"""Committee kinds ("full" independent networks, "heads" shared trunk + readout heads), their checkpoints, the
uncertainty scale fitted at training time, and the symmetry of every head."""
import json

import numpy as np
import pytest
import test_symmetry as sym
import torch
from click.testing import CliRunner
from helpers import apts, water_box
from test_train import TINY, labelled_boxes

from aptnn.cli import main
from aptnn.errors import CheckpointError
from aptnn.graph import collate, frame_graph
from aptnn.io import write_frames
from aptnn.model.checkpoint import SHIPPED_DIR, load_checkpoint, read_committee, save_checkpoint
from aptnn.model.fingerprint import stored_committee
from aptnn.model.network import APTNetwork, HeadMember, HeadsNetwork, ModelConfig, run_committee
from aptnn.predict import APTPredictor
from aptnn.train import TrainSettings, batch_loss, calibrate, head_weights, prepare, train_committee

N_HEADS = 3


def heads_network(n_heads=N_HEADS, sum_rule=True, dtype=torch.float64, seed=1) -> HeadsNetwork:
    """An untrained heads committee with non-trivial normalisation (as helpers.random_network)."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        cfg = ModelConfig(species=[1, 8], channels=4, avg_neighbours=20.0, sum_rule=sum_rule,
                          iso_mean=[0.4, -0.8], irrep_scale=[1.0, 10.0, 5.0])
        return HeadsNetwork(cfg, n_heads).eval()
    finally:
        torch.set_default_dtype(previous)


def test_heads_checkpoint_round_trip(tmp_path):
    net = heads_network()
    save_checkpoint(tmp_path / "h.pt", net.members(), {"uncertainty_scale": 2.5})
    payload = torch.load(tmp_path / "h.pt", weights_only=True)
    assert payload["committee_kind"] == "heads" and payload["format_version"] == 2
    assert len(payload["members"]) == N_HEADS and "embedding.weight" in payload["trunk"]
    assert set(payload["members"][0]) == {"readout.weight", "readout.bias", "readout.output_mask", "iso_mean",
                                          "component_scale", "q"}
    members, training = load_checkpoint(tmp_path / "h.pt", torch.float64)
    assert len(members) == N_HEADS and all(isinstance(m, HeadMember) for m in members)
    assert all(m.network is members[0].network for m in members) and training["uncertainty_scale"] == 2.5
    atoms = water_box()
    for k in range(N_HEADS):
        np.testing.assert_array_equal(apts(members[k], atoms), apts(net.members()[k], atoms))
    # the kind, size and scale without building the networks, with and without torch
    expected = {"kind": "heads", "n_members": N_HEADS, "uncertainty_scale": 2.5}
    assert read_committee(tmp_path / "h.pt") == expected == stored_committee(tmp_path / "h.pt")
    # a saved subset of heads (in the given order) is again a heads committee
    save_checkpoint(tmp_path / "sub.pt", [members[2], members[0]])
    sub, _ = load_checkpoint(tmp_path / "sub.pt", torch.float64)
    np.testing.assert_array_equal(apts(sub[0], atoms), apts(members[2], atoms))


def test_predict_members_and_batch_for_heads(tmp_path):
    net = heads_network()
    save_checkpoint(tmp_path / "h.pt", net.members())
    model = APTPredictor.load(str(tmp_path / "h.pt"), dtype="float64")
    assert model.committee_kind == "heads" and model.uncertainty_scale == 1.0
    frames = [water_box(), water_box(seed=4)]
    per_frame = model.predict_members(frames)
    assert [p.shape for p in per_frame] == [(N_HEADS, len(a), 3, 3) for a in frames]
    p = per_frame[0]
    assert min(np.abs(p[i] - p[j]).max() for i in range(N_HEADS) for j in range(i)) > 1e-3  # members differ
    for k in range(N_HEADS):  # one trunk evaluation gives what each member gives on its own
        np.testing.assert_allclose(p[k], apts(model.members[k], frames[0]), atol=1e-12)
    mean, std = model.predict_batch(frames)
    np.testing.assert_allclose(mean[0], p.mean(0), atol=1e-12)
    np.testing.assert_allclose(std[0], p.std(0, ddof=1), atol=1e-12)


def test_a_head_passes_the_symmetry_suite():
    """tests/test_symmetry.py's checks with a head of a heads committee as the network (every head at once:
    test_rotation_of_the_whole_committee, test_sum_rule_exact_for_every_head)."""
    member = heads_network().members()[-1]
    for pbc in (True, False):
        sym.test_rotation_equivariance(member, pbc)
    sym.test_inversion_leaves_polar_polar_tensor_unchanged(member)
    for check in (sym.test_translation_and_unwrapped_positions, sym.test_permutation_equivariance,
                  sym.test_cubic_and_sheared_triclinic_description_agree, sym.test_supercell_gives_identical_apts,
                  sym.test_batching_frames_is_the_same_as_one_by_one):
        check(member, water_box())


@pytest.mark.parametrize("charge", [0.0, 1.0])
def test_sum_rule_exact_for_every_head(charge):
    atoms = water_box()
    batch = collate([frame_graph(atoms, [1, 8], 6.0)], dtype=torch.float64)
    with torch.no_grad():
        p = heads_network()(batch, torch.tensor([charge], dtype=torch.float64)).numpy()
        free = heads_network(sum_rule=False)(batch).numpy()
    assert p.shape == (N_HEADS, len(atoms), 3, 3)
    np.testing.assert_allclose(p.sum(1), np.broadcast_to(charge * np.eye(3), (N_HEADS, 3, 3)), atol=1e-10)
    assert np.abs(free.sum(1)).max(axis=(1, 2)).min() > 1e-3  # every head: really switched off


def test_rotation_of_the_whole_committee():
    """P → R P Rᵀ for all heads of one forward pass (float64), and run_committee gives that forward pass."""
    net = heads_network()
    atoms = water_box(pbc=False)
    r = sym.o3.rand_matrix(dtype=torch.float64).numpy()
    batches = [collate([frame_graph(a, [1, 8], 6.0)], dtype=torch.float64) for a in (atoms, sym.rotate(atoms, r))]
    with torch.no_grad():
        p, p_rot = (net(b).numpy() for b in batches)
        np.testing.assert_array_equal(run_committee(net.members(), batches[0]).numpy(), p)
    np.testing.assert_allclose(p_rot, r @ p @ r.T, atol=sym.TOL)


def test_training_heads_stores_a_fitted_uncertainty_scale(tmp_path):
    frames = labelled_boxes(5)
    settings = TrainSettings(epochs=2, seed=0, head_weights="frames")
    metrics = train_committee(frames[:3], frames[3:], tmp_path / "h.pt", settings, committee=3, kind="heads",
                              progress=False, **TINY)
    assert len(metrics) == 1 and metrics[0]["kind"] == "heads" and metrics[0]["members"] == [0, 1, 2]
    model = APTPredictor.load(str(tmp_path / "h.pt"), dtype="float64")
    assert model.committee_kind == "heads" and len(model.members) == 3
    training = model.training
    assert training["committee_kind"] == "heads" and training["settings"]["head_weights"] == "frames"
    scale = model.uncertainty_scale
    assert isinstance(scale, float) and scale > 0 and scale != 1.0
    assert scale == training["calibration"]["scales"][training["calibration"]["method"]]
    # the stored scale is the one the stored (float32) members give on the validation frames
    members, _ = load_checkpoint(tmp_path / "h.pt", torch.float32)
    again = calibrate(members, prepare(frames[3:], [1, 8], TINY["cutoff"]), torch.float32)
    assert again["uncertainty_scale"] == pytest.approx(scale, rel=1e-5)
    # mean_z2 by hand from predict_members
    pred = np.concatenate(model.predict_members(frames[3:]), axis=1)
    labels = np.concatenate([a.arrays["apt"].reshape(-1, 3, 3) for a in frames[3:]])
    z = (labels - pred.mean(0)) / pred.std(0, ddof=1)
    assert training["calibration"]["scales"]["mean_z2"] == pytest.approx(np.sqrt(np.mean(z**2)), rel=1e-3)


def test_scale_is_one_without_validation_frames_or_for_one_member(tmp_path):
    frames = labelled_boxes(3)
    train_committee(frames, None, tmp_path / "a.pt", TrainSettings(epochs=1), committee=2, kind="heads",
                    progress=False, **TINY)
    train_committee(frames[:2], frames[2:], tmp_path / "b.pt", TrainSettings(epochs=1), committee=1, kind="heads",
                    progress=False, **TINY)
    a, b = (APTPredictor.load(str(tmp_path / f"{n}.pt")) for n in "ab")
    assert a.uncertainty_scale == 1.0 == b.uncertainty_scale
    assert a.committee_kind == "heads" and b.committee_kind == "full" and len(b.members) == 1


def test_full_committee_with_validation_is_calibrated_too(tmp_path):
    frames = labelled_boxes(3)
    train_committee(frames[:2], frames[2:], tmp_path / "f.pt", TrainSettings(epochs=1), committee=2,
                    kind="full", progress=False, **TINY)
    info = read_committee(tmp_path / "f.pt")
    assert info["kind"] == "full" and info["n_members"] == 2 and info["uncertainty_scale"] != 1.0
    assert stored_committee(tmp_path / "f.pt") == info


def test_old_checkpoints_without_kind_load_as_full(tmp_path):
    shipped = SHIPPED_DIR / "water-rpbe-d3.pt"
    payload = torch.load(shipped, weights_only=True)
    assert "committee_kind" not in payload and payload["format_version"] == 1
    model = APTPredictor.load("water-rpbe-d3")
    assert model.committee_kind == "full" and model.uncertainty_scale == 1.0
    assert stored_committee(shipped) == {"kind": "full", "n_members": 1, "uncertainty_scale": 1.0}
    payload["members"] = payload["members"] * 2  # an old-style two-member committee
    torch.save(payload, tmp_path / "old2.pt")
    old = APTPredictor.load(str(tmp_path / "old2.pt"))
    assert old.committee_kind == "full" and all(isinstance(m, APTNetwork) for m in old.members)
    atoms = water_box()
    assert old.predict_members([atoms])[0].shape == (2, len(atoms), 3, 3)


def test_inconsistent_heads_checkpoints_are_refused(tmp_path):
    net = heads_network(dtype=torch.float32)
    save_checkpoint(tmp_path / "h.pt", net)
    payload = torch.load(tmp_path / "h.pt", weights_only=True)
    for name, edit, message in [
            ("no_trunk", lambda p: p.pop("trunk"), "trunk: weights are not a dict"),
            ("version", lambda p: p.__setitem__("format_version", 1), "'heads' with format version 1"),
            ("kind", lambda p: p.__setitem__("committee_kind", "forest"), "'forest'"),
            ("scale", lambda p: p.__setitem__("training", json.dumps({"uncertainty_scale": -1})), "uncertainty"),
            ("head", lambda p: p["members"][1].pop("readout.weight"), "heads: weights do not fit")]:
        edited = dict(payload, members=[dict(m) for m in payload["members"]])
        edit(edited)
        torch.save(edited, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / f"{name}.pt")
    with pytest.raises(ValueError, match="either independent networks or heads"):
        save_checkpoint(tmp_path / "mixed.pt", [net.members()[0], APTNetwork(net.config)])


def test_head_weights_and_weighted_loss():
    items = prepare(labelled_boxes(2), [1, 8], TINY["cutoff"])
    assert head_weights(items, 3, "none", 0) is None
    for mode in ("frames", "atoms"):
        w = head_weights(items, 3, mode, 0)
        assert [x.shape for x in w] == [(3, 24), (3, 24)] and bool((torch.cat(w, 1) > 0).all())
    w = head_weights(items, 3, "frames", 0)
    np.testing.assert_allclose(sum(x[:, 0] for x in w).numpy(), 2.0)  # n_frames × Dirichlet: sums to n_frames
    net = heads_network()
    with torch.no_grad():
        plain, n = batch_loss(net, items, torch.float64)
        ones, _ = batch_loss(net, items, torch.float64, [torch.ones(3, 24)] * 2)
        per_head = [float(batch_loss(member, items, torch.float64)[0]) for member in net.members()]
    assert n == 48 * 9 and float(plain) == pytest.approx(float(ones), rel=1e-12)
    assert float(plain) == pytest.approx(np.mean(per_head), rel=1e-12)  # loss = mean over heads


def test_cli_train_heads_committee(tmp_path):
    frames = labelled_boxes(5)
    write_frames(tmp_path / "train.extxyz", frames[:3])
    write_frames(tmp_path / "valid.extxyz", frames[3:])
    res = CliRunner().invoke(main, ["train", str(tmp_path / "train.extxyz"), "--valid", str(tmp_path / "valid.extxyz"),
                                    "-o", str(tmp_path / "m.pt"), "--epochs", "2", "--channels", "4", "--cutoff", "4",
                                    "--committee", "2", "--committee-kind", "heads", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "heads 0…1 (shared trunk)" in res.output and "uncertainty_scale" in res.output
    info = read_committee(tmp_path / "m.pt")
    assert info["kind"] == "heads" and info["n_members"] == 2 and info["uncertainty_scale"] != 1.0
    res = CliRunner().invoke(main, ["predict", str(tmp_path / "m.pt"), str(tmp_path / "valid.extxyz"),
                                    "-o", str(tmp_path / "p.extxyz"), "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["train", str(tmp_path / "train.extxyz"), "--committee-kind", "forest"])
    assert res.exit_code == 2 and "forest" in res.output


def test_compile_falls_back_cleanly_for_heads(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "h.pt", heads_network(dtype=torch.float32))
    eager = APTPredictor.load(str(tmp_path / "h.pt"))

    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("no C++ compiler")

    monkeypatch.setattr("torch.compile", lambda module, **kw: Broken())
    fallback = APTPredictor.load(str(tmp_path / "h.pt"), compile=True)
    atoms = water_box()
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        first = fallback.predict_members([atoms])[0]
    np.testing.assert_array_equal(first, eager.predict_members([atoms])[0])


@pytest.mark.slow
def test_compiled_heads_model_agrees_with_eager(tmp_path):
    save_checkpoint(tmp_path / "h.pt", heads_network(dtype=torch.float32))
    eager = APTPredictor.load(str(tmp_path / "h.pt"))
    compiled = APTPredictor.load(str(tmp_path / "h.pt"), compile=True)
    for atoms in (water_box(2), water_box(3, seed=1)):
        np.testing.assert_allclose(compiled.predict_members([atoms])[0], eager.predict_members([atoms])[0],
                                   atol=2e-5)
