"""Bad inputs to the real commands: exit status 2, one `aptnn: error:` (or click `Error:`) line naming the file,
no traceback, no output written.

The cases in SUBPROCESS (aptnn-post, one `aptnn`) run as real console-script subprocesses, two at a time in a
fixture (each costs ~4 s of imports); the others run in-process through click's CliRunner. Inputs are a 6-atom
water dimer (O H H O H H), a few frames.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from click.testing import CliRunner

from aptnn.cli import main, post
from aptnn.model.checkpoint import SHIPPED_DIR

ELEMENTS = ["O", "H", "H", "O", "H", "H"]
DUMP = ("--types", "O H", "--timestep", "0.5", "--quiet", "--units", "real")


def dimer() -> np.ndarray:
    """(6, 3) positions (Å) of a water dimer inside a 12 Å box."""
    a, b = molecule("H2O"), molecule("H2O")
    return np.vstack([a.positions, b.positions + [2.9, 0.3, 0.1]]) + 5.0


def write_dump(path: Path, frames: int = 4, columns: str = "id type element xu yu zu vx vy vz", shift: float = 0.0,
               natoms=lambda k: 6, element=lambda k, i: ELEMENTS[i], velocity=lambda k, i: None,
               digits: int | None = None) -> Path:
    """A LAMMPS custom dump (real units) of the dimer; the lambdas make frame k / atom i bad."""
    types, pos, rng = {"O": 1, "H": 2}, dimer(), np.random.default_rng(0)
    with open(path, "w") as fh:
        for k in range(frames):
            n = natoms(k)
            fh.write(f"ITEM: TIMESTEP\n{k}\nITEM: NUMBER OF ATOMS\n{n}\nITEM: BOX BOUNDS pp pp pp\n"
                     "0 12\n0 12\n0 12\n" f"ITEM: ATOMS {columns}\n")
            for i in range(n):
                x = pos[i] + shift + 0.002 * k
                v = velocity(k, i)
                v = rng.normal(scale=0.005, size=3) if v is None else v
                el = element(k, i)
                row = {"id": i + 1, "type": types[el], "element": el, "vx": v[0], "vy": v[1], "vz": v[2]}
                row.update({c: x[j] if digits is None else f"{x[j]:.{digits}g}"
                            for j, c in enumerate(("xu", "yu", "zu"))})
                fh.write(" ".join(str(row[c]) for c in columns.split()) + "\n")
    return path


def extxyz(path: Path, frames: int = 3, symbols=ELEMENTS, apt=None) -> Path:
    out = []
    for k in range(frames):
        a = Atoms(symbols, positions=dimer() + 0.01 * k, cell=np.eye(3) * 12.0, pbc=True, info={"time": 0.5 * k})
        if apt is not None:
            a.arrays["apt"] = np.full((len(a), 9), apt)
        out.append(a)
    ase.io.write(path, out, format="extxyz")
    return path


def checkpoint(path: Path, config=None, state=None) -> Path:
    """The shipped model re-saved with its config dict changed by ``config`` and its weights by ``state``."""
    payload = copy.deepcopy(torch.load(SHIPPED_DIR / "water-rpbe-d3.pt", weights_only=True))
    if config is not None:
        payload["config"] = config(json.loads(payload["config"]))
    if state is not None:
        state(payload["members"][0])
    torch.save(payload, path)
    return path


def edited(**changes):
    def apply(cfg):
        for key, value in changes.items():
            cfg.pop(key) if value is None else cfg.__setitem__(key, value)
        return json.dumps(cfg)
    return apply


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    write_dump(d / "good.lammpstrj", frames=40)
    (d / "empty.lammpstrj").touch()
    (d / "garbage.lammpstrj").write_bytes(bytes(range(256)) * 8)
    (d / "garbage.extxyz").write_bytes(bytes(range(256)) * 8)
    (d / "garbage.pos_0.xyz").write_bytes(bytes(range(256)) * 8)
    write_dump(d / "noid.lammpstrj", columns="type element xu yu zu vx vy vz")
    write_dump(d / "nocoord.lammpstrj", columns="id type element vx vy vz")
    write_dump(d / "count.lammpstrj", natoms=lambda k: 3 if k == 2 else 6)
    write_dump(d / "zero0.lammpstrj", natoms=lambda k: 0 if k == 0 else 6)
    write_dump(d / "zero1.lammpstrj", natoms=lambda k: 0 if k == 1 else 6)
    write_dump(d / "element.lammpstrj", element=lambda k, i: "O" if (k, i) == (1, 5) else ELEMENTS[i])
    write_dump(d / "nanvel.lammpstrj", velocity=lambda k, i: [np.nan, 0, 0] if (k, i) == (2, 4) else None)
    write_dump(d / "far.lammpstrj", shift=1e5, digits=6)  # LAMMPS' default %g: 1 Å at 1e5 Å
    with h5py.File(d / "nm.h5", "w") as f:  # H5MD in nm without unit attributes
        g = f.create_group("particles/all")
        g["position/value"] = np.array([dimer() + 0.01 * k for k in range(3)]) / 10.0
        g["velocity/value"] = np.zeros((3, 6, 3))
        g["box/edges/value"] = np.full((3, 3), 1.2)
        g["species"] = np.array([8, 1, 1, 8, 1, 1])
    extxyz(d / "good.extxyz")
    extxyz(d / "nan_labels.extxyz", apt=np.nan)
    extxyz(d / "sodium.extxyz", symbols=["Na", "H", "H", "O", "H", "H"])
    raw = (SHIPPED_DIR / "water-rpbe-d3.pt").read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    checkpoint(d / "json.pt", config=lambda cfg: json.dumps(cfg)[:-7])
    checkpoint(d / "unknown_key.pt", config=edited(colour="red"))
    checkpoint(d / "missing_key.pt", config=edited(lmax=None))
    checkpoint(d / "wrong_type.pt", config=edited(n_layers="2"))
    checkpoint(d / "huge.pt", config=edited(channels=100000))
    checkpoint(d / "species.pt", config=edited(species=[1, 1]))
    checkpoint(d / "cutoff.pt", config=edited(cutoff=0.0))
    checkpoint(d / "iso_mean.pt", config=edited(iso_mean=[0.1, 0.2, 0.3]))
    checkpoint(d / "shape.pt", config=edited(radial_hidden=64))
    checkpoint(d / "lmax.pt", config=edited(lmax=1))
    checkpoint(d / "state.pt", state=lambda s: s.__setitem__("readout.weight", torch.zeros(25)))
    (d / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    res = CliRunner().invoke(post, [str(d / "good.lammpstrj"), "-o", str(d / "good.dmdt.h5"), *DUMP])
    assert res.exit_code == 0, res.output
    return d


# name: (program, argv, words the error line must hold); "{d}/…" is in the case's own folder, other names are
# files of the `files` fixture; the word FILE stands for the name of the first such file in argv
POST = {
    "empty_dump": ["empty.lammpstrj", "empty"],
    "garbage_dump": ["garbage.lammpstrj", "binary"],
    "dump_without_id": ["noid.lammpstrj", "'id' column"],
    "dump_without_coordinates": ["nocoord.lammpstrj", "coordinate"],
    "atom_count_changes": ["count.lammpstrj", "frame 2"],
    "zero_atoms_first_frame": ["zero0.lammpstrj", "no atoms"],
    "zero_atoms_later_frame": ["zero1.lammpstrj", "frame 1"],
    "element_changes": ["element.lammpstrj", "frame 1: atom 5 is O but was H"],
    "nan_velocity": ["nanvel.lammpstrj", "frame 2: non-finite velocities"],
    "coarse_precision": ["far.lammpstrj", "written to 1 Å only"],
    "garbage_extxyz": ["garbage.extxyz", "binary"],
    "garbage_ipi": ["garbage.pos_0.xyz", "i-PI"],
    "h5md_nm_without_units": ["nm.h5", "unit"],
    "missing_trajectory": ["nosuch.lammpstrj", "nosuch.lammpstrj"],
    "unknown_lammps_units": ["good.lammpstrj", "furlong", "--units", "furlong"],
}
CASES = {f"post:{k}": ("aptnn-post", [v[0], "-o", "{d}/out.h5", *(DUMP if v[0].endswith(".lammpstrj") else DUMP[2:]),
                                      *v[2:]], ("FILE", v[1])) for k, v in POST.items()}
MODEL_FILES = {"truncated": "truncated", "json": "JSON", "unknown_key": "colour", "missing_key": "lmax",
               "wrong_type": "n_layers", "huge": "channels = 100000", "species": "species", "cutoff": "cutoff",
               "iso_mean": "iso_mean", "shape": "radial", "lmax": "fit the config", "state": "readout.weight"}
PREDICT = ["-o", "{d}/out.extxyz", "--quiet"]
CASES.update({f"predict:checkpoint_{m}": ("aptnn", ["predict", f"{m}.pt", "good.extxyz", *PREDICT], ("FILE", w))
              for m, w in MODEL_FILES.items()})
CASES.update({
    "subprocess:predict_truncated_checkpoint": ("aptnn", ["predict", "truncated.pt", "good.extxyz", *PREDICT],
                                                ("FILE", "truncated")),
    "predict:no_such_model": ("aptnn", ["predict", "nosuch.pt", "good.extxyz", *PREDICT], ("nosuch.pt",)),
    "predict:missing_input": ("aptnn", ["predict", "water-rpbe-d3", "nosuch.extxyz", *PREDICT], ("nosuch.extxyz",)),
    "predict:garbage_extxyz": ("aptnn", ["predict", "water-rpbe-d3", "garbage.extxyz", *PREDICT], ("FILE",)),
    "predict:unknown_element": ("aptnn", ["predict", "water-rpbe-d3", "sodium.extxyz", *PREDICT], ("FILE", "Na")),
    "predict:output_folder_missing": ("aptnn", ["predict", "water-rpbe-d3", "good.extxyz", "-o",
                                                "{d}/no/out.extxyz", "--quiet"], ("out.extxyz",)),
    "evaluate:no_labels": ("aptnn", ["evaluate", "water-rpbe-d3", "good.extxyz", "--quiet"], ("FILE", "no APT")),
    "evaluate:nan_labels": ("aptnn", ["evaluate", "water-rpbe-d3", "nan_labels.extxyz", "--quiet"], ("FILE", "NaN")),
    "evaluate:truncated_checkpoint": ("aptnn", ["evaluate", "truncated.pt", "nan_labels.extxyz", "--quiet"],
                                      ("FILE",)),
    "train:no_labels": ("aptnn", ["train", "good.extxyz", "-o", "{d}/out.pt", "--quiet"], ("FILE",)),
    "train:absurd_channels": ("aptnn", ["train", "good.extxyz", "-o", "{d}/out.pt", "--channels", "100000"],
                              ("--channels",)),
    "train:output_folder_missing": ("aptnn", ["train", "nan_labels.extxyz", "-o", "{d}/no/out.pt"], ("out.pt",)),
    "merge:not_a_stream": ("aptnn", ["merge", "garbage.h5", "-o", "{d}/out.h5"], ("FILE",)),
    "spectrum:not_a_stream": ("aptnn", ["spectrum", "garbage.h5", "-o", "{d}/out.csv"], ("FILE",)),
})
for option, value in (("--max-lag", "0"), ("--pad", "0"), ("--blocks", "0"), ("--temperature", "-1"),
                      ("--volume", "0")):
    CASES[f"spectrum:{option[2:]}_{value}"] = ("aptnn", ["spectrum", "good.dmdt.h5", option, value, "-o",
                                                         "{d}/out.csv"], ())
#: run as real console-script subprocesses (the others in-process: each subprocess costs ~4 s of imports)
SUBPROCESS = {"subprocess:predict_truncated_checkpoint", "post:empty_dump", "post:garbage_dump", "post:nan_velocity",
              "post:h5md_nm_without_units"}
OUTPUTS = ("out.h5", "out.extxyz", "out.pt", "out.csv", "out.h5.part", "out.extxyz.part", "out.pt.part")


def _argv(argv: list[str], root: Path, d: Path) -> list[str]:
    """Paths for the names in ``argv``: inputs in ``root``, outputs ("{d}/…") in the case folder ``d``."""
    return [a.replace("{d}", str(d)) if "{d}" in a else str(root / a) if (root / a).exists() or a.startswith("nosuch")
            else a for a in argv]


def _folder(root: Path, name: str) -> Path:
    d = root / name.replace(":", "_")
    d.mkdir(exist_ok=True)
    return d


def _run_subprocess(program: str, argv: list[str]) -> tuple[int, str]:
    exe = shutil.which(program) or str(Path(sys.executable).parent / program)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    res = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120, env=env)
    return res.returncode, res.stderr


@pytest.fixture(scope="module")
def subprocess_results(files) -> dict[str, tuple[int, str]]:
    """The console-script cases, run two at a time (each costs ~4 s of imports)."""
    todo = {name: (prog, _argv(argv, files, _folder(files, name))) for name, (prog, argv, _) in CASES.items()
            if name in SUBPROCESS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run_subprocess, *job) for name, job in todo.items()}
        return {name: f.result() for name, f in futures.items()}


def _in_process(program: str, argv: list[str]) -> tuple[int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(post if program == "aptnn-post" else main, argv)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        return 1, "Traceback\n" + "".join(traceback.format_exception(res.exception))
    return res.exit_code, res.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_error_line(name, files, subprocess_results):
    program, argv, words = CASES[name]
    d = _folder(files, name)
    argv = _argv(argv, files, d)
    status, stderr = subprocess_results[name] if name in subprocess_results else _in_process(program, argv)
    assert "Traceback" not in stderr, stderr
    assert status == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("aptnn: error:", "Error:"))]
    assert len(errors) == 1, stderr
    if errors[0].startswith("aptnn: error:"):
        assert len(lines) == 1, stderr  # nothing else on stderr
    first_file = next((Path(a).name for a in argv if Path(a).parent == files), None)
    for word in words:
        assert (first_file if word == "FILE" else word) in errors[0], errors[0]
    assert not [p for p in OUTPUTS if (d / p).exists()], f"output left behind: {sorted(os.listdir(d))}"
