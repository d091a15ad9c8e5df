"""GFN2-xTB reference trajectory of a water cluster for the committee calibration study
(helper of ``benchmarks/committee_calibration.py``; run alone: ``python calib_xtb_cluster.py OUT.h5``).

(H2O)_n, open boundaries, GFN2-xTB through tblite's ASE calculator (aptnn's own ``xtb_factory``, the calculator
``aptnn label`` uses): a short BFGS relaxation, Langevin equilibration at ``temperature`` K, zero total momentum
and angular momentum, then velocity-Verlet NVE at 0.5 fs. Every NVE step is stored as H5MD (``aptnn-post``
reads it directly):

    /particles/cluster/position/value     (n_steps, N, 3)  Å        (+ step, time in fs)
    /particles/cluster/velocity/value     (n_steps, N, 3)  Å/fs
    /particles/cluster/species            (N,)             atomic numbers
    /observables/dipole/value             (n_steps, 3)     e·Å      xTB dipole (tblite, origin-independent:
                                                                    the cluster is neutral)
    /observables/potential_energy/value   (n_steps,)       eV
    /observables/kinetic_energy/value     (n_steps,)       eV
    /observables/temperature/value        (n_steps,)       K        (3N − 6 degrees of freedom)

Positions and velocities are those of the same instant (ASE's velocity Verlet), the dipole that of the
positions (the force call of the step computes it; no extra single point).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from scipy.spatial.transform import Rotation

FS = units.fs   # ASE time unit per fs: v[Å/fs] = v_ase * FS


def water_cluster(n: int, seed: int = 0, spacing: float = 2.9) -> Atoms:
    """``n`` randomly oriented waters on the ``spacing``-Å grid points closest to the centre of a cube."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n ** (1 / 3))) + 1
    grid = np.array(list(np.ndindex(side, side, side)), float)
    grid -= grid.mean(0)
    order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], np.round(np.linalg.norm(grid, axis=1), 6)))
    h2o = molecule("H2O")
    h2o.positions -= h2o.get_center_of_mass()
    atoms = Atoms()
    for idx in order[:n]:
        w = h2o.copy()
        w.positions = Rotation.random(random_state=int(rng.integers(1 << 30))).apply(w.positions)
        w.positions += grid[idx] * spacing
        atoms += w
    atoms.pbc = False
    return atoms


