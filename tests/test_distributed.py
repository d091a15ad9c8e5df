"""torch.distributed runs with 2 local processes (gloo), launched with the real `torchrun`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase.io import write
from click.testing import CliRunner
from helpers import water_box

from aptnn.cli import merge, post
from aptnn.io.stream_repair import merge_streams
from aptnn.io.trajectory import open_trajectory
from aptnn.post import PostSettings, run
from aptnn.sharded_post import Shard, assign, plan

TORCHRUN = Path(sys.executable).with_name("torchrun")
MODEL = "water-rpbe-d3"


def torchrun(args: list[str], cwd: Path, nproc: int = 2, timeout: float = 300, **popen):
    """Run ``torchrun --standalone --nproc-per-node N ARGS`` (one torch thread per process)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [str(TORCHRUN), "--standalone", f"--nproc-per-node={nproc}", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=env, **popen)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def trajectory(path: Path, n_frames: int, seed: int, velocities: bool = True) -> Path:
    """A jittered 24-atom water box moving along random velocities (Å/fs), times 0.5 fs apart."""
    rng = np.random.default_rng(seed)
    base = water_box(2, seed=seed)
    v = rng.normal(scale=0.01, size=(len(base), 3))
    frames = []
    for k in range(n_frames):
        a = base.copy()
        a.positions += k * 0.5 * v + rng.normal(scale=0.01, size=v.shape)
        a.info["time"] = 0.5 * k
        if velocities:
            a.arrays["velocities"] = v + rng.normal(scale=0.001, size=v.shape)
        frames.append(a)
    write(path, frames, format="extxyz")
    return path


