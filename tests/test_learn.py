"""Active learning with real xTB labels on small water clusters: rounds, no relabelling, resume."""
import csv

import numpy as np
import pytest
from helpers import water_box

from aptnn.io import read_frames
from aptnn.learn import LearnSettings, learn

pytest.importorskip("tblite", reason="tblite (pip install tblite) provides the xtb backend")


def clusters(n, seed):
    out = []
    for k in range(n):
        atoms = water_box(n_per_side=2, spacing=2.9, seed=seed + k, pbc=False)[:12]  # (H2O)4
        out.append(atoms)
    return out


def test_learning_loop_rounds_and_resume(tmp_path):
    from aptnn.label.run import label_frames

    pool = clusters(10, 0)
    test, failed = label_frames(clusters(2, 100), progress=False)
    assert not failed
    settings = LearnSettings(initial=2, per_round=2, rounds=1, epochs=5, channels=4, cutoff=4.0)
    rows = learn(pool, test, tmp_path, settings)
    assert [int(r["labels"]) for r in rows] == [2, 4]
    assert rows[1]["why"].startswith("spread")
    settings.rounds = 2  # continue: one more round, nothing relabelled
    rows = learn(pool, test, tmp_path, settings)
    assert [int(r["labels"]) for r in rows] == [2, 4, 6]
    labelled = read_frames(tmp_path / "labelled.extxyz")
    sources = [a.info["source_frame"] for a in labelled]
    assert len(set(sources)) == 6
    for a in labelled:  # the stored labels are the xTB APTs of that very pool frame
        np.testing.assert_allclose(a.positions, pool[a.info["source_frame"]].positions, atol=1e-6)
        assert np.isfinite(a.arrays["apt"]).all()
    with open(tmp_path / "rounds.csv") as fh:
        logged = list(csv.DictReader(fh))
    assert len(logged) == 3 and all(float(r["test_rmse_e"]) > 0 for r in logged)
    assert (tmp_path / "model_round2.pt").exists()


def test_intensity_spread_of_a_committee(tmp_path):
    from helpers import random_network

    from aptnn.errors import InputError
    from aptnn.learn import intensity_spread, pool_velocities
    from aptnn.predict import APTPredictor

    rng = np.random.default_rng(0)
    pool = [water_box(seed=k) for k in range(5)]
    for atoms in pool:
        atoms.arrays["velocities"] = rng.normal(scale=0.01, size=(len(atoms), 3))
    vel = pool_velocities(pool)
    a, b = random_network(seed=1), random_network(seed=2)
    committee = APTPredictor([a, b])
    members = [APTPredictor([a]), APTPredictor([b])]
    intensity = [np.mean([np.sum((m.predict(f) @ v[:, :, None])[..., 0].sum(0) ** 2) for f, v in zip(pool, vel)])
                 for m in members]
    expected = np.std(intensity, ddof=1) / np.mean(intensity)
    assert expected > 0.01
    assert intensity_spread(committee, pool, vel) == pytest.approx(expected, rel=1e-6)
    assert intensity_spread(APTPredictor([a, a]), pool, vel) == pytest.approx(0.0, abs=1e-12)
    still = [water_box(seed=k) for k in range(2)]
    assert pool_velocities(still) is None
    from aptnn.labels import set_apt

    labelled = pool[0].copy()
    set_apt(labelled, committee.predict(labelled))
    with pytest.raises(InputError, match="needs velocities"):
        learn(still, [labelled], tmp_path / "out", LearnSettings(target_intensity_spread=0.05))
    assert not (tmp_path / "out").exists()  # refused before anything is written
