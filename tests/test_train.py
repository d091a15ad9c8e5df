"""Training, checkpoints, committees, prediction API and the CLI, on small generated and real data."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import apts, random_network, water_box

from aptnn.cli import main
from aptnn.errors import CheckpointError, InputError
from aptnn.io import read_frames, write_frames
from aptnn.labels import set_apt
from aptnn.model.checkpoint import load_checkpoint, save_checkpoint
from aptnn.predict import APTPredictor
from aptnn.train import TrainSettings, batch_loss, prepare, train_committee

TINY = dict(channels=4, cutoff=4.0)


def labelled_boxes(n=4, seed=0):
    """Small water boxes labelled by a fixed random network (a learnable, equivariant target)."""
    teacher = random_network(channels=4, seed=99, cutoff=4.0)
    frames = []
    for k in range(n):
        atoms = water_box(seed=seed + k)
        set_apt(atoms, apts(teacher, atoms))
        frames.append(atoms)
    return frames


def test_masked_loss_ignores_unlabelled_atoms():
    frames = labelled_boxes(1)
    frames[0].arrays["apt"][5:] = np.nan
    items = prepare(frames, [1, 8], 4.0)
    assert int(items[0].mask.sum()) == 5
    net = random_network(channels=4, cutoff=4.0)
    loss, count = batch_loss(net, items, torch.float64)
    assert count == 5 * 9
    other = frames[0].copy()
    other.arrays["apt"] = frames[0].arrays["apt"].copy()
    other.arrays["apt"][5:] = np.nan
    other.positions = frames[0].positions  # same geometry
    items2 = prepare([other], [1, 8], 4.0)
    items2[0].apt[5:] = 123.0  # garbage where unlabelled: must not matter
    loss2, _ = batch_loss(net, items2, torch.float64)
    assert float(loss.detach()) == pytest.approx(float(loss2.detach()), rel=1e-12)


def test_unlabelled_frame_is_an_error():
    atoms = water_box()
    with pytest.raises(InputError, match="no labelled atom"):
        prepare([atoms], [1, 8], 4.0, source="x.extxyz")


def test_training_learns_and_is_reproducible(tmp_path):
    frames = labelled_boxes(5)
    settings = TrainSettings(epochs=8, seed=3, batch_size=2, lr=0.01)
    m1 = train_committee(frames[:4], frames[4:], tmp_path / "a.pt", settings, progress=False,
                         log_path=tmp_path / "a.csv", **TINY)
    m2 = train_committee(frames[:4], frames[4:], tmp_path / "b.pt", settings, progress=False, **TINY)
    a, _ = load_checkpoint(tmp_path / "a.pt", torch.float64)
    b, _ = load_checkpoint(tmp_path / "b.pt", torch.float64)
    for (ka, va), (kb, vb) in zip(a[0].state_dict().items(), b[0].state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert m1[0]["valid_rmse_e"] == m2[0]["valid_rmse_e"]
    curve = (tmp_path / "a.csv").read_text().splitlines()
    assert curve[0].startswith("epoch") and len(curve) >= 3
    first, best = float(curve[1].split(",")[4]), m1[0]["valid_rmse_e"]
    assert best < 0.9 * first  # it learned something


def test_checkpoint_round_trip_and_committee(tmp_path):
    frames = labelled_boxes(3)
    settings = TrainSettings(epochs=2, seed=0)
    train_committee(frames, None, tmp_path / "c.pt", settings, committee=2, progress=False, **TINY)
    model = APTPredictor.load(str(tmp_path / "c.pt"), dtype="float64")
    assert len(model.members) == 2
    mean, std = model.predict_batch(frames[:1])
    direct = np.mean([apts(m, frames[0]) for m in model.members], axis=0)
    np.testing.assert_allclose(mean[0], direct, atol=1e-12)
    assert std is not None and std[0].shape == (len(frames[0]), 3, 3) and std[0].max() > 0
    out = model.annotate(frames[:2], progress=False)
    assert out[0].arrays["apt_std"].shape == (len(frames[0]), 9)
    # re-save and reload: identical predictions
    save_checkpoint(tmp_path / "d.pt", model.members)
    again = APTPredictor.load(str(tmp_path / "d.pt"), dtype="float64")
    np.testing.assert_array_equal(again.predict(frames[0]), model.predict(frames[0]))
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    cfg = json.loads(payload["config"])
    assert cfg["species"] == [1, 8] and cfg["units"]["apt"] == "e"
    assert len(json.loads(payload["training"])["data_sha256"]) == 64


def test_foreign_and_future_checkpoints_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an aptnn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not an aptnn checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "ok.pt", [random_network(dtype=torch.float32)])
    payload = torch.load(tmp_path / "ok.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="no shipped model"):
        load_checkpoint("no-such-model")


def test_unknown_species_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "m.pt", [random_network(dtype=torch.float32)])
    model = APTPredictor.load(str(tmp_path / "m.pt"))
    atoms = water_box()
    atoms[0].symbol = "Na"
    with pytest.raises(InputError, match=r"\['Na'\] unknown to the model"):
        model.predict_batch([atoms], source="nacl.extxyz")


def test_cli_train_predict_evaluate(tmp_path):
    frames = labelled_boxes(4)
    write_frames(tmp_path / "train.extxyz", frames[:3])
    write_frames(tmp_path / "test.extxyz", frames[3:])
    runner = CliRunner()
    res = runner.invoke(main, ["train", str(tmp_path / "train.extxyz"), "-o", str(tmp_path / "m.pt"),
                               "--epochs", "3", "--channels", "4", "--cutoff", "4", "--quiet", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.csv").exists() and "best validation RMSE" in res.output
    res = runner.invoke(main, ["predict", str(tmp_path / "m.pt"), str(tmp_path / "test.extxyz"),
                               "-o", str(tmp_path / "pred.extxyz"), "--quiet"])
    assert res.exit_code == 0, res.output
    pred = read_frames(tmp_path / "pred.extxyz")
    assert pred[0].arrays["apt"].shape == (len(frames[3]), 9)
    np.testing.assert_allclose(pred[0].arrays["apt"].reshape(-1, 3, 3).sum(0), np.zeros((3, 3)), atol=1e-4)
    res = runner.invoke(main, ["evaluate", str(tmp_path / "m.pt"), str(tmp_path / "test.extxyz"), "--quiet",
                               "--plot", str(tmp_path / "parity.png"), "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"rmse_e", "rmse_H_e", "rmse_O_e", "rmse_0e_e", "rmse_1e_e", "rmse_2e_e"} <= set(metrics)
    assert (tmp_path / "parity.png").stat().st_size > 10_000


def test_cli_bad_input_is_one_line(tmp_path):
    (tmp_path / "empty.extxyz").write_text("")
    save_checkpoint(tmp_path / "m.pt", [random_network(dtype=torch.float32)])
    res = CliRunner().invoke(main, ["predict", str(tmp_path / "m.pt"), str(tmp_path / "empty.extxyz"), "-o",
                                    str(tmp_path / "o.extxyz")])
    assert res.exit_code == 2
    assert "empty.extxyz" in res.output and "empty" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o.extxyz").exists()
    res = CliRunner().invoke(main, ["predict", str(tmp_path / "empty.extxyz"), str(tmp_path / "empty.extxyz"),
                                    "-o", str(tmp_path / "o.extxyz")])
    assert res.exit_code == 2 and "not an aptnn checkpoint" in res.output


@pytest.mark.slow
def test_short_training_on_dft_water_generalises(shared_data, tmp_path):
    """20 epochs of the default model on 9 DFT frames already reach < 0.045 e on unseen frames."""
    train = read_frames(shared_data / "train10.extxyz")
    test = read_frames(shared_data / "pool19.extxyz", index="0:3")
    settings = TrainSettings(epochs=20, seed=0)
    train_committee(train[:9], train[9:], tmp_path / "w.pt", settings, progress=False, channels=8)
    model = APTPredictor.load(str(tmp_path / "w.pt"))
    from aptnn.evaluate import metrics
    m = metrics(test, model.predict_batch(test)[0])
    assert m["rmse_e"] < 0.045
    assert m["rmse_e"] < 0.8 * m["rmse_transposed_e"]  # index convention survives training