def kill_all_in(directory: Path) -> None:
    """SIGKILL every process whose working directory is ``directory`` (a node failure, as seen by the job)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "cwd") == str(directory):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue


def same_stream(a: Path, b: Path) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        np.testing.assert_array_equal(fa["dMdt"][()], fb["dMdt"][()])
        np.testing.assert_array_equal(fa["time"][()], fb["time"][()])
        assert list(fa["series"][()]) == list(fb["series"][()])
        skip = {"source"}  # absolute vs relative path only
        assert {k: v for k, v in fa.attrs.items() if k not in skip} == {k: v for k, v in fb.attrs.items()
                                                                         if k not in skip}


def test_plan_covers_every_frame_once():
    shards = plan([("a", "a.h5", 10, False), ("b", "b.h5", 3, True), ("c", "c.h5", 1, False)], world=3,
                  stride=2, shard_frames=4)
    for path, n in (("a", 10), ("b", 3), ("c", 1)):
        mine = sorted((s.first, s.stop) for s in shards if s.path == path)
        assert mine[0][0] == 0 and mine[-1][1] == n
        assert all(p[1] == q[0] for p, q in zip(mine, mine[1:]))
        assert all(b - a >= 2 for a, b in mine) or n < 2
    ranks = assign(shards, 3)
    assert sorted(s.part for r in ranks for s in r) == sorted(s.part for s in shards)
    assert max(sum(s.frames for s in r) for r in ranks) <= 6
    fd = Shard("b", "b.h5", 1, 3, True, 2)
    assert fd.input_range() == (2, 7)  # output frames 1, 2 → file frames 3, 5 and their neighbours
    assert Shard("a", "a.h5", 1, 3, False, 2).input_range() == (2, 5)


@pytest.mark.parametrize("velocities,every", [(True, 1), (False, 1), (True, 2), (False, 2)])
def test_shard_runs_merge_to_the_serial_stream(tmp_path, velocities, every):
    """Shards write what one run writes, also with APTs every K frames (each shard reads the neighbours its
    interpolation needs)."""
    path = trajectory(tmp_path / "t.extxyz", 13, seed=1, velocities=velocities)
    settings = PostSettings(stride=2, progress=False, apt_every=every)
    serial = run([open_trajectory(str(path))], MODEL, str(tmp_path / "serial.h5"), settings)
    n = 7 if velocities else 6  # 13 frames, stride 2: 7 with velocities; (13 − 2) / 2 → 6 by differences
    parts = []
    for a, b in ((0, 2), (2, 4), (4, n)):
        shard = Shard(str(path), "x", a, b, not velocities, 2, every)
        parts.append(run([open_trajectory(str(path))], MODEL, str(tmp_path / f"p{a}.h5"), settings,
                         frame_range=shard.input_range(), output_range=(a, b)))
    merge_streams(parts, tmp_path / "merged.h5")
    same_stream(Path(serial), tmp_path / "merged.h5")
    with pytest.raises(Exception, match="does not continue"):
        merge_streams([parts[0], parts[2]], tmp_path / "gap.h5")
    if every > 1:
        assert h5py.File(tmp_path / "merged.h5")["dMdt"].attrs is not None
        with h5py.File(tmp_path / "merged.h5") as f:
            assert f.attrs["apt_every"] == every
    res = CliRunner().invoke(merge, [*parts, "-o", str(tmp_path / "cli.h5")])
    assert res.exit_code == 0 and f"({n} frames)" in res.output


@pytest.mark.slow
def test_distributed_post_equals_serial_and_fails_loudly(tmp_path):
    paths = [trajectory(tmp_path / f"t{k}.extxyz", n, seed=k) for k, n in enumerate((9, 14, 6))]
    serial = tmp_path / "serial"
    serial.mkdir()
    for p in paths:
        res = CliRunner().invoke(post, [str(p), "-o", str(serial / f"{p.name}.dmdt.h5"),
                                                                  "--quiet", "--threads", "1"])
        assert res.exit_code == 0, res.output
    res = torchrun(["-m", "aptnn.cli_post", *[p.name for p in paths], "--quiet", "--distributed",
                    "--shard-frames", "4", "--spectrum", "spec.csv", "--max-lag", "2"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    for p in paths:
        same_stream(serial / f"{p.name}.dmdt.h5", tmp_path / f"{p.name}.dmdt.h5")
        assert not (tmp_path / f"{p.name}.dmdt.h5.parts").exists()
    assert (tmp_path / "spec.csv").exists() and res.stdout.count("wrote t") == 3  # rank 0 only

    # a rank that fails makes the whole command fail with that rank's error
    bad = tmp_path / "bad.extxyz"
    bad.write_text((tmp_path / "t2.extxyz").read_text().replace("\nO ", "\nNa ", 1))
    res = torchrun(["-m", "aptnn.cli_post", "t0.extxyz", "bad.extxyz", "--quiet", "--distributed", "--overwrite"],
                   tmp_path)
    assert res.returncode != 0
    assert "rank" in res.stderr and "Na" in res.stderr and "failed on 1 of 2 rank(s)" in res.stderr
    assert res.stderr.count("aptnn: error:") == 1  # printed once, by rank 0


@pytest.mark.slow
def test_rerun_after_a_killed_distributed_run_skips_finished_shards(tmp_path):
    path = trajectory(tmp_path / "long.extxyz", 400, seed=5)
    ref = run([open_trajectory(str(path))], MODEL, str(tmp_path / "ref.h5"), PostSettings(progress=False))
    args = ["-m", "aptnn.cli_post", "long.extxyz", "--quiet", "--distributed", "--shard-frames", "10"]
    proc = torchrun(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = tmp_path / "long.extxyz.dmdt.h5.parts"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(parts.glob("*.h5"))) < 4:
        time.sleep(0.05)
    kill_all_in(tmp_path)  # torchrun and its workers (which run in sessions of their own)
    proc.wait()
    finished = len(list(parts.glob("*.h5")))
    assert 4 <= finished < 40, finished
    res = torchrun(args, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{finished} of 40 shards were finished by an earlier run" in res.stderr
    same_stream(Path(ref), tmp_path / "long.extxyz.dmdt.h5")


def _weights(path: Path) -> dict:
    import aptnn

    return {k: v.double() for k, v in aptnn.load_model(str(path), dtype="float64").members[0].state_dict().items()}


@pytest.mark.slow
def test_ddp_training_equals_single_process_training(tmp_path):
    from test_train import labelled_boxes

    write(tmp_path / "train.extxyz", labelled_boxes(5, seed=3), format="extxyz")
    write(tmp_path / "valid.extxyz", labelled_boxes(2, seed=4), format="extxyz")
    common = ["train", "train.extxyz", "--valid", "valid.extxyz", "--epochs", "3", "--batch-size", "2",
              "--channels", "4", "--float64", "--quiet", "--seed", "7"]
    serial = subprocess.run([sys.executable, "-m", "aptnn.cli", *common, "-o", "serial.pt", "--threads", "1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert serial.returncode == 0, serial.stderr
    res = torchrun(["-m", "aptnn.cli", *common, "-o", "ddp.pt", "--distributed"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(tmp_path / "serial.pt"), _weights(tmp_path / "ddp.pt")
    for key in a:
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), rtol=1e-7, atol=1e-9, err_msg=key)
    assert res.stdout.count("best validation RMSE") == 1  # rank 0 reports
    curve_s = (tmp_path / "serial.csv").read_text().splitlines()
    curve_d = (tmp_path / "ddp.csv").read_text().splitlines()
    for ls, ld in zip(curve_s[1:], curve_d[1:]):  # same train/valid RMSE per epoch (wall time differs)
        np.testing.assert_allclose([float(x) for x in ls.split(",")[3:]], [float(x) for x in ld.split(",")[3:]],
                                   rtol=1e-8)


@pytest.mark.slow
def test_committee_members_spread_over_ranks_equal_serial_members(tmp_path):
    from test_train import labelled_boxes

    write(tmp_path / "train.extxyz", labelled_boxes(4, seed=3), format="extxyz")
    common = ["train", "train.extxyz", "--epochs", "2", "--channels", "4", "--float64", "--quiet", "--committee", "3",
              "--valid-fraction", "0.25"]
    serial = subprocess.run([sys.executable, "-m", "aptnn.cli", *common, "-o", "serial.pt", "--threads", "1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert serial.returncode == 0, serial.stderr
    res = torchrun(["-m", "aptnn.cli", *common, "-o", "spread.pt", "--distributed"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    import aptnn

    a, b = aptnn.load_model(str(tmp_path / "serial.pt")), aptnn.load_model(str(tmp_path / "spread.pt"))
    assert len(b.members) == 3
    for ma, mb in zip(a.members, b.members):
        for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
            assert ka == kb
            np.testing.assert_array_equal(va.numpy(), vb.numpy())


@pytest.mark.slow
def test_local_torchrun_example_runs(tmp_path):
    import shutil

    script = Path(__file__).resolve().parents[1] / "examples" / "distributed" / "run_local.sh"
    shutil.copy(script, tmp_path / "run_local.sh")  # it works in its own folder
    res = subprocess.run(["bash", str(tmp_path / "run_local.sh"), "2", "60"], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "spectrum.png").exists() and "peaks at" in res.stdout
    for k in range(2):
        with h5py.File(tmp_path / f"run{k}" / "water.lammpstrj.dmdt.h5", "r") as f:
            assert f["dMdt"].shape[0] == 60 and np.isfinite(f["dMdt"][()]).all()
