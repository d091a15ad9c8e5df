"""The HDF5 dM/dt stream file: schema, units, resume, foreign writers, surviving a killed producer."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from aptnn.cli import main
from aptnn.errors import OutputError
from aptnn.io.stream import is_stream_file, n_frames, read_chunks, read_info
from aptnn.io.stream_writer import StreamWriter


def test_schema_and_units(tmp_path):
    path = tmp_path / "s.h5"
    with StreamWriter(path, ["total", "group:O"], dt_fs=0.5, temperature_K=300.0, volume_A3=3842.0,
                      natoms=384, estimator="velocity", model="water-rpbe-d3 sha256:abc", source="t.h5") as w:
        w.append([0.0, 0.5], np.ones((2, 2, 3)))
    with h5py.File(path) as f:
        assert f["dMdt"].attrs["units"] == "e*angstrom/fs" and f["time"].attrs["units"] == "fs"
        assert f["dMdt"].maxshape == (None, 2, 3) and f["dMdt"].chunks is not None
        assert f.attrs["format"] == "aptnn-dmdt" and f.attrs["aptnn_version"]
    info = read_info(path)
    assert info.series == ["total", "group:O"] and info.volume_A3 == 3842.0 and info.natoms == 384
    assert info.estimator == "velocity" and info.model.startswith("water-rpbe-d3")
    assert is_stream_file(path) and n_frames(path) == 2


def test_refuses_to_overwrite_and_resumes(tmp_path):
    path = tmp_path / "r.h5"
    with StreamWriter(path, ["total"], dt_fs=1.0, source="run.lammpstrj") as w:
        w.append(np.arange(5.0), np.zeros((5, 1, 3)))
    with pytest.raises(OutputError, match="output exists"):
        StreamWriter(path, ["total"], dt_fs=1.0)
    with pytest.raises(OutputError, match="cannot resume"):
        StreamWriter(path, ["total", "bead0"], dt_fs=1.0, resume=True)
    with pytest.raises(OutputError, match="cannot resume: file was written from source"):
        StreamWriter(path, ["total"], dt_fs=1.0, resume=True, source="other.lammpstrj")
    with StreamWriter(path, ["total"], dt_fs=1.0, resume=True) as w:
        assert w.n_frames == 5
        w.append(np.arange(5.0, 8.0), np.ones((3, 1, 3)))
    t, d = next(read_chunks(path))
    np.testing.assert_array_equal(t, np.arange(8.0))
    assert d[:5].sum() == 0 and d[5:].sum() == 9


def test_file_from_another_program_works(tmp_path):
    """Only dMdt, time and the series names are required (here as an attribute)."""
    path = tmp_path / "foreign.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["dMdt"] = rng.normal(size=(500, 2, 3))
        f["time"] = 2.0 * np.arange(500)
        f.attrs["series"] = ["total", "group:A"]
    res = CliRunner().invoke(main, ["spectrum", str(path), "-o", str(tmp_path / "s.csv"), "--temperature", "300",
                                    "--max-lag", "100"])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["wavenumber_cm-1", "cross_section_cm2", "cross_section_cm2_err"]
    res = CliRunner().invoke(main, ["spectrum", str(path), "-o", str(tmp_path / "s.csv")])
    assert res.exit_code == 2 and "temperature" in res.output


WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from aptnn.io.stream_writer import StreamWriter
    w = StreamWriter(sys.argv[1], ["total"], dt_fs=1.0, temperature_K=300.0, flush_every=0.05, chunk=64)
    k = 0
    while True:
        w.append(np.arange(k, k + 10, dtype=float), np.full((10, 1, 3), float(k)))
        k += 10
        if k == 200:
            print("ready", flush=True)
        time.sleep(0.002)
""")


def test_killed_producer_leaves_a_readable_file(tmp_path):
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    n = n_frames(path)
    assert n >= 200
    t, d = next(read_chunks(path, chunk=10**6))
    np.testing.assert_array_equal(t, np.arange(len(t), dtype=float))  # contiguous, no garbage
    np.testing.assert_array_equal(d[:, 0, 0], np.repeat(np.arange(0, len(t), 10), 10)[: len(t)])
    with StreamWriter(path, ["total"], dt_fs=1.0, resume=True) as w:  # and it can be continued
        start = w.n_frames
        w.append([float(start)], np.zeros((1, 1, 3)))
    assert n_frames(path) == start + 1


