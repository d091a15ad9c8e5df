"""LAMMPS dumps as users have them: written by LAMMPS, compressed (gzip, bzip2, xz; detected from the bytes),
in any unit style (required, declared by the dump, or found in the run's log.lammps / write_data file), with or
without element columns; bad content and unsupported formats are one clear error, at once."""
from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aptnn.demo import load_lammps, run_water
from aptnn.errors import InputError
from aptnn.io.trajectory import detect_format, open_trajectory

COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.fixture(scope="module")
def water(tmp_path_factory) -> Path:
    """A real LAMMPS run (real units, log.lammps next to it): 8 SPC/Fw waters, 21 frames of 0.5 fs."""
    return run_water(tmp_path_factory.mktemp("md"), n_molecules=8, steps=20, equilibrate=20)


def reference(path: Path):
    """Independent parse: steps, elements, positions and velocities as Python floats, rows sorted by id."""
    lines, out, k = path.read_text().splitlines(), [], 0
    while k < len(lines):
        n, cols = int(lines[k + 3]), lines[k + 8].split()[2:]
        rows = sorted((r.split() for r in lines[k + 9:k + 9 + n]), key=lambda r: int(r[0]))
        table = np.array([[float(r[cols.index(c)]) for c in ("xu", "yu", "zu", "vx", "vy", "vz")] for r in rows])
        out.append((int(lines[k + 1]), [r[cols.index("element")] for r in rows], table[:, :3], table[:, 3:]))
        k += 9 + n
    return out


def edit(src: Path, dst: Path, drop: tuple[str, ...] = (), compress: str | None = None, change=None) -> Path:
    """A copy of dump ``src`` without the columns ``drop``, lines changed by ``change(frame, line)``."""
    out, cols, frame = [], None, -1
    for line in src.read_text().splitlines():
        if line.startswith("ITEM: TIMESTEP"):
            frame += 1
        if line.startswith("ITEM: ATOMS"):
            cols = line.split()[2:]
            keep = [i for i, c in enumerate(cols) if c not in drop]
            line = "ITEM: ATOMS " + " ".join(cols[i] for i in keep)
        elif cols and not line.startswith("ITEM") and len(line.split()) == len(cols):
            line = " ".join(line.split()[i] for i in keep)
        line = change(frame, line) if change else line
        if line is not None:
            out.append(line)
    data = ("\n".join(out) + "\n").encode()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(COMPRESS[compress](data) if compress else data)
    return dst


