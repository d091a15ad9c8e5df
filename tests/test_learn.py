"""Active learning with real xTB labels on small water clusters: rounds, no relabelling, resume."""
import csv

import numpy as np
import pytest
from conftest import water_box

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
