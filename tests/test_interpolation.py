"""APTs every K steps (:mod:`aptnn.interpolation`) and committee member series, through both producers.

The interpolation is exact for APTs cubic in time; K = 1 evaluates every step; resumed runs and shards write
what one serial run writes; ``aptnn-post`` and aptnn-ipi's processor agree; the network runs on ~1/K of the
steps; member series are each member's own total, and the other series use the committee mean."""
from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import torch
from test_estimators import DT, MODEL, ipi_stream, read_back, relative, trajectory, write_beads

from aptnn.interpolation import APTInterpolator, NodeEvaluator, every_from, lagrange_weights
from aptnn.io.stream import read_chunks, read_info
from aptnn.post import PostSettings, run


def cubic(step: int) -> np.ndarray:
    """A 2×3×3 'APT' cubic in time: interpolation through 4 nodes reproduces it exactly."""
    t = float(step)
    base = np.arange(18.0).reshape(2, 3, 3)
    return 0.3 + base * 1e-2 * t - 2e-3 * t**2 * np.sin(base) + 1e-4 * t**3 * np.cos(base)


def collect(every: int, steps: range, batch: int = 1):
    calls = []

    def evaluate(payloads, first):
        calls.append(len(payloads))
        return [cubic(p) for p in payloads]

    ev = NodeEvaluator(every, evaluate, batch)
    out = []
    for s in steps:
        out += ev.feed([(s, s)])
    out += ev.finish()
    return out, calls


@pytest.mark.parametrize("every", [1, 2, 3, 4, 8])
def test_cubic_apts_are_interpolated_exactly_in_order(every):
    out, calls = collect(every, range(0, 37))
    assert [s for s, _, _ in out] == list(range(37))            # every step once, in order
    assert all(s == p for s, p, _ in out)
    err = max(float(np.abs(a - cubic(s)).max()) for s, _, a in out)
    assert err < 1e-12
    nodes = len(range(0, 37, every)) + (36 % every != 0)         # the nodes, and the last step
    assert sum(calls) == nodes


def test_restart_off_the_grid_and_short_runs():
    out, calls = collect(4, range(5, 12))   # first step 5 is no multiple of K: it becomes a node
    assert [s for s, _, _ in out] == list(range(5, 12)) and sum(calls) == 3   # steps 5, 8 and the last, 11
    errors = {s: float(np.abs(a - cubic(s)).max()) for s, _, a in out}
    assert errors[5] == errors[8] == errors[11] == 0.0                      # nodes exact
    assert 0 < max(errors.values()) < 2e-3                                  # 3 nodes: quadratic, close
    ip = APTInterpolator(2)
    assert ip.push(0, "a", cubic(0))[0][0] == 0 and ip.push(1, "b") == []
    with pytest.raises(ValueError, match="node"):
        ip.push(2, "c")
    with pytest.raises(ValueError, match="increase"):
        ip.push(1, "c", cubic(1))


def test_weights_and_every():
    w = lagrange_weights([0, 2, 4, 6], 3.0)
    assert np.isclose(w.sum(), 1.0) and np.allclose(w, [-1 / 16, 9 / 16, 9 / 16, -1 / 16])
    assert every_from(0.5, 3) == 3 and every_from(0.5, None, 1.0) == 2 and every_from(0.25, None, 1.0) == 4
    assert every_from(2.0, None, 1.0) == 1 and every_from(0.5) == 1


@pytest.fixture(scope="module")
def predictor():
    from aptnn.predict import APTPredictor

    return APTPredictor.load(MODEL, dtype="float64")


@pytest.fixture(scope="module")
def committee(predictor):
    """Two members: the shipped network and a copy with a perturbed readout."""
    from aptnn.predict import APTPredictor

    second = copy.deepcopy(predictor.members[0])
    with torch.no_grad():
        for p in list(second.parameters())[-2:]:
            p.mul_(1.05)
    return APTPredictor([predictor.members[0], second], fingerprint="test-committee sha256:0")


def post_stream(path, sources, predictor, **kw):
    kw.setdefault("apt_every", 1)
    settings = PostSettings(progress=False, **{k: v for k, v in kw.items() if k != "estimator"})
    out = run(sources, MODEL, str(path), settings, estimator=kw.get("estimator", "centroid"), predictor=predictor)
    return read_info(out), *next(read_chunks(out))


def test_post_every_k_runs_the_network_on_a_kth_of_the_frames_and_stays_close(tmp_path, predictor):
    frames, cell = trajectory(1, steps=26)
    sources = write_beads(tmp_path, frames, velocities=True)
    calls = []
    original = predictor.predict_batch

    def counting(frames, *args):
        calls.append(len(frames))
        return original(frames, *args)

    predictor.predict_batch = counting
    try:
        _, t1, d1 = post_stream(tmp_path / "k1.h5", sources, predictor, apt_every=1)
        n1, calls[:] = sum(calls), []
        info, t4, d4 = post_stream(tmp_path / "k4.h5", sources, predictor, apt_every=4)
        n4 = sum(calls)
    finally:
        del predictor.predict_batch
    assert n1 == 24 and n4 == 7                                   # frames 0, 4, …, 20 and the last, 23
    assert info.extra["apt_every"] == 4 and info.extra["apt_interpolation"] == "lagrange-cubic"
    np.testing.assert_array_equal(t1, t4)
    np.testing.assert_array_equal(d4[::4], d1[::4])               # the nodes: the network's own APTs
    assert 0 < relative(d4, d1) < 0.05


