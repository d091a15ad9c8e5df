"""Snapshot selection: invariant descriptors, farthest-point sampling, committee spread, random."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from e3nn import o3
from helpers import random_network, water_box

from aptnn.cli import main
from aptnn.errors import InputError
from aptnn.io import read_frames, write_frames
from aptnn.predict import APTPredictor
from aptnn.select import farthest_points, frame_descriptors, select


@pytest.fixture(scope="module")
def predictor():
    return APTPredictor([random_network(), random_network(seed=7)])


def test_descriptors_are_invariant(predictor):
    atoms = water_box(seed=3)
    r = o3.rand_matrix(dtype=torch.float64).numpy()
    turned = atoms.copy()
    turned.positions = atoms.positions @ r.T
    turned.cell = atoms.cell.array @ r.T
    shuffled = atoms[np.random.default_rng(1).permutation(len(atoms))]
    d = frame_descriptors(predictor, [atoms, turned, shuffled])
    np.testing.assert_allclose(d[1], d[0], atol=1e-9)
    np.testing.assert_allclose(d[2], d[0], atol=1e-9)
    assert np.abs(d[0]).max() > 1e-3


def test_fps_picks_one_frame_per_cluster(predictor):
    frames = []
    for seed in (1, 2, 3):  # three distinct structures, each with two near-copies
        base = water_box(seed=seed)
        for k in range(3):
            f = base.copy()
            f.positions += np.random.default_rng(10 * seed + k).normal(scale=1e-3, size=f.positions.shape)
            frames.append(f)
    chosen, _ = select(frames, 3, "fps", predictor)
    assert sorted(k // 3 for k in chosen) == [0, 1, 2]
    assert farthest_points(np.array([[0.0], [1.0], [10.0]]), 2) == [2, 0]


def test_committee_selects_the_largest_spread(predictor):
    frames = [water_box(seed=s) for s in range(5)]
    chosen, scores = select(frames, 2, "committee", predictor, exclude={0})  # frame 0 already labelled
    assert 0 not in chosen and np.isnan(scores[0]) and np.all(scores[1:] > 0)
    assert set(chosen) == set(np.argsort(np.nan_to_num(scores, nan=-1))[::-1][:2].tolist())
    with pytest.raises(InputError, match="committee model"):
        select(frames, 1, "committee", APTPredictor([random_network()]))


def test_committee_fps_prefers_diverse_frames_among_the_uncertain(predictor):
    """Three near-copies of one uncertain frame and distinct ones: committee picks copies, committee-fps does not."""
    base = [water_box(seed=s) for s in range(6)]
    spread = select(base, 1, "committee", predictor)[1]
    top = int(np.argmax(spread))
    frames = list(base)
    for k in range(3):  # neighbours in an MD run: the same frame, slightly moved
        twin = base[top].copy()
        twin.positions += np.random.default_rng(k).normal(scale=1e-3, size=twin.positions.shape)
        frames.append(twin)
    twins = {top, 6, 7, 8}
    plain, _ = select(frames, 3, "committee", predictor)
    diverse, _ = select(frames, 3, "committee-fps", predictor)
    assert len(twins & set(plain)) >= 2   # the largest spreads are the copies of one frame
    assert len(twins & set(diverse)) == 1  # only one of them, then the most dissimilar uncertain frames
    spreads = select(frames, 1, "committee", predictor)[1]
    assert set(diverse) <= set(np.argsort(spreads)[::-1][:12].tolist())


def test_random_is_seeded_and_cli_writes_the_frames(tmp_path):
    frames = [water_box(seed=s, pbc=False) for s in range(6)]
    assert select(frames, 3, "random", seed=4)[0] == select(frames, 3, "random", seed=4)[0]
    with pytest.raises(InputError, match="only 6"):
        select(frames, 7, "random")
    write_frames(tmp_path / "t.extxyz", frames)
    res = CliRunner().invoke(main, ["select", str(tmp_path / "t.extxyz"), "-n", "2", "-o", str(tmp_path / "s.extxyz"),
                                    "--method", "fps"])
    assert res.exit_code == 0, res.output
    out = read_frames(tmp_path / "s.extxyz")
    assert len(out) == 2 and all(0 <= a.info["source_frame"] < 6 for a in out)
    k = out[0].info["source_frame"]
    np.testing.assert_allclose(out[0].positions, frames[k].positions, atol=1e-6)