def frames(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(open_trajectory(str(path), **kw))


def test_compressed_dumps_read_like_the_plain_one_in_float64(water, tmp_path):
    ref = reference(water)
    plain = frames(water, lammps_units="real", timestep=0.5)
    assert len(plain) == len(ref) == 21
    for f, (step, elements, pos, vel) in zip(plain, ref):
        assert f.step == step and f.time == step * 0.5 and f.atoms.get_chemical_symbols() == elements
        np.testing.assert_array_equal(f.atoms.positions, pos)  # float64: the written numbers exactly
        np.testing.assert_array_equal(f.velocities, vel)
    data = water.read_bytes()
    copies = {name: tmp_path / name for name in ("w.lammpstrj.gz", "w.lammpstrj.bz2", "w.lammpstrj.xz",
                                                 "gzip-named-plain.lammpstrj", "w.bin")}
    for name, path in copies.items():
        kind = "gz" if "gz" in name else "bz2" if name.endswith(("bz2", "bin")) else "xz"
        path.write_bytes(COMPRESS[kind](data))
        assert detect_format(str(path)) == "lammpsdump", name  # from the decompressed content
        for fmt in (None, "lammpsdump"):
            source = open_trajectory(str(path), fmt, "real", timestep=0.5)
            assert len(source) == 21
            got = list(source)
            for f, g in zip(got, plain):
                assert f.step == g.step and f.time == g.time and (f.atoms.numbers == g.atoms.numbers).all()
                np.testing.assert_array_equal(f.atoms.positions, g.atoms.positions)
                np.testing.assert_array_equal(f.velocities, g.velocities)
                np.testing.assert_array_equal(f.atoms.cell[:], g.atoms.cell[:])
        part = list(source.iter_range(7, 10))  # a shard: the same frames
        assert [f.step for f in part] == [7, 8, 9]
        np.testing.assert_array_equal(part[0].atoms.positions, plain[7].atoms.positions)


def test_types_are_honoured_in_plain_and_compressed_dumps(water, tmp_path):
    elements = frames(water, lammps_units="real")[0].atoms.get_chemical_symbols()
    for compress in (None, "gz", "bz2"):
        typed = edit(water, tmp_path / f"typed{compress}.lammpstrj", ("element",), compress)
        got = frames(typed, lammps_units="real", types=["O", "H"])
        assert len(got) == 21 and all(f.atoms.get_chemical_symbols() == elements for f in got)
        with pytest.raises(InputError, match=f"typed{compress}.lammpstrj: dump has no element column: .*--types"):
            open_trajectory(str(typed), lammps_units="real")
        with pytest.raises(InputError, match=r"frame 0: atom type 2 but 1 --types given \(O"):
            frames(typed, lammps_units="real", types=["O"])
        with pytest.raises(InputError, match="'Ow' is not an element symbol"):
            open_trajectory(str(typed), lammps_units="real", types=["Ow", "H"])
    with pytest.raises(InputError, match="type 1 is O in the element column but --types gives it H"):
        open_trajectory(str(water), lammps_units="real", types=["H", "O"])
    assert frames(water, lammps_units="real", types=["O", "H"])[3].atoms.get_chemical_symbols() == elements


def test_dump_without_type_or_element_column_is_refused_at_once(water, tmp_path):
    for compress in (None, "gz", "bz2"):
        bare = edit(water, tmp_path / f"bare{compress}.lammpstrj", ("type", "element"), compress)
        start = time.perf_counter()
        with pytest.raises(InputError, match=f"bare{compress}.lammpstrj, frame 0: no 'element' column and no "
                                             "numeric 'type' column .* elements are unknown"):
            open_trajectory(str(bare), lammps_units="real", types=["O", "H"])
        assert time.perf_counter() - start < 2.0
        with pytest.raises(InputError, match="no 'element' column"):  # before the missing --units: species first
            open_trajectory(str(bare))


def test_units_are_required_unless_the_dump_or_its_run_says_them(water, tmp_path):
    alone = shutil.copy(water, tmp_path / "alone.lammpstrj")
    with pytest.raises(InputError, match=r"alone.lammpstrj: LAMMPS dumps do not record their unit style: give "
                                         r"--units, one of real \(Å, fs, Å/fs\), metal \(Å, ps, Å/ps\), si"):
        open_trajectory(alone)
    with pytest.warns(UserWarning, match=r"water.lammpstrj: LAMMPS units 'real' \(Å, fs, Å/fs\) from log.lammps"):
        assert open_trajectory(str(water)).style == "real"  # the run's log next to the dump
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_trajectory(str(water), lammps_units="real").style == "real"  # given and agreed: no note
    real = frames(alone, lammps_units="real", timestep=0.5)
    # a write_data file of a metal run next to the dump: metal (Å, ps, Å/ps)
    (tmp_path / "out.data").write_text("LAMMPS data file via write_data, version 22 Jul 2025, timestep = 0, "
                                       "units = metal\n\n24 atoms\n")
    with pytest.warns(UserWarning, match="units 'metal' .* from out.data"):
        metal = list(open_trajectory(alone, timestep=0.0005))
    np.testing.assert_allclose(metal[3].velocities, real[3].velocities * 1e-3)
    assert metal[3].time == pytest.approx(real[3].time)
    with pytest.warns(UserWarning, match="read in LAMMPS 'real' units as --units says, but out.data"):
        open_trajectory(alone, lammps_units="real")
    (tmp_path / "log.lammps").write_text("LAMMPS (22 Jul 2025)\nunits real\natom_style full\n")
    with pytest.raises(InputError, match=r"name different LAMMPS units \(log.lammps: real; out.data: metal\)"):
        open_trajectory(alone)
    declared = edit(water, tmp_path / "d" / "declared.lammpstrj", compress="gz",
                    change=lambda k, ln: "ITEM: UNITS\nmetal\n" + ln if (k, ln) == (0, "ITEM: TIMESTEP") else ln)
    assert open_trajectory(str(declared)).style == "metal"  # dump_modify units yes
    with pytest.raises(InputError, match="--units real, but the dump says ITEM: UNITS metal"):
        open_trajectory(str(declared), lammps_units="real")
    for style, message in (("lj", "reduced units"), ("furlong", "unknown LAMMPS units 'furlong'")):
        with pytest.raises(InputError, match=f"alone.lammpstrj: .*{message}"):
            open_trajectory(alone, lammps_units=style)


def test_unit_table_against_lammps_in_every_style(tmp_path):
    """LAMMPS' own `velocity create 300` read back as 300 K, the box as 10 Å and the time as 0.5 fs per step."""
    from aptnn.post import kinetic_temperature

    amu = 1.66053906660e-27  # kg
    mass = {"real": 1.008, "metal": 1.008, "electron": 1.008, "si": 1.008 * amu, "cgs": 1.008 * amu * 1e3,
            "micro": 1.008 * amu * 1e15, "nano": 1.008 * amu * 1e21}
    box = {"real": 10, "metal": 10, "electron": 10 / 0.529177210903, "si": 1e-9, "cgs": 1e-7, "micro": 1e-3,
           "nano": 1.0}
    dt = {"real": 0.5, "metal": 0.0005, "electron": 0.5, "si": 5e-16, "cgs": 5e-16, "micro": 5e-10, "nano": 5e-7}
    for style in mass:
        dump = tmp_path / f"{style}.lammpstrj.gz"
        lmp = load_lammps()(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        try:
            lmp.commands_string(f"""
                units {style}
                atom_style atomic
                region box block 0 {box[style]} 0 {box[style]} 0 {box[style]}
                create_box 1 box
                create_atoms 1 random 40 7 NULL
                mass 1 {mass[style]}
                velocity all create 300 4 mom yes
                timestep {dt[style]}
                fix 1 all nve
                dump d all custom 1 {dump} id type x y z vx vy vz
                dump_modify d units yes time yes format float %.15g
                run 2
            """)
        finally:
            lmp.close()
        got = frames(dump, types=["H"])  # the style from ITEM: UNITS; times from ITEM: TIME
        n = len(got[0].atoms)
        kinetic = kinetic_temperature(got[0]) * 3 * n / (3 * n - 3)  # LAMMPS removes the 3 momentum dofs
        assert kinetic == pytest.approx(300.0, rel=1e-5), style
        assert got[0].atoms.cell.lengths() == pytest.approx([10.0] * 3, rel=1e-9), style
        assert [f.time for f in got] == pytest.approx([0.0, 0.5, 1.0], rel=1e-9), style


def test_bad_dump_content_names_file_frame_and_problem(water, tmp_path):
    def bad(name, change, compress=None, drop=()):
        return str(edit(water, tmp_path / name, drop, compress, change))

    atom_row = lambda ln: not ln.startswith("ITEM") and len(ln.split()) == 9  # noqa: E731
    cases = {
        "text.lammpstrj.gz": (lambda k, ln: ln.replace(ln.split()[3], "abc") if k == 2 and ln.startswith("5 ") else
                              ln, r"frame 2: column 'xu' of atom row 5 is 'abc', not a number"),
        "column.lammpstrj": (lambda k, ln: ln.replace(" vx vy vz", "") if k == 1 and ln.startswith("ITEM: ATOMS") else
                             ln, r"frame 1: atom row 1 has 9 values for the 6 columns"),
        "cut.lammpstrj.bz2": (lambda k, ln: None if k == 20 and atom_row(ln) and int(ln.split()[0]) > 10 else ln,
                              "frame 20: the file ends after 10 of 24 atom rows"),
        "restart.lammpstrj": (lambda k, ln: "3" if k == 4 and ln == "4" else ln,
                              r"frame 4: step 3 follows step 3: steps must increase"),
        "twice.lammpstrj": (lambda k, ln: "1" + ln[ln.index(" "):] if k == 6 and ln.startswith("2 ") else ln,
                            "frame 6: atom id 1 appears twice"),
        "local.lammpstrj": (lambda k, ln: "ITEM: ENTRIES c_1" if k == 0 and ln.startswith("ITEM: ATOMS") else ln,
                            r"frame 0: unexpected 'ITEM: ENTRIES c_1': not a per-atom dump"),
    }
    for name, (change, message) in cases.items():
        compress = name.rsplit(".", 1)[1] if name.endswith(("gz", "bz2")) else None
        with pytest.raises(InputError, match=f"{name}, {message}"):
            frames(bad(name, change, compress), lammps_units="real")
    # a later frame missing the velocity columns (a dump_modify between runs)
    header = lambda k, ln: ("ITEM: ATOMS id type element xu yu zu" if k == 3 and ln.startswith("ITEM: ATOMS") else  # noqa: E731
                            " ".join(ln.split()[:6]) if k == 3 and atom_row(ln) else ln)
    with pytest.raises(InputError, match=r"later.lammpstrj, frame 3: columns 'ITEM: ATOMS id type element xu yu zu' "
                                         "differ from frame 0's"):
        frames(bad("later.lammpstrj", header), lammps_units="real")


def test_unsupported_formats_are_refused_with_the_list(water, tmp_path):
    import ase.io

    atoms = frames(water, lammps_units="real")[0].atoms
    ase.io.write(tmp_path / "w.pdb", atoms)
    ase.io.write(tmp_path / "w.gro", atoms)
    ase.io.write(tmp_path / "w.traj", [atoms, atoms])
    (tmp_path / "w.dcd").write_bytes(b"\x54\x00\x00\x00CORD" + bytes(200))
    (tmp_path / "w.xtc").write_bytes(b"\x00\x00\x07\xcb" + bytes(200))
    (tmp_path / "w.foo").write_text("hello\n")
    (tmp_path / "w.dat.gz").write_bytes(gzip.compress(b"hello\n"))
    for name, why in (("w.pdb", "topology, structure"), ("w.gro", "topology, structure"), ("w.dcd", "binary"),
                      ("w.xtc", "binary"), ("w.foo", "unknown file type"), ("w.dat.gz", "gzip-compressed")):
        with pytest.raises(InputError, match=f"{name}: .*{why}.*aptnn-post reads LAMMPS text dumps .*H5MD.*extxyz"):
            open_trajectory(str(tmp_path / name))
    assert len(frames(tmp_path / "w.pdb", format="ase")) == 1  # forced: ASE's reader
    assert len(frames(tmp_path / "w.traj")) == 2  # ASE trajectories are read


def _aptnn_post(*args) -> tuple[int, str, float]:
    exe = shutil.which("aptnn-post") or str(Path(sys.executable).parent / "aptnn-post")
    start = time.perf_counter()
    res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"))
    return res.returncode, res.stderr, time.perf_counter() - start


def test_cli_refuses_missing_units_and_elements_in_seconds(water, tmp_path):
    alone = shutil.copy(water, tmp_path / "alone.lammpstrj")
    bare = edit(water, tmp_path / "bare.lammpstrj.bz2", ("type", "element"), "bz2")
    for args, words in (([alone, "--timestep", "0.5"], ("alone.lammpstrj", "give --units", "metal (Å, ps, Å/ps)")),
                        ([str(bare), "--units", "real", "--types", "O H"], ("bare.lammpstrj.bz2", "no 'element'"))):
        code, stderr, seconds = _aptnn_post(*args, "-o", str(tmp_path / "out.h5"), "--quiet")
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("aptnn: error: "), stderr
        assert all(w in lines[0] for w in words), lines[0]
        assert seconds < 60 and not (tmp_path / "out.h5").exists()


def test_cli_gzipped_type_only_dump_with_format_types_and_units(water, tmp_path):
    """`--format lammpsdump` on a gzipped dump with a type column only: elements from --types, as the plain one."""
    from aptnn.cli import post
    from aptnn.io.stream import read_chunks

    typed = edit(water, tmp_path / "typed.lammpstrj.gz", ("element",), "gz")
    common = ["--timestep", "0.5", "--quiet", "--units", "real"]
    res = CliRunner().invoke(post, [str(typed), "--format", "lammpsdump", "--types", "O H", "-o",
                                    str(tmp_path / "a.h5"), *common])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(post, [str(water), "-o", str(tmp_path / "b.h5"), *common])
    assert res.exit_code == 0, res.output
    (ta, da), (tb, db) = next(read_chunks(tmp_path / "a.h5")), next(read_chunks(tmp_path / "b.h5"))
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(da, db)