def test_resumed_and_sharded_runs_write_what_one_run_writes(tmp_path, predictor):
    frames, cell = trajectory(1, steps=30)
    sources = write_beads(tmp_path, frames, velocities=True)
    _, t, whole = post_stream(tmp_path / "whole.h5", sources, predictor, apt_every=4)
    # a resumed run: the file holds the first 13 frames (a stop mid-run), the rest is appended
    out = tmp_path / "resumed.h5"
    post_stream(out, sources, predictor, apt_every=4)
    with h5py.File(out, "a") as f:
        for name in ("time", "dMdt", "check", "kinetic_temperature"):
            f[name].resize(13, axis=0)
        f["flushed"][0] = 13
    _, t2, resumed = post_stream(out, sources, predictor, apt_every=4)
    np.testing.assert_array_equal(resumed, whole)
    with pytest.raises(Exception, match="apt_every"):
        post_stream(out, sources, predictor, apt_every=2)
    # shards: output frames [0, 11) and [11, 28) with the neighbours the interpolation needs
    parts = []
    for first, stop in ((0, 11), (11, 28)):
        read = (max(0, (first // 4 - 2) * 4), stop + 12)
        settings = PostSettings(progress=False, apt_every=4)
        path = run(sources, MODEL, str(tmp_path / f"part{first}.h5"), settings, predictor=predictor,
                   frame_range=(read[0], read[1]), output_range=(first, stop))
        parts.append(next(read_chunks(path))[1])
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("estimator", ["increment", "velocity"])
def test_ipi_processor_interpolates_like_post(tmp_path, predictor, estimator):
    frames, cell = trajectory(1, steps=22)
    sources = write_beads(tmp_path, frames)
    frames = read_back(sources)
    info_1, t_1, d_1 = ipi_stream(tmp_path, predictor, frames, cell, estimator, "k1.h5")
    info_k, t_k, d_k = ipi_stream(tmp_path, predictor, frames, cell, estimator, "k3.h5", apt_every=3)
    assert info_k.extra["apt_every"] == 3 and len(t_k) == len(t_1)
    np.testing.assert_array_equal(t_k, t_1)
    assert 0 < relative(d_k, d_1) < 0.05
    if estimator == "velocity":  # rows at nodes (MD steps 0, 3, 6, …) use the network's own APTs
        nodes = np.round(t_k / DT).astype(int) % 3 == 0
        assert nodes.sum() >= 6
        np.testing.assert_array_equal(d_k[nodes], d_1[nodes])


def test_committee_streams_member_series(tmp_path, predictor, committee):
    from aptnn.predict import APTPredictor

    frames, cell = trajectory(1, steps=8)
    sources = write_beads(tmp_path, frames, velocities=True)
    info, t, d = post_stream(tmp_path / "committee.h5", sources, committee)
    assert info.series == ["total", "group:O", "group:H", "member0", "member1"]
    members = []
    for k, net in enumerate(committee.members):
        _, _, dk = post_stream(tmp_path / f"m{k}.h5", sources, APTPredictor([net], fingerprint=f"m{k} sha256:{k}"))
        members.append(dk[:, 0])
        np.testing.assert_allclose(d[:, 3 + k], dk[:, 0], rtol=0, atol=1e-12)   # the member's own total
    np.testing.assert_allclose(d[:, 0], np.mean(members, axis=0), rtol=0, atol=1e-12)  # mean APT: mean total
    assert np.abs(d[:, 3] - d[:, 4]).max() > 1e-4                             # the members differ
    # aptnn-ipi's processor streams the same member series (velocity estimator, PIMD centroid of 2 beads)
    frames2, cell2 = trajectory(2, steps=6)
    pimd = write_beads(tmp_path, frames2)
    info_i, t_i, d_i = ipi_stream(tmp_path, committee, read_back(pimd), cell2, "velocity", "ipi.h5")
    assert info_i.series[-2:] == ["member0", "member1"]
    info_p, t_p, d_p = post_stream(tmp_path / "pimd.h5", pimd, committee)
    assert info_p.series[-2:] == ["member0", "member1"]
    assert relative(d_p[:, -2:], d_i[:, -2:]) < 1e-10
    centre = info_i.series.index("centroid")
    np.testing.assert_allclose(d_i[:, centre], d_i[:, -2:].mean(1), rtol=0, atol=1e-12)
