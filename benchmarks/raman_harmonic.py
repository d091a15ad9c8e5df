"""Raman spectra from low-temperature classical MD against harmonic Raman activities (GFN2-xTB, tblite).

    OMP_NUM_THREADS=1 python benchmarks/raman_harmonic.py [--quick] [--out benchmarks/results/raman_harmonic]

For H2O, HDO (three well separated bands) and formaldehyde: optimise, harmonic normal modes (finite-difference
Hessian, rigid-body motions projected out), PGT at the minimum (route C; route A for comparison), harmonic Raman
activities S_k = 45a′² + 7γ′² (Å⁴/amu) and ρ_k. Then NVE velocity-Verlet MD (0.25 fs) at 20 K started with every
normal mode at energy k_BT and a random phase (no translation; angular momentum zeroed), α by finite fields
(±0.05 V/Å) every 2nd step (0.5 fs), dα/dt by the five-point stencil (“direct”) and, as a second curve, G₀·v with
the PGT of the minimum and the body-frame velocities (“linear”). aptnn.raman.raman_spectrum (reduced, harmonic QCF)
of several runs; per band: ∫45(VV+VH) dν̃ (absolute, Å⁴/amu, and relative to the strongest band), the VV+VH peak
and ρ = VH/VV at the peak; "T-wt" compares with S_k·T_k/T, T_k the mode's kinetic temperature in the run.
Writes <out>.txt (this output) and <out>.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from ase.build import molecule

from aptnn import raman_harmonic as rh
from aptnn.label.xtb import xtb_factory
from aptnn.raman import raman_spectrum

TEMPERATURE = 20.0   # K
# name, ASE molecule, masses (None: standard), groups of modes sharing a band, runs, frames per run, max lag (fs)
CASES = [
    ("H2O", "H2O", None, [[0], [1, 2]], 4, 6000, 1500.0),
    ("HDO", "H2O", [15.999, 1.008, 2.014], [[0], [1], [2]], 3, 4000, 1000.0),
    ("H2CO", "H2CO", None, [[0, 1], [2], [3], [4], [5]], 2, 12000, 3000.0),
]


def percent(a, b):
    return 100.0 * (a / b - 1.0)


def run_case(name, formula, masses, groups, n_runs, n_frames, max_lag, make, log, seed=0):
    t0 = time.perf_counter()
    atoms = molecule(formula)
    if masses is not None:
        atoms.set_masses(masses)
    atoms, modes, pgt, act = rh.harmonic_reference(atoms, make, route="C")
    act_a = rh.raman_activities(rh.harmonic_reference(atoms, make, route="A")[2], modes)
    log(f"\n=== {name} (GFN2-xTB, {len(modes.wavenumber)} vibrations) ===")
    log("harmonic modes (PGT route C, h = 0.1 V/Å; route A = finite-field α at ±0.005 Å for comparison):")
    log(f"{'mode':>4} {'ν̃ cm⁻¹':>9} {'a′² Å⁴/amu':>12} {'γ′² Å⁴/amu':>12} {'S Å⁴/amu':>10} {'S/Smax':>8} "
        f"{'ρ':>7} {'S route A':>10} {'ρ route A':>9}")
    smax = act.activity.max()
    for k in range(len(modes.wavenumber)):
        log(f"{k:>4} {act.wavenumber[k]:9.1f} {act.a2[k]:12.5g} {act.gamma2[k]:12.5g} {act.activity[k]:10.4f} "
            f"{act.activity[k] / smax:8.4f} {act.depolarization[k]:7.4f} {act_a.activity[k]:10.4f} "
            f"{act_a.depolarization[k]:9.4f}")
    bands = rh.harmonic_bands(act, groups)
    rng = np.random.default_rng(seed)
    t1 = time.perf_counter()
    trajs = [rh.md_polarizability(atoms, make, modes, TEMPERATURE, n_frames, rng) for _ in range(n_runs)]
    t_md = time.perf_counter() - t1
    drift = max(np.ptp(t.energy) for t in trajs)
    turn = max(float(np.degrees(np.arccos(np.clip((np.trace(_rotation(t, atoms, modes)) - 1) / 2, -1, 1))))
               for t in trajs)
    log(f"MD: {n_runs} runs × {n_frames} frames × 0.5 fs (Verlet 0.25 fs) at {TEMPERATURE:g} K, every mode at "
        f"k_BT; max |E − E₀| span {drift:.2e} eV; final orientation turned ≤ {turn:.2f}°; {t_md:.0f} s; "
        f"max lag {max_lag:g} fs, Hann window")
    frames = np.array([len(t.energy) for t in trajs], dtype=float)
    t_runs = np.array([t.mode_temperature(modes, atoms.positions) for t in trajs])
    t_modes = (t_runs * frames[:, None]).sum(0) / frames.sum()
    log("mode temperatures ⟨Q̇_k²⟩/k_B over the runs (K): " + ", ".join(f"{x:.2f}" for x in t_modes)
        + f"  (harmonic, no exchange: {TEMPERATURE:g})")
    weighted = rh.harmonic_bands(act, groups, weights=t_modes / TEMPERATURE)
    specs = {}
    for kind in ("direct", "linear"):
        dadt = [t.dadt_direct() if kind == "direct" else t.dadt_linear(pgt, atoms.positions, modes.masses)
                for t in trajs]
        specs[kind] = raman_spectrum(dadt, trajs[0].dt_fs, TEMPERATURE, max_lag_fs=max_lag)
    rows = {kind: rh.band_summary(spec, [(b["lo"], b["hi"]) for b in bands]) for kind, spec in specs.items()}
    strongest = int(np.argmax([b["activity"] for b in bands]))
    log(f"bands (modes; lo–hi cm⁻¹); S = ∫45(VV+VH) dν̃ in Å⁴/amu (MD: direct α); rel = S/S(strongest band "
        f"{strongest}); 'T-wt': harmonic S_k·T_k/T with the MD's mode temperatures; 'lin': MD with dα/dt = G₀·v; "
        "ρ_pk = VH/VV at the MD peak, ρ_band = ∫VH/∫VV; Δ in % (peak: cm⁻¹):")
    log(f"{'band':>18} {'ν̃ harm':>7} {'ν̃ MD':>7} {'Δν̃':>5} | {'S harm':>8} {'S T-wt':>8} {'S MD':>8} {'Δ%h':>6} "
        f"{'Δ%T':>6} | {'rel harm':>8} {'rel T-wt':>8} {'rel MD':>8} {'Δ%h':>6} {'Δ%T':>6} {'lin Δ%T':>7} | "
        f"{'ρ harm':>7} {'ρ T-wt':>7} {'ρ_pk MD':>7} {'Δ%h':>6} {'ρ_band':>7} {'Δ%T':>6}")
    summary = []
    for i, b in enumerate(bands):
        d, li, w = rows["direct"][i], rows["linear"][i], weighted[i]
        rel_h = b["activity"] / bands[strongest]["activity"]
        rel_w = w["activity"] / weighted[strongest]["activity"]
        rel_d = d["activity"] / rows["direct"][strongest]["activity"]
        rel_l = li["activity"] / rows["linear"][strongest]["activity"]
        label = f"{'+'.join(map(str, b['modes']))} ({b['lo']:.0f}–{b['hi']:.0f})"
        log(f"{label:>18} {b['peak']:7.1f} {d['peak']:7.1f} {d['peak'] - b['peak']:5.1f} | {b['activity']:8.4f} "
            f"{w['activity']:8.4f} {d['activity']:8.4f} {percent(d['activity'], b['activity']):6.2f} "
            f"{percent(d['activity'], w['activity']):6.2f} | {rel_h:8.4f} {rel_w:8.4f} {rel_d:8.4f} "
            f"{percent(rel_d, rel_h):6.2f} {percent(rel_d, rel_w):6.2f} {percent(rel_l, rel_w):7.2f} | "
            f"{b['rho']:7.4f} {w['rho']:7.4f} {d['rho_peak']:7.4f} {percent(d['rho_peak'], b['rho']):6.2f} "
            f"{d['rho']:7.4f} {percent(d['rho'], w['rho']):6.2f}")
        log(f"{'':>18} ∫R_iso = {d['a2']:.5g} vs Σa′²·T_k/T = {w['a2']:.5g} ({percent(d['a2'], w['a2']):+.2f} %), "
            f"∫R_aniso = {d['gamma2']:.5g} vs Σγ′²·T_k/T = {w['gamma2']:.5g} "
            f"({percent(d['gamma2'], w['gamma2']):+.2f} %)")
        summary.append((b, d, rel_h, rel_d))
    spec = specs["direct"]
    whole = [np.trapezoid(getattr(spec, p), spec.wavenumber) for p in ("iso", "aniso")]
    log(f"whole grid: ∫R_iso = {whole[0]:.5g} (Σ_k a′²·T_k/T = {(act.a2 * t_modes).sum() / TEMPERATURE:.5g}), "
        f"∫R_aniso = {whole[1]:.5g} (Σ_k γ′²·T_k/T = {(act.gamma2 * t_modes).sum() / TEMPERATURE:.5g})")
    log(f"{name} total {time.perf_counter() - t0:.0f} s")
    return {"name": name, "act": act, "bands": bands, "spec": specs["direct"], "lin": specs["linear"]}


def _rotation(traj, atoms, modes):
    """Rotation of the last frame relative to the minimum (mass-weighted Kabsch)."""
    w = modes.masses / modes.masses.sum()
    p = traj.positions[-1] - w @ traj.positions[-1]
    ref = atoms.positions - w @ atoms.positions
    u, _, vt = np.linalg.svd((p * modes.masses[:, None]).T @ ref)
    return u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(8, 3 * len(results)))
    for ax, res in zip(np.atleast_1d(axes), results):
        spec, act = res["spec"], res["act"]
        lo, hi = res["bands"][0]["lo"], res["bands"][-1]["hi"]
        sel = (spec.wavenumber > lo) & (spec.wavenumber < hi)
        total = 45 * (spec.vv + spec.vh)
        top = total[sel].max()
        ax.plot(spec.wavenumber[sel], total[sel] / top, label="MD 45(VV+VH), direct α")
        ax.plot(res["lin"].wavenumber[sel], 45 * (res["lin"].vv + res["lin"].vh)[sel] / top, "--", lw=0.8,
                label="MD, dα/dt = G₀·v")
        ax.plot(spec.wavenumber[sel], 45 * spec.vh[sel] / top, label="MD 45·VH")
        scale = max(b["activity"] for b in res["bands"])
        ax.vlines(act.wavenumber, 0, act.activity / scale, colors="k", label="harmonic S_k / S(strongest band)")
        ax.set_title(f"{res['name']} (GFN2-xTB, {TEMPERATURE:g} K)")
        ax.set_xlabel("wavenumber (cm⁻¹)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the MD (rough numbers)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "raman_harmonic"))
    parser.add_argument("--only", nargs="*", help="molecule names to run (default all)")
    args = parser.parse_args(argv)
    lines = []

    def log(text=""):
        print(text, flush=True)
        lines.append(text)

    start = time.perf_counter()
    make = xtb_factory(accuracy=1e-6)
    log(f"aptnn.raman vs harmonic Raman activities; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"tblite accuracy 1e-6; python {sys.version.split()[0]}")
    results = []
    for name, formula, masses, groups, runs, frames, lag in CASES:
        if args.only and name not in args.only:
            continue
        if args.quick:
            frames, lag = frames // 2, lag / 2
            runs = max(1, runs // 2)
        results.append(run_case(name, formula, masses, groups, runs, frames, lag, make, log))
    log(f"\ntotal runtime {time.perf_counter() - start:.0f} s")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    plot(results, args.out + ".png")


if __name__ == "__main__":
    main()
