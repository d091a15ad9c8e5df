"""Direct versus streamed Raman (and IR) spectra of one GFN2-xTB water cluster: the Raman analogue of Figure 2 of
Schienbein, JCTC 19, 705 (2023) (issue 17).

    OMP_NUM_THREADS=1 python benchmarks/raman_xtb/direct_vs_streamed.py md      --work /work/scratch/raman_xtb/md
    OMP_NUM_THREADS=1 python benchmarks/raman_xtb/direct_vs_streamed.py exact   --work /work/scratch/raman_xtb/md
    aptnn-post /work/scratch/raman_xtb/md/traj.extxyz --model MODEL -o /work/scratch/raman_xtb/md/s.h5 \
        --apt-every 1 --threads 1 --temperature T --overwrite
    aptnn spectrum /work/scratch/raman_xtb/md/s.h5 --raman --max-lag 500 --temperature T -o ...raman.csv
    aptnn spectrum /work/scratch/raman_xtb/md/s.h5          --max-lag 500 --temperature T -o ...ir.csv
    OMP_NUM_THREADS=1 python benchmarks/raman_xtb/direct_vs_streamed.py compare --work /work/scratch/raman_xtb/md \
        --model MODEL   (runs the two aptnn-post/aptnn spectrum steps itself when their outputs are missing)

Stage ``md``: (H2O)_n (default 8) cut from liquid frame 5 of pool19 (whole molecules, open boundaries), a short
BFGS (fmax 0.5 eV/Å, ≤ 40 steps), Langevin at 300 K (0.5 fs, friction 0.01/fs, 1 ps), zero momentum and angular
momentum, then velocity-Verlet NVE at 0.5 fs (tblite GFN2-xTB, accuracy 1e-3). Direct quantities along the NVE run:
the xTB dipole (e·Å) at every step (the force call computes it) and the finite-field polarisability α (e·Å²/V,
:func:`aptnn.label.pgt.polarizability_field`, ±0.01 V/Å, 6 single points) every 2 steps (1 fs). Every 2nd step is
written to traj.extxyz (positions Å, ASE momenta, info time in fs), the sampling of the streamed spectra.

Stage ``exact`` (optional): xTB APTs and PGTs along the trajectory every ``--exact-stride`` frames from the 19
route-C single points (the labels of the training set), giving the 'exact streamed' dM/dt = Σ P_i v_i and
dα/dt = Σ_i G_i·v_i: the streamed estimator without model error.

Stage ``compare``: dα/dt and dM/dt of the direct series by central differences (α: ±1 fs, dipole: ±0.5 fs). The
reference is the h = dt = 0.5 fs central difference: velocity-Verlet velocities are exactly (r(t+dt) − r(t−dt))/2dt,
so Σ P_i·v_i is that difference of M to first order (the α spectra are multiplied by sinc²(ω·0.5 fs)/sinc²(ω·1 fs),
sinc x = sin x/x, to match); the 'continuous' direct spectra (sinc² fully divided out) are shown too. Streamed
series from the
stream file of aptnn-post (the model's APTs and PGTs times the velocities at every frame). All spectra with the same
settings (:func:`aptnn.raman.raman_spectrum` and the IR engine of :mod:`aptnn.spectrum`, Hann window, max lag
``--max-lag`` fs, harmonic QCF, the NVE mean kinetic temperature). Numbers: normalised integrated absolute difference
∫|S_s − S_d| / ∫S_d over 0–4000 cm⁻¹, band intensity ratios streamed/direct (librations 350–1000, bend 1400–1800,
stretch 2800–4000 cm⁻¹, plus the low-frequency 30–350 cm⁻¹), peak positions, band depolarisation ratios. Output:
benchmarks/results/raman_xtb_direct_vs_streamed.{txt,png}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

BANDS = {"low": (30.0, 350.0), "libration": (350.0, 1000.0), "bend": (1400.0, 1800.0), "stretch": (2800.0, 4000.0)}
RESULTS = ROOT / "benchmarks" / "results"


def stage_md(args) -> None:
    import torch
    from ase import Atoms, units
    from ase.io import read, write
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet
    from ase.optimize import BFGS
    from make_dataset import DATA, cut_cluster

    from aptnn.label.pgt import polarizability_field
    from aptnn.label.xtb import xtb_factory

    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    make = xtb_factory(accuracy=1e-3)
    frame = read(DATA / "pool19.extxyz", args.frame)
    atoms = cut_cluster(frame, args.waters, np.random.default_rng(args.seed))
    atoms.calc = make(None)
    t0 = time.perf_counter()
    BFGS(atoms, logfile=None).run(fmax=0.5, steps=40)
    t_opt = time.perf_counter() - t0
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=np.random.default_rng(args.seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    lang = Langevin(atoms, 0.5 * units.fs, temperature_K=args.temperature, friction=0.01 / units.fs, fixcm=False,
                    rng=np.random.default_rng(args.seed + 1))
    t1 = time.perf_counter()
    lang.run(args.equil_steps)
    t_eq = time.perf_counter() - t1
    Stationary(atoms)
    ZeroRotation(atoms)
    dof = 3 * len(atoms) - 6
    atoms.set_velocities(atoms.get_velocities()
                         * np.sqrt(args.temperature / (2 * atoms.get_kinetic_energy() / (dof * units.kB))))
    n_steps = args.steps
    dip = np.empty((n_steps + 1, 3))
    etot = np.empty(n_steps + 1)
    tkin = np.empty(n_steps + 1)
    alphas, frames = [], []
    t_force = t_alpha = 0.0
    traj = work / "traj.extxyz"
    if traj.exists():
        traj.unlink()
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    status = work.parent / "STATUS"
    for step in range(n_steps + 1):
        if step:
            t = time.perf_counter()
            dyn.run(1)
            t_force += time.perf_counter() - t
        dip[step] = atoms.get_dipole_moment()
        ekin = atoms.get_kinetic_energy()
        etot[step] = atoms.get_potential_energy() + ekin
        tkin[step] = 2 * ekin / (dof * units.kB)
        if step % 2 == 0:
            t = time.perf_counter()
            bare = Atoms(atoms.numbers, atoms.positions, pbc=False)
            alphas.append(polarizability_field(bare, make))
            t_alpha += time.perf_counter() - t
            out = Atoms(atoms.numbers, atoms.positions, momenta=atoms.get_momenta(), pbc=False)
            out.info.update(time=0.5 * step, step=step)
            frames.append(out)
        if step % 1000 == 0:
            write(traj, frames, format="extxyz", append=True)
            frames = []
            with open(status, "a") as f:
                f.write(f"md step {step}/{n_steps} {time.strftime('%H:%M:%S')}\n")
    if frames:
        write(traj, frames, format="extxyz", append=True)
    cost = dict(n_atoms=len(atoms), n_waters=args.waters, bfgs_s=t_opt, langevin_steps=args.equil_steps,
                langevin_s_per_step=t_eq / max(args.equil_steps, 1), nve_steps=n_steps,
                nve_s_per_step=t_force / n_steps, alpha_evaluations=len(alphas),
                s_per_alpha=t_alpha / len(alphas), temperature_mean_K=float(tkin.mean()),
                energy_drift_eV=float(etot[-1] - etot[0]), energy_std_eV=float(etot.std()))
    np.savez(work / "direct.npz", dipole=dip, alpha=np.array(alphas), etot=etot, tkin=tkin,
             numbers=atoms.numbers)
    (work / "md_cost.json").write_text(json.dumps(cost, indent=1))
    print(json.dumps(cost, indent=1))


def stage_exact(args) -> None:
    import torch
    from ase.io import iread
    from make_dataset import label

    from aptnn.label.xtb import xtb_factory

    torch.set_num_threads(1)
    work = Path(args.work)
    make = xtb_factory(accuracy=1e-3)
    dmdt, dadt, idx = [], [], []
    t0 = time.perf_counter()
    limit = args.exact_frames
    for k, atoms in enumerate(iread(work / "traj.extxyz", index=f"::{args.exact_stride}")):
        if limit and k >= limit:
            break
        v = atoms.get_velocities() / units_ase_time_to_fs()   # Å/fs
        apt, g = label(atoms, make)
        dmdt.append(np.einsum("ixz,iz->x", apt, v))
        a = np.einsum("ixyz,iz->xy", g, v)
        dadt.append([a[0, 0], a[1, 1], a[2, 2], a[1, 2], a[0, 2], a[0, 1]])
        idx.append(k * args.exact_stride)
        if k % 200 == 0:
            with open(work.parent / "STATUS", "a") as f:
                f.write(f"exact frame {k} {time.strftime('%H:%M:%S')}\n")
    wall = time.perf_counter() - t0
    np.savez(work / "exact.npz", dmdt=np.array(dmdt), dadt=np.array(dadt), frame=np.array(idx),
             stride=args.exact_stride, s_per_frame=wall / len(idx))
    print(f"exact streamed: {len(idx)} frames, {wall / len(idx):.2f} s per frame (19 single points)")


def units_ase_time_to_fs() -> float:
    from aptnn import units
    return units.ASE_TIME_TO_FS


# ---------------------------------------------------------------- comparison

def central(x: np.ndarray, stride: int, h_fs: float) -> np.ndarray:
    """(x[k+stride] − x[k−stride]) / 2h at k = stride, 2·stride, … (the 1 fs grid points 1 … n−2)."""
    return (x[2 * stride::stride] - x[:-2 * stride:stride]) / (2 * h_fs)


def sinc2(wavenumber: np.ndarray, h_fs: float) -> np.ndarray:
    from aptnn import units
    x = 2 * np.pi * units.C_CM_PER_FS * wavenumber * h_fs
    return np.where(x > 0, (np.sin(x) / np.where(x > 0, x, 1)) ** 2, 1.0)


def ir_of(dmdt: np.ndarray, dt_fs: float, temperature: float, max_lag_fs: float):
    from aptnn.spectrum import Run, spectrum_of_runs

    data = np.asarray(dmdt, dtype=float)

    def read(names, start, stop):
        yield data[start:stop, None, :]
    run = Run("array", len(data), temperature, None, read)
    return spectrum_of_runs([run], dt_fs, ["total"], max_lag=int(round(max_lag_fs / dt_fs)), n_blocks=4)


def raman_of(dadt: np.ndarray, dt_fs: float, temperature: float, max_lag_fs: float):
    from aptnn.raman import raman_spectrum
    return raman_spectrum(np.asarray(dadt, dtype=float), dt_fs, temperature, max_lag_fs=max_lag_fs, n_blocks=4)


def band_numbers(w, direct, streamed) -> dict:
    out = {}
    full = (w >= 0) & (w <= 4000)
    out["rel_abs_diff_0_4000"] = float(np.trapezoid(np.abs(streamed[full] - direct[full]), w[full])
                                       / np.trapezoid(direct[full], w[full]))
    for name, (lo, hi) in BANDS.items():
        m = (w >= lo) & (w <= hi)
        i_d, i_s = np.trapezoid(direct[m], w[m]), np.trapezoid(streamed[m], w[m])
        out[name] = dict(ratio=float(i_s / i_d), peak_direct=float(w[m][np.argmax(direct[m])]),
                         peak_streamed=float(w[m][np.argmax(streamed[m])]))
    return out


def read_csv(path: Path) -> dict[str, np.ndarray]:
    names = path.read_text().splitlines()[0].split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {n: data[:, k] for k, n in enumerate(names)}


def stage_compare(args) -> None:
    import h5py

    from aptnn.raman import as_voigt

    work = Path(args.work)
    d = np.load(work / "direct.npz")
    cost = json.loads((work / "md_cost.json").read_text())
    temperature = float(args.temperature or cost["temperature_mean_K"])
    alpha = d["alpha"]                     # every 2 steps = 1 fs, frames 0 … n−1
    n = len(alpha)
    dadt_d = as_voigt(central(alpha, 1, 1.0))                    # frames 1 … n−2
    dmdt_d = central(d["dipole"], 1, 0.5)[1::2][: n - 2]        # steps 2, 4, … (frames 1 … n−2), ±0.5 fs
    stream = Path(args.stream or work / "s.h5")
    post_wall = None
    if not stream.exists():
        cmd = ["aptnn-post", str(work / "traj.extxyz"), "--model", args.model, "-o", str(stream), "--apt-every", "1",
               "--threads", "1", "--temperature", f"{temperature:.3f}", "--quiet", "--overwrite"]
        print(" ".join(cmd), flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        post_wall = time.perf_counter() - t
        (work / "post_wall.json").write_text(json.dumps({"aptnn_post_s": post_wall, "frames": n}))
    elif (work / "post_wall.json").exists():
        post_wall = json.loads((work / "post_wall.json").read_text())["aptnn_post_s"]
    with h5py.File(stream, "r") as f:
        dmdt_s = np.asarray(f["dMdt"][:, 0, :])
        dadt_s = np.asarray(f["dAdt"][:, 0, :])
        t_s = np.asarray(f["time"][:])
    if len(dmdt_s) != n or abs(t_s[1] - t_s[0] - 1.0) > 1e-6:
        raise SystemExit(f"stream has {len(dmdt_s)} frames at {t_s[1] - t_s[0]} fs; expected {n} at 1 fs")
    dmdt_s, dadt_s = dmdt_s[1:n - 1], dadt_s[1:n - 1]
    # the CLI on the stream file, for the record (same settings)
    cli = {}
    for kind, extra in (("raman", ["--raman"]), ("ir", [])):
        out = work / f"stream_{kind}.csv"
        cmd = ["aptnn", "spectrum", str(stream), *extra, "--max-lag", str(args.max_lag), "--temperature",
               f"{temperature:.3f}", "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        cli[kind] = (" ".join(cmd), res.returncode, res.stdout.strip()[-1500:], res.stderr.strip()[-800:])
    lines = []
    p = lines.append
    p("Direct vs streamed Raman and IR spectra of a GFN2-xTB water cluster "
      "(benchmarks/raman_xtb/direct_vs_streamed.py)")
    p(f"cluster: {cost['n_waters']} waters ({cost['n_atoms']} atoms) cut from pool19 frame {args.frame}, open "
      f"boundaries; NVE {cost['nve_steps']} steps x 0.5 fs = {cost['nve_steps'] * 0.5 / 1000:.2f} ps after "
      f"{cost['langevin_steps']} Langevin steps at 300 K; mean T {cost['temperature_mean_K']:.1f} K, total-energy "
      f"drift {cost['energy_drift_eV'] * 1000:.2f} meV (std {cost['energy_std_eV'] * 1000:.2f} meV)")
    p(f"cost (1 thread, shared machine): NVE {cost['nve_s_per_step'] * 1000:.1f} ms/step, Langevin "
      f"{cost['langevin_s_per_step'] * 1000:.1f} ms/step, finite-field alpha {cost['s_per_alpha']:.3f} s each "
      f"({cost['alpha_evaluations']} evaluations)" + (f", aptnn-post {post_wall:.0f} s" if post_wall else ""))
    p(f"model: {args.model}; streamed = aptnn-post --apt-every 1 (APT and PGT from the model at every 1 fs frame "
      f"times the MD velocities); direct = central differences of xTB alpha (h = 1 fs) and dipole (h = 0.5 fs), "
      "the reference derivative is the central difference at h = dt = 0.5 fs: velocity-Verlet velocities are "
      "exactly (r(t+dt) - r(t-dt))/2dt, so sum_i P_i.v_i is the h = dt difference of M to first order; the alpha "
      "series (h = 1 fs) is brought to it with sinc^2(w 0.5 fs)/sinc^2(w 1 fs). 'continuous' = sinc^2 fully "
      "divided out (the derivative of the discrete trajectory's interpolant), shown for information")
    p(f"spectra: {n - 2} frames at 1 fs, max lag {args.max_lag} fs, Hann window, harmonic QCF, "
      f"T = {temperature:.1f} K, reduced Raman (A^4 amu^-1 per cm^-1), IR cross-section per cluster")
    p("numbers: D = int|S_stream - S_direct| / int S_direct over 0-4000 cm^-1; band ratio = int S_stream / int "
      "S_direct over the band; peak = argmax in the band (cm^-1)")
    p("")
    variants = {"streamed (model)": (dadt_s, dmdt_s)}
    ex = work / "exact.npz"
    exact = None
    if ex.exists():
        e = np.load(ex)
        exact = e
    raman_d = raman_of(dadt_d, 1.0, temperature, args.max_lag)
    ir_d = ir_of(dmdt_d, 1.0, temperature, args.max_lag)
    w = raman_d.wavenumber
    corr_a = sinc2(w, 1.0) / sinc2(w, 0.5)      # alpha at h = 1 fs → the h = dt = 0.5 fs difference
    direct = {"vv": raman_d.vv / corr_a, "vh": raman_d.vh / corr_a, "iso": raman_d.iso / corr_a,
              "ir": ir_d.total}
    cont_a, cont_m = sinc2(w, 1.0), sinc2(ir_d.wavenumber, 0.5)
    raw = {"vv": raman_d.vv / cont_a, "vh": raman_d.vh / cont_a, "iso": raman_d.iso / cont_a,
           "ir": ir_d.total / cont_m}
    spectra = {"direct": direct}
    for name, (da, dm) in variants.items():
        r, i = raman_of(da, 1.0, temperature, args.max_lag), ir_of(dm, 1.0, temperature, args.max_lag)
        spectra[name] = {"vv": r.vv, "vh": r.vh, "iso": r.iso, "ir": i.total}
    results = {}
    if exact is not None:
        stride = int(exact["stride"])
        frames = exact["frame"]
        sel = (frames >= 1) & (frames <= n - 2)
        fr = frames[sel]
        da_e, dm_e = exact["dadt"][sel], exact["dmdt"][sel]
        dt_e = float(stride)
        # direct and model series on the same subsampled frames, for a like-for-like comparison
        sub_d = (dadt_d[fr - 1], dmdt_d[fr - 1])
        sub_s = (dadt_s[fr - 1], dmdt_s[fr - 1])
        sub = {}
        for name, (da, dm) in (("direct", sub_d), ("streamed (model)", sub_s), ("streamed (exact xTB G, P)",
                                                                                 (da_e, dm_e))):
            r, i = raman_of(da, dt_e, temperature, args.max_lag), ir_of(dm, dt_e, temperature, args.max_lag)
            c_a = sinc2(r.wavenumber, 1.0) / sinc2(r.wavenumber, 0.5) if name == "direct" else 1.0
            c_m = 1.0
            sub[name] = {"vv": r.vv / c_a, "vh": r.vh / c_a, "iso": r.iso / c_a, "ir": i.total / c_m, "w": r.wavenumber}
        results["subsampled"] = (stride, len(fr), sub)
    p(f"{'quantity':<6} {'variant':<28} {'D':>7}  " + "  ".join(f"{b:>26}" for b in BANDS))
    p(f"{'':<6} {'':<28} {'':>7}  " + "  ".join(f"{'ratio  peak_s/peak_d':>26}" for _ in BANDS))
    numbers = {}

    def table(spec, ref, wgrid, label_suffix=""):
        for q in ("vv", "vh", "iso", "ir"):
            for name, s in spec.items():
                if name == "direct":
                    continue
                b = band_numbers(wgrid, ref[q], s[q])
                numbers[f"{q} {name}{label_suffix}"] = b
                p(f"{q:<6} {name + label_suffix:<28} {b['rel_abs_diff_0_4000']:7.3f}  " + "  ".join(
                    f"{b[k]['ratio']:6.3f} {b[k]['peak_streamed']:7.0f}/{b[k]['peak_direct']:<7.0f}    "
                    for k in BANDS))
    table(spectra, direct, w)
    # the direct spectrum without the sinc^2 correction, against the corrected one (estimator of the reference)
    for q in ("vv", "vh", "iso", "ir"):
        b = band_numbers(w, direct[q], raw[q])
        numbers[f"{q} direct continuous vs reference"] = b
        p(f"{q:<6} {'direct continuous (sinc^-2)':<28} {b['rel_abs_diff_0_4000']:7.3f}  " + "  ".join(
            f"{b[k]['ratio']:6.3f} {b[k]['peak_streamed']:7.0f}/{b[k]['peak_direct']:<7.0f}    " for k in BANDS))
    if "subsampled" in results:
        stride, nf, sub = results["subsampled"]
        p("")
        p(f"every {stride} fs ({nf} frames; exact = xTB route-C APTs/PGTs times velocities, the estimator without "
          "model error), each against the direct series on the same frames:")
        ref = sub["direct"]
        table({k: v for k, v in sub.items()}, ref, sub["direct"]["w"], f" @{stride}fs")
        # model against exact streamed: the model error alone
        for q in ("vv", "vh", "iso", "ir"):
            b = band_numbers(sub["direct"]["w"], sub["streamed (exact xTB G, P)"][q], sub["streamed (model)"][q])
            numbers[f"{q} model vs exact @{stride}fs"] = b
            p(f"{q:<6} {'model vs exact':<28} {b['rel_abs_diff_0_4000']:7.3f}  " + "  ".join(
                f"{b[k]['ratio']:6.3f} {b[k]['peak_streamed']:7.0f}/{b[k]['peak_direct']:<7.0f}    " for k in BANDS))
    p("")
    p("band depolarisation ratios rho = int VH / int VV over the band:")
    def band_rho(s, lo, hi):
        m = (w >= lo) & (w <= hi)
        return np.trapezoid(s["vh"][m], w[m]) / np.trapezoid(s["vv"][m], w[m])
    for name, s in spectra.items():
        p(f"  {name:<28} " + "  ".join(f"{b} {band_rho(s, lo, hi):.3f}" for b, (lo, hi) in BANDS.items()))
    p("")
    p("aptnn spectrum on the stream file (same settings; CLI output tail):")
    for kind, (cmd, rc, out, err) in cli.items():
        p(f"  $ {cmd}   (exit {rc})")
        for line in (out or err).splitlines()[-6:]:
            p(f"    {line}")
    # consistency of the CLI Raman CSV with the in-script streamed spectrum
    try:
        c = read_csv(work / "stream_raman.csv")
        key = next(k for k in c if k.startswith("vv_"))
        ws = c["wavenumber_cm-1"]
        ref = np.interp(ws, w, spectra["streamed (model)"]["vv"])
        m = ws <= 4000
        p(f"  CLI VV vs in-script streamed VV (frames 0..n-1 vs 1..n-2): int|diff|/int = "
          f"{np.trapezoid(np.abs(c[key][m] - ref[m]), ws[m]) / np.trapezoid(ref[m], ws[m]):.3f}")
    except Exception as exc:  # noqa: BLE001 (reported, not fatal)
        p(f"  CLI CSV not compared: {exc}")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "raman_xtb_direct_vs_streamed.txt").write_text(text)
    (RESULTS / "raman_xtb_direct_vs_streamed.json").write_text(json.dumps(numbers, indent=1))
    plot(w, spectra, results, RESULTS / "raman_xtb_direct_vs_streamed.png", temperature)


def plot(w, spectra, results, path, temperature) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 11), sharex=True)
    styles = {"direct": dict(color="k", lw=1.6), "streamed (model)": dict(color="C3", lw=1.2, ls="--")}
    titles = {"vv": "Raman VV (reduced)", "vh": "Raman VH (reduced)", "iso": "Raman isotropic (reduced)",
              "ir": "IR cross-section"}
    sub = results.get("subsampled")
    for ax, q in zip(axes, ("vv", "vh", "iso", "ir")):
        m = w <= 4200   # the sinc^2-corrected direct spectrum diverges towards the 1 fs Nyquist wavenumber
        for name, s in spectra.items():
            ax.plot(w[m], s[q][m], label=name, **styles.get(name, {}))
        if sub:
            e = sub[2]["streamed (exact xTB G, P)"]
            me = e["w"] <= 4200
            ax.plot(e["w"][me], e[q][me], color="C0", lw=1.0, ls=":",
                    label=f"streamed (exact xTB, every {sub[0]} fs)")
        ax.set_ylabel(titles[q], fontsize=9)
        ax.set_xlim(0, 4200)
        ax.legend(fontsize=8)
    axes[-1].set_xlabel("wavenumber (cm$^{-1}$)")
    fig.suptitle(f"GFN2-xTB (H$_2$O)$_8$ cluster, NVE, T = {temperature:.0f} K: direct vs streamed", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["md", "exact", "compare"])
    p.add_argument("--work", default="/work/scratch/raman_xtb/md")
    p.add_argument("--waters", type=int, default=8)
    p.add_argument("--frame", type=int, default=5)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--temperature", type=float, default=None, help="md: target (300 K); compare: spectrum T "
                   "(default: the NVE mean kinetic temperature)")
    p.add_argument("--equil-steps", type=int, default=2000)
    p.add_argument("--steps", type=int, default=8000, help="NVE steps of 0.5 fs")
    p.add_argument("--exact-stride", type=int, default=2, help="frames (1 fs each) between exact-streamed labels")
    p.add_argument("--exact-frames", type=int, default=0, help="stop after this many exact frames (0: all)")
    p.add_argument("--model", default="/work/scratch/raman_xtb/models/joint.pt")
    p.add_argument("--stream", default=None)
    p.add_argument("--max-lag", type=float, default=500.0)
    args = p.parse_args()
    if args.stage == "md":
        args.temperature = args.temperature or 300.0
    {"md": stage_md, "exact": stage_exact, "compare": stage_compare}[args.stage](args)


if __name__ == "__main__":
    main()