def _dataset(group, name, shape, unit, dtype="f8"):
    g = group.require_group(name)
    d = g.create_dataset("value", shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype,
                         chunks=(min(1024, max(1, 2**20 // (8 * max(1, int(np.prod(shape)))))),) + shape)
    d.attrs["unit"] = unit
    g.create_dataset("step", shape=(0,), maxshape=(None,), dtype="i8", chunks=(4096,))
    t = g.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(4096,))
    t.attrs["unit"] = "fs"
    return g


def run_md(output: str | Path, n_waters: int = 16, temperature: float = 300.0, equil_steps: int = 3000,
           nve_steps: int = 16000, dt_fs: float = 0.5, seed: int = 0, friction_per_fs: float = 0.01,
           flush_steps: int = 500, log=print) -> dict:
    """Write the NVE trajectory to ``output`` (H5MD); returns timing/energy information."""
    import h5py
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet
    from ase.optimize import BFGS

    from aptnn.label.xtb import xtb_factory

    output = Path(output)
    atoms = water_cluster(n_waters, seed)
    atoms.calc = xtb_factory()(None)
    t0 = time.process_time()
    w0 = time.monotonic()
    BFGS(atoms, logfile=None).run(fmax=0.2, steps=60)
    t_opt = time.process_time() - t0
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seed + 1))
    Stationary(atoms)
    ZeroRotation(atoms)
    lang = Langevin(atoms, dt_fs * units.fs, temperature_K=temperature, friction=friction_per_fs / units.fs,
                    fixcm=False, rng=np.random.default_rng(seed + 2))
    t1 = time.process_time()
    lang.run(equil_steps)
    t_eq = time.process_time() - t1
    log(f"md: relaxed in {t_opt:.0f} s CPU, {equil_steps} Langevin steps in {t_eq:.0f} s CPU "
        f"({1e3 * t_eq / max(equil_steps, 1):.1f} ms/step)")
    Stationary(atoms)
    ZeroRotation(atoms)
    # rescale to the target temperature after removing the 6 rigid-body degrees of freedom
    dof = 3 * len(atoms) - 6
    t_now = 2 * atoms.get_kinetic_energy() / (dof * units.kB)
    atoms.set_velocities(atoms.get_velocities() * np.sqrt(temperature / t_now))

    n_atoms = len(atoms)
    tmp = output.with_name(output.name + ".part")
    f = h5py.File(tmp, "w")
    f.create_group("h5md").attrs["version"] = np.array([1, 1])
    f["h5md"].create_group("author").attrs["name"] = "aptnn benchmarks/calib_xtb_cluster.py"
    f["h5md"].create_group("creator").attrs.update({"name": "ASE + tblite GFN2-xTB", "version": "1"})
    part = f.create_group("particles/cluster")
    part.create_dataset("species", data=atoms.numbers.astype("i4"))
    pos = _dataset(part, "position", (n_atoms, 3), "angstrom")
    vel = _dataset(part, "velocity", (n_atoms, 3), "angstrom fs-1")
    obs = f.create_group("observables")
    dip = _dataset(obs, "dipole", (3,), "e angstrom")
    epot = _dataset(obs, "potential_energy", (), "eV")
    ekin = _dataset(obs, "kinetic_energy", (), "eV")
    temp = _dataset(obs, "temperature", (), "K")
    groups = [pos, vel, dip, epot, ekin, temp]
    attrs = dict(n_waters=n_waters, dt_fs=dt_fs, temperature_target_K=temperature, ensemble="NVE",
                 equilibration=f"BFGS fmax 0.2 eV/A (<= 60 steps), {equil_steps} Langevin steps at {temperature} K "
                               f"(friction {friction_per_fs}/fs), then momentum and rotation removed, "
                               "velocities rescaled to the target (3N-6 dof)",
                 calculator="tblite GFN2-xTB, accuracy 0.01 (aptnn.label.xtb.xtb_factory)",
                 integrator="ASE VelocityVerlet", seed=seed)
    f.attrs.update(attrs)
    buf = {k: [] for k in ("pos", "vel", "dip", "epot", "ekin", "temp", "step")}

    def record(step):
        buf["pos"].append(atoms.get_positions())
        buf["vel"].append(atoms.get_velocities() * FS)
        buf["dip"].append(np.asarray(atoms.get_dipole_moment(), float))
        buf["epot"].append(atoms.get_potential_energy())
        ek = atoms.get_kinetic_energy()
        buf["ekin"].append(ek)
        buf["temp"].append(2 * ek / (dof * units.kB))
        buf["step"].append(step)

    def flush():
        if not buf["step"]:
            return
        n = len(buf["step"])
        steps = np.array(buf["step"])
        for g, key in zip(groups, ("pos", "vel", "dip", "epot", "ekin", "temp")):
            m = g["value"].shape[0]
            for name in ("value", "step", "time"):
                g[name].resize(m + n, axis=0)
            g["value"][m:] = np.array(buf[key])
            g["step"][m:] = steps
            g["time"][m:] = steps * dt_fs
        for v in buf.values():
            v.clear()
        f.flush()

    md = VelocityVerlet(atoms, dt_fs * units.fs)

    def after():  # ASE calls observers at step 0 too: steps 0…nve_steps are stored
        step = md.nsteps
        record(step)
        if step and step % flush_steps == 0:
            flush()
            if step % (10 * flush_steps) == 0:
                log(f"md: NVE step {step}/{nve_steps}")

    md.attach(after, interval=1)
    t2 = time.process_time()
    md.run(nve_steps)
    t_nve = time.process_time() - t2
    flush()
    e_tot = f["observables/potential_energy/value"][()] + f["observables/kinetic_energy/value"][()]
    temps = f["observables/temperature/value"][()]
    pos_all = f["particles/cluster/position/value"]
    last = pos_all[-1]
    com = (last * atoms.get_masses()[:, None]).sum(0) / atoms.get_masses().sum()
    info = dict(cpu_s_relax=t_opt, cpu_s_langevin=t_eq, cpu_s_nve=t_nve, ms_per_step=1e3 * t_nve / nve_steps,
                wall_s=time.monotonic() - w0, energy_drift_eV=float(e_tot[-1] - e_tot[0]),
                energy_std_eV=float(e_tot.std()), mean_T_K=float(temps.mean()),
                max_dist_from_com_A=float(np.linalg.norm(last - com, axis=1).max()))
    f.attrs.update({k: v for k, v in info.items()})
    f.close()
    os.replace(tmp, output)
    log(f"md: {nve_steps} NVE steps in {t_nve:.0f} s CPU ({info['ms_per_step']:.1f} ms/step); mean T "
        f"{info['mean_T_K']:.0f} K, energy drift {info['energy_drift_eV']:.2e} eV (std {info['energy_std_eV']:.2e})")
    return info


def read_trajectory(path: str | Path, start: int = 0, stop: int | None = None, stride: int = 1) -> dict:
    """Arrays of the H5MD file written by :func:`run_md` (Å, Å/fs, e·Å, fs)."""
    import h5py

    with h5py.File(path, "r") as f:
        sl = slice(start, stop, stride)
        p = f["particles/cluster"]
        return dict(numbers=p["species"][()], positions=p["position/value"][sl], velocities=p["velocity/value"][sl],
                    time=p["position/time"][sl], dipole=f["observables/dipole/value"][sl],
                    dt_fs=float(f.attrs["dt_fs"]), temperature=f["observables/temperature/value"][sl])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("--waters", type=int, default=16)
    parser.add_argument("--equil-steps", type=int, default=3000)
    parser.add_argument("--nve-steps", type=int, default=16000)
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run_md(args.output, args.waters, args.temperature, args.equil_steps, args.nve_steps, seed=args.seed)


if __name__ == "__main__":
    main()
