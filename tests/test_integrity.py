"""Nothing lost, nothing silently wrong: aptnn-post under disk failure, a second writer, a replaced trajectory,
another model, and absurd numbers (real LAMMPS output, real HDF5 files, the real console command)."""
import os
import shutil
import subprocess
import sys
import textwrap

import ase.io
import numpy as np
import pytest
from click.testing import CliRunner

from aptnn.cli import post
from aptnn.demo import run_water
from aptnn.errors import APTNNError, InputError, OutputError
from aptnn.io.stream import n_frames, read_chunks
from aptnn.io.stream_writer import StreamWriter
from aptnn.io.trajectory import open_trajectory
from aptnn.post import PostSettings, run

MODEL = "water-rpbe-d3"


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    """A real LAMMPS run: 32 SPC/Fw waters, 0.5 fs steps, 40 dumped steps (real units)."""
    return run_water(tmp_path_factory.mktemp("lammps"), n_molecules=32, steps=40, equilibrate=100)


def aptnn_post(*args, env=None, preexec=None):
    cmd = [sys.executable, "-m", "aptnn.cli_post", *map(str, args), "--quiet", "--threads", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=preexec,
                          env=dict(os.environ, **(env or {})))


def one_error_line(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("aptnn: error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _file_size_limit(limit):
    def apply():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_write_is_one_error_and_a_rerun_completes_the_stream(dump, tmp_path):
    out = tmp_path / "w.h5"
    res = aptnn_post(dump, "-o", out, "--timestep", "0.5", env={"APTNN_FLUSH_SECONDS": "0"},
                     preexec=_file_size_limit(60_000))
    one_error_line(res, str(out), "cannot write")
    assert "wrote" not in res.stdout
    res = aptnn_post(dump, "-o", out, "--timestep", "0.5")  # space again: continue, verified
    assert res.returncode == 0, res.stderr[-3000:]
    ref = run([open_trajectory(str(dump), timestep=0.5)], MODEL, str(tmp_path / "ref.h5"),
              PostSettings(progress=False))
    (tr, dr), (tk, dk) = next(read_chunks(ref)), next(read_chunks(out))
    np.testing.assert_array_equal(tk, tr)
    np.testing.assert_allclose(dk, dr, rtol=1e-5, atol=1e-9)


HOLD = textwrap.dedent("""
    import sys, time, numpy as np
    from aptnn.io.stream_writer import StreamWriter
    w = StreamWriter(sys.argv[1], ["total", "group:O", "group:H"], dt_fs=0.5, flush_every=0.0)
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_second_aptnn_post_on_the_same_output_refuses(dump, tmp_path):
    out = tmp_path / "busy.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        res = aptnn_post(dump, "-o", out, "--timestep", "0.5")
        one_error_line(res, str(out), f"being written by another process (pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_resume_refuses_a_replaced_trajectory_a_foreign_stream_and_another_model(dump, tmp_path):
    traj = tmp_path / "t.lammpstrj"
    shutil.copy(dump, traj)
    out = tmp_path / "t.h5"
    source = open_trajectory(str(traj), lammps_units="real", timestep=0.5)
    run([source], MODEL, str(out), PostSettings(progress=False))
    full = n_frames(out)
    # same name, other content (another run's frames): refused, the stream is untouched
    lines = open(dump).read().splitlines()
    shifted = []
    for ln in lines:  # move every x coordinate by 0.3 Å (a different trajectory of the same system)
        parts = ln.split()
        if ln.startswith("ITEM: ATOMS"):
            x = parts[2:].index("xu")
        elif len(parts) > 5 and parts[0].isdigit():
            parts[x] = repr(float(parts[x]) + 0.3)
        shifted.append(" ".join(parts))
    traj.write_text("\n".join(shifted) + "\n")
    with pytest.raises(OutputError, match="cannot resume: frame 0 of .* is not the frame this stream was made from"):
        run([open_trajectory(str(traj), lammps_units="real", timestep=0.5)], MODEL, str(out),
            PostSettings(progress=False))
    assert n_frames(out) == full
    # a stream without fingerprints or model (another program's file) is never continued
    foreign = tmp_path / "foreign.h5"
    with StreamWriter(foreign, ["total", "group:O", "group:H"], dt_fs=0.5) as w:
        w.append([0.0, 0.5], np.zeros((2, 3, 3)))
    with pytest.raises(OutputError, match="cannot resume: the file records no model"):
        run([open_trajectory(str(dump), timestep=0.5)], MODEL, str(foreign), PostSettings(progress=False))
    # another model: refused
    other = tmp_path / "other.pt"
    shutil.copy(os.path.join(os.path.dirname(__import__("aptnn").__file__), "models", f"{MODEL}.pt"), other)
    with open(other, "ab") as fh:
        fh.write(b"\0")  # other bytes, same weights: another fingerprint
    with pytest.raises(OutputError, match="cannot resume: file was written with model"):
        run([open_trajectory(str(dump), timestep=0.5)], str(other), str(out),
            PostSettings(progress=False))


def test_absurd_numbers_are_errors(dump, tmp_path):
    res = CliRunner().invoke(post, [str(dump), "--timestep", "0", "-o", str(tmp_path / "z.h5"), "--quiet"])
    assert res.exit_code == 2 and "--timestep" in res.output and not (tmp_path / "z.h5").exists()
    res = CliRunner().invoke(post, [str(dump), "--timestep", "-0.5", "-o", str(tmp_path / "z.h5"), "--quiet"])
    assert res.exit_code == 2 and not (tmp_path / "z.h5").exists()
    frames = []
    for k, f in zip(range(6), open_trajectory(str(dump), timestep=0.5)):
        a = f.atoms.copy()
        a.arrays["velocities"] = f.velocities
        a.info["time"] = 0.5 * k if k != 3 else 0.5  # time goes back at frame 3
        frames.append(a)
    ase.io.write(tmp_path / "back.extxyz", frames)
    with pytest.raises(InputError, match="frame 3: time does not increase"):
        run([open_trajectory(str(tmp_path / "back.extxyz"))], MODEL, str(tmp_path / "b.h5"),
            PostSettings(progress=False, temperature_K=300.0))
    for k, a in enumerate(frames):
        a.info["time"] = 0.5 * k
    frames[2].positions[5] = frames[2].positions[7]  # two atoms at one place
    ase.io.write(tmp_path / "overlap.extxyz", frames)
    with pytest.raises(InputError, match=r"overlap.extxyz, frame 2: atoms (5 and 7|7 and 5) are 0 Å apart"):
        run([open_trajectory(str(tmp_path / "overlap.extxyz"))], MODEL, str(tmp_path / "o.h5"),
            PostSettings(progress=False, temperature_K=300.0))


def _other_model(tmp_path):
    other = tmp_path / "other.pt"
    shutil.copy(os.path.join(os.path.dirname(__import__("aptnn").__file__), "models", f"{MODEL}.pt"), other)
    with open(other, "ab") as fh:
        fh.write(b"\0")
    return str(other)


def test_sharded_runs_never_mix_models(tmp_path):
    from helpers import water_box

    from aptnn import distributed as dist
    from aptnn.io.stream_repair import merge_streams
    from aptnn.io.trajectory import open_run
    from aptnn.sharded_post import Shard, run_sharded

    rng = np.random.default_rng(0)
    base = water_box(2, seed=3)
    v = rng.normal(scale=0.01, size=(len(base), 3))
    frames = []
    for k in range(12):
        a = base.copy()
        a.positions += 0.5 * k * v
        a.info["time"] = 0.5 * k
        a.arrays["velocities"] = v
        frames.append(a)
    traj = tmp_path / "t.extxyz"
    ase.io.write(traj, frames)
    out = str(tmp_path / "t.h5")
    settings = PostSettings(progress=False, temperature_K=300.0)
    opener = lambda p: open_run(p)  # noqa: E731
    other = _other_model(tmp_path)
    # a finished output is not silently 'finished' for another model
    run_sharded(dist.SERIAL, [str(traj)], [out], opener, MODEL, settings, [], "cpu", "centroid", shard_frames=4)
    with pytest.raises(APTNNError, match="t.h5: was written with model"):
        run_sharded(dist.SERIAL, [str(traj)], [out], opener, other, settings, [], "cpu", "centroid", shard_frames=4)
    # a part left by an interrupted run with one model is not merged into a run with another
    os.remove(out)
    part = Shard(str(traj), out, 0, 4, False, 1).part
    os.makedirs(os.path.dirname(part))
    run(opener(str(traj)), MODEL, part, settings, frame_range=(0, 4))
    with pytest.raises(APTNNError, match="was written with model"):
        run_sharded(dist.SERIAL, [str(traj)], [out], opener, other, settings, [], "cpu", "centroid", shard_frames=4)
    # nor can parts of two models be merged by hand
    run(opener(str(traj)), other, str(tmp_path / "b.h5"), settings, frame_range=(4, 8))
    with pytest.raises(InputError, match="parts of different models cannot be merged"):
        merge_streams([part, tmp_path / "b.h5"], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_velocities_in_the_wrong_unit_are_an_error_not_a_millikelvin_stream(dump, tmp_path):
    """A real-units dump read as metal: velocities 1000× too slow, a kinetic temperature of ~3e-4 K."""
    out = tmp_path / "metal.h5"
    res = CliRunner().invoke(post, [str(dump), "--units", "metal", "--timestep", "0.0005", "-o", str(out), "--quiet"])
    assert res.exit_code == 2 and "kinetic temperature of the first frame is" in res.output
    assert "velocity units" in res.output and not out.exists()


def test_frames_a_unit_mistake_apart_are_refused(dump, tmp_path):
    """--timestep 100 (e.g. 0.1 ps meant in metal units, given to a real-units dump): 100 fs between frames."""
    out = tmp_path / "slow.h5"
    res = CliRunner().invoke(post, [str(dump), "--units", "real", "--timestep", "100", "-o", str(out), "--quiet"])
    assert res.exit_code == 2 and "frames are 100 fs apart" in res.output and "Nyquist 167 cm⁻¹" in res.output
    assert not out.exists()


def test_the_model_travels_as_an_object_hashed_once(dump, tmp_path):
    """The predictor carries its fingerprint: a run given the loaded model never re-reads the checkpoint
    (here it is gone by then) and records the fingerprint taken at load time."""
    from aptnn.predict import APTPredictor

    ckpt = tmp_path / "m.pt"
    shutil.copy(os.path.join(os.path.dirname(__import__("aptnn").__file__), "models", f"{MODEL}.pt"), ckpt)
    model = APTPredictor.load(str(ckpt))
    assert model.fingerprint.startswith(f"{ckpt} sha256:")
    os.remove(ckpt)
    out = run([open_trajectory(str(dump), lammps_units="real", timestep=0.5)], str(ckpt), str(tmp_path / "o.h5"),
              PostSettings(progress=False), predictor=model)
    from aptnn.io.stream import read_info

    assert read_info(out).model == model.fingerprint