def test_cli_spectrum_with_plot_and_decomposition(tmp_path):
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4000, 2, 3))
    data = np.concatenate([g.sum(1, keepdims=True), g], axis=1)
    with StreamWriter(tmp_path / "x.h5", ["total", "group:O", "group:H"], dt_fs=0.5, temperature_K=300.0,
                      volume_A3=3842.0) as w:
        w.append(0.5 * np.arange(4000), data)
    res = CliRunner().invoke(main, ["spectrum", str(tmp_path / "x.h5"), "-o", str(tmp_path / "x.csv"),
                                    "--plot", str(tmp_path / "x.png"), "--max-lag", "200"])
    assert res.exit_code == 0, res.output
    assert "peaks at" in res.output and "integrated intensity" in res.output
    table = np.loadtxt(tmp_path / "x.csv", delimiter=",", skiprows=1)
    header = (tmp_path / "x.csv").read_text().splitlines()[0].split(",")
    assert header[1] == "alpha_n_cm-1" and "group:O|group:H_cm-1" in header
    np.testing.assert_allclose(table[:, 3] + table[:, 4] + table[:, 5], table[:, 1],
                               atol=1e-9 * np.abs(table[:, 1]).max())
    assert (tmp_path / "x.png").stat().st_size > 10_000


def test_a_new_stream_file_is_readable_as_soon_as_its_path_exists(tmp_path):
    """Readers (e.g. `aptnn spectrum` on a live run) may open the path at any moment after it appears."""
    code = ("import sys, time\nfrom aptnn.io.stream_writer import StreamWriter\n"
            "for k in range(20):\n"
            "    w = StreamWriter(f'{sys.argv[1]}/s{k}.h5', ['total'], dt_fs=0.5)\n"
            "    time.sleep(0.05)\n    w.close()\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    opened = 0
    deadline = time.monotonic() + 120
    while opened < 20 and time.monotonic() < deadline:
        path = tmp_path / f"s{opened}.h5"
        if path.exists():
            assert n_frames(path) == 0  # opens at once: never a half-created file
            opened += 1
    child.wait(60)
    assert opened == 20 and child.returncode == 0
    assert not list(tmp_path.glob("*.part"))


FILLER = textwrap.dedent("""
    import resource, signal, sys, numpy as np
    from aptnn.errors import OutputError
    from aptnn.io.stream_writer import StreamWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    w = StreamWriter(sys.argv[1], ["total", "group:O"], dt_fs=0.5, temperature_K=300.0, flush_every=0.0,
                     chunk=256, checks=3)
    k = 0
    try:
        while True:
            w.append(0.5 * np.arange(k, k + 50), np.ones((50, 2, 3)) * k, check=np.zeros((50, 3)))
            k += 50
    except OutputError as err:
        print(err, flush=True)
        w.close()
        from aptnn.cli import leave
        leave(2)
""")


def test_a_failed_write_stops_with_one_error_and_keeps_only_frames_on_disk(tmp_path):
    """Disk full (here: a file-size limit, the same failed write()): one error, the good frames, a clean resume."""
    path = tmp_path / "full.h5"
    res = subprocess.run([sys.executable, "-c", FILLER, str(path), str(400_000)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    line = res.stdout.strip()
    assert "cannot write" in line and "frame(s) of the last good flush" in line and str(path) in line
    kept = int(line.split("keeps the ")[1].split()[0])
    assert kept > 0 and n_frames(path) <= kept
    with StreamWriter(path, ["total", "group:O"], dt_fs=0.5, resume=True, checks=3) as w:
        n = w.n_frames
        assert n == kept  # every kept frame is intact, nothing beyond
        w.append(0.5 * np.arange(n, n + 10), np.ones((10, 2, 3)), check=np.zeros((10, 3)))
    t, d = next(read_chunks(path, chunk=10**6))
    np.testing.assert_allclose(t, 0.5 * np.arange(n + 10))
    np.testing.assert_array_equal(d[:n, 0, 0], np.repeat(np.arange(0, n, 50), 50)[:n])


def test_resume_drops_frames_whose_write_did_not_complete(tmp_path):
    """A file claiming more frames than reached the disk (zeros in time) is cut back to its intact frames."""
    path = tmp_path / "zeros.h5"
    with StreamWriter(path, ["total"], dt_fs=1.0) as w:
        w.append(np.arange(100.0), np.ones((100, 1, 3)))
    with h5py.File(path, "a") as f:  # what a failed write left before /flushed existed: zeros at the end
        f["time"][60:] = 0.0
        f["dMdt"][60:] = 0.0
        f["flushed"][0] = 100
    with pytest.warns(UserWarning, match="40 frame"):
        w = StreamWriter(path, ["total"], dt_fs=1.0, resume=True)
    assert w.n_frames == 60
    w.close()
    assert n_frames(path) == 60


HOLDER = textwrap.dedent("""
    import sys, time, numpy as np
    from aptnn.io.stream_writer import StreamWriter
    w = StreamWriter(sys.argv[1], ["total"], dt_fs=1.0, flush_every=0.0)
    w.append([0.0, 1.0], np.zeros((2, 1, 3)))
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path):
    path = tmp_path / "shared.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for resume, overwrite in ((True, False), (False, True)):
            with pytest.raises(OutputError, match=f"being written by another process \\(pid {holder.pid}"):
                StreamWriter(path, ["total"], dt_fs=1.0, resume=resume, overwrite=overwrite)
        assert n_frames(path) == 2  # untouched: no 'crash recovery' of a live writer's file
    finally:
        holder.kill()
        holder.wait()
    with StreamWriter(path, ["total"], dt_fs=1.0, resume=True) as w:  # the dead writer's lock is gone
        assert w.n_frames == 2
        w.append([2.0], np.zeros((1, 1, 3)))
    assert n_frames(path) == 3 and not os.path.exists(f"{path}.lock")


def test_resume_refuses_another_model_or_a_stream_without_fingerprints(tmp_path):
    path = tmp_path / "m.h5"
    with StreamWriter(path, ["total"], dt_fs=1.0, model="a.pt sha256:aaa", source="t.dump") as w:
        w.append([0.0, 1.0], np.zeros((2, 1, 3)))
    with pytest.raises(OutputError, match="cannot resume: file was written with model"):
        StreamWriter(path, ["total"], dt_fs=1.0, resume=True, model="b.pt sha256:bbb")
    with StreamWriter(path, ["total"], dt_fs=1.0, resume=True, model="renamed.pt sha256:aaa") as w:
        assert w.n_frames == 2  # same weights under another name: fine
    with pytest.raises(OutputError, match="no input fingerprints"):
        StreamWriter(path, ["total"], dt_fs=1.0, resume=True, checks=3)


def test_a_full_file_system_stops_cleanly_before_hdf5_fails(tmp_path):
    """A real small file system (tmpfs, needs root): the writer stops while it can still close the file."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (mnt / "ballast").write_bytes(b"\0" * (3 << 20))
        path = mnt / "s.h5"
        w = StreamWriter(path, ["total"], dt_fs=1.0, flush_every=0.0, chunk=1024)
        with pytest.raises(OutputError, match="disk full: .* MiB left"):
            for k in range(10**6):
                w.append(np.arange(k * 100, (k + 1) * 100, dtype=float), np.ones((100, 1, 3)))
        kept = w._flushed_n
        w.close()  # a clean close: no recovery needed, no crash
        with h5py.File(path, "r") as f:  # opens without SWMR: the flag was cleared
            assert f["time"].shape[0] == kept > 0
        t, _ = next(read_chunks(path, chunk=10**7))
        np.testing.assert_array_equal(t, np.arange(kept, dtype=float))
    finally:
        subprocess.run(["umount", str(mnt)])
