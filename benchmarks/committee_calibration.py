"""Calibration of committee uncertainty bands on IR spectra against a reference where the truth is known.

    python benchmarks/committee_calibration.py WORKDIR [--quick] [--kinds full,heads] [--stages ...]

The truth: a GFN2-xTB MD of a water cluster (open boundaries, tblite through ASE, velocity Verlet at 0.5 fs,
``benchmarks/calib_xtb_cluster.py``) with the xTB dipole stored at every step. Its spectrum, from central
differences of the dipole, is what a perfect APT model would give on the same trajectory (Σ_i P_i·v_i equals
dM/dt to first order; checked below on the labelled frames). Committees trained on 4, 8 and 16 frames of the same
trajectory, labelled with xTB APTs by ``aptnn label`` (field route), predict member dM/dt series on the same
frames; the spectra then come from aptnn.spectrum.compute_spectrum on stream files written with
aptnn.io.stream_writer.StreamWriter (series ``total`` = committee mean, ``member<k>``: the aptnn-post layout).

Bands (exactly as defined in the study's brief):
  main line          A_mean(ω): spectrum of the committee-mean dM/dt
  σ_model(ω)         s × std over members (ddof=1) of the member spectra; s = the checkpoint's uncertainty_scale
                     for "ckpt", 1 for "raw", or a scale fitted here (see below)
  σ_stat(ω)          time-block standard error of A_mean (compute_spectrum, --blocks)
  combined           sqrt(σ_model² + σ_stat²)
  coverage(k)        fraction of grid points with |A_ref − A_mean| ≤ k σ; on 0–4000 cm⁻¹, 500–4000 cm⁻¹ and
                     weighted by A_ref on 0–4000 cm⁻¹
Committees of 2 and 4 are disjoint subsets of the 8 members (members 0–1, 2–3, … and 0–3, 4–7); their
numbers are averages over the subsets.

Calibration scales, fitted per committee subset: "apt" s² = mean over validation-frame components of (err/σ)²
(err = committee mean − xTB, σ = the subset's std, ddof=1): the brief's definition and aptnn's checkpoint
``uncertainty_scale``; "rms" s² = mean err² / mean σ² on the same components (finite and unbiased for any
committee size, unlike mean z², which is Cauchy-like for 2 members); "spec" s = the A_ref-weighted 68.3 % quantile
of |A_ref − A_mean|/σ_model over 0–4000 cm⁻¹ on one half of the trajectory, applied to the other half (and vice
versa): a spectrum-level calibration and its transfer in time. Transfer of the APT scales: validation → test
frames (APT level) and → spectra. Common mode: the time-block error of A_mean − A_ref itself, against σ_stat.

Stages (each skipped when its output exists in WORKDIR): md, label, checks, reference, train, predict, post
(aptnn-post with member series on the largest full committee, compared with the series computed here), analyse.
``--md PATH`` reuses an existing trajectory (e.g. /work/calib/cluster_md.h5). Costs (2-core machine, 1 thread):
MD ~31 ms/step for (H2O)16, xTB APTs 0.3 s/frame, training ≲ 5 min per committee of 8, prediction
~2.2 ms CPU per 48-atom frame and member (heads: 2.6 ms for all 8), analysis ~5 min.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SIZES_FULL = dict(waters=16, equil_steps=3000, nve_steps=20000, stride=4, frames=(4, 8, 16), members=8,
                  sizes=(2, 4, 8), channels=4, cutoff=5.0, max_lag_fs=1000.0, blocks=8, xtb_apt_frames=1000,
                  optimiser_steps=1600, max_epochs=400)
SIZES_QUICK = dict(waters=8, equil_steps=400, nve_steps=3000, stride=4, frames=(4, 8), members=4,
                   sizes=(2, 4), channels=4, cutoff=5.0, max_lag_fs=300.0, blocks=4, xtb_apt_frames=80,
                   optimiser_steps=160, max_epochs=40)
RANGES = {"0-4000": (0.0, 4000.0), "500-4000": (500.0, 4000.0)}
PY = sys.executable


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def aptnn(*args: str) -> str:
    """Run an aptnn command (python -m aptnn) and return its stdout; stops on failure."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([PY, "-m", "aptnn", *args], capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(f"aptnn {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


# ---------------------------------------------------------------------------------------------- step 1: data
def stage_md(work: Path, p: dict, md_path: str | None) -> Path:
    from calib_xtb_cluster import run_md

    if md_path:
        return Path(md_path)
    out = work / "cluster_md.h5"
    if not out.exists():
        log(f"md: (H2O){p['waters']}, {p['equil_steps']} Langevin + {p['nve_steps']} NVE steps of 0.5 fs")
        run_md(out, p["waters"], 300.0, p["equil_steps"], p["nve_steps"], log=log)
    return out


def pick_frames(n_steps: int, n_train: int) -> dict:
    """Evenly spaced, well-separated steps, roles interleaved in cycles of 7 slots (4 train, 2 test, 1 valid)."""
    cycles = int(np.ceil(n_train / 4))
    pattern = ["train", "test", "train", "valid", "train", "test", "train"]
    slots = 7 * cycles
    steps = np.round((np.arange(slots) + 0.5) * (n_steps - 1) / slots).astype(int)
    roles = {"train": [], "valid": [], "test": []}
    for k, s in enumerate(steps):
        roles[pattern[k % 7]].append(int(s))
    roles["train"] = roles["train"][:n_train]
    return roles


def subset(train_steps: list[int], n: int) -> list[int]:
    idx = np.unique(np.round(np.linspace(0, len(train_steps) - 1, n)).astype(int))
    return [train_steps[i] for i in idx]


def frames_at(traj: dict, steps) -> list:
    from ase import Atoms

    out = []
    for s in steps:
        a = Atoms(numbers=traj["numbers"], positions=traj["positions"][s], pbc=False)
        a.arrays["velocities"] = traj["velocities"][s].copy()   # Å/fs
        a.info.update(step=int(s), time_fs=float(traj["time"][s]), dipole_eA=traj["dipole"][s].tolist())
        out.append(a)
    return out


def stage_label(work: Path, p: dict, md: Path) -> dict:
    from ase.io import write
    from calib_xtb_cluster import read_trajectory

    lab = work / "labels"
    lab.mkdir(exist_ok=True)
    pick_file = lab / "pick.json"
    traj = read_trajectory(md)
    n_steps = len(traj["time"])
    roles = pick_frames(n_steps, max(p["frames"]))
    roles.update({f"train{n}": subset(roles["train"], n) for n in p["frames"]})
    for role in ("train", "valid", "test"):
        out = lab / f"{role}.extxyz"
        if out.exists():
            continue
        raw = lab / f"{role}_positions.extxyz"
        write(raw, frames_at(traj, roles[role]))
        t0 = time.monotonic()
        aptnn("label", str(raw), "-o", str(out), "--backend", "xtb", "--route", "field", "--quiet")
        log(f"label: {len(roles[role])} {role} frames with xTB APTs in {time.monotonic() - t0:.0f} s")
    from aptnn.io import read_frames, write_frames

    full = read_frames(lab / "train.extxyz")
    by_step = {int(a.info["step"]): a for a in full}
    for n in p["frames"]:
        out = lab / f"train{n}.extxyz"
        if not out.exists():
            write_frames(out, [by_step[s] for s in roles[f"train{n}"]])
    pick_file.write_text(json.dumps(roles, indent=1))
    return roles


def stage_checks(work: Path, p: dict, md: Path) -> dict:
    """Σ_i P_i·v_i (xTB APTs) against central differences of the xTB dipole on every labelled frame; the field
    route against the displacement route on one frame."""
    out = work / "checks.json"
    if out.exists():
        return json.loads(out.read_text())
    from calib_xtb_cluster import read_trajectory

    from aptnn.io import read_frames
    from aptnn.label.routes import displacement_route
    from aptnn.label.xtb import xtb_factory
    from aptnn.labels import get_apt

    traj = read_trajectory(md)
    dt = traj["dt_fs"]
    rows = []
    frames = []
    for role in ("train", "valid", "test"):
        frames += read_frames(work / "labels" / f"{role}.extxyz")
    for a in frames:
        s = int(a.info["step"])
        apt = get_apt(a)[0]
        pv = np.einsum("nxz,nz->x", apt, traj["velocities"][s])
        cd = (traj["dipole"][s + 1] - traj["dipole"][s - 1]) / (2 * dt)
        cd4 = (8 * (traj["dipole"][s + 1] - traj["dipole"][s - 1]) - (traj["dipole"][s + 2] - traj["dipole"][s - 2])) / (12 * dt)
        rows.append(dict(step=s, pv=pv.tolist(), cd=cd.tolist(), cd4=cd4.tolist(),
                         rel=float(np.linalg.norm(pv - cd) / np.linalg.norm(cd)),
                         rel4=float(np.linalg.norm(pv - cd4) / np.linalg.norm(cd4))))
    pv = np.array([r["pv"] for r in rows])
    cd = np.array([r["cd"] for r in rows])
    cd4 = np.array([r["cd4"] for r in rows])
    a0 = frames[0]
    t0 = time.process_time()
    disp = displacement_route(a0, xtb_factory()(None), 0.01)
    t_disp = time.process_time() - t0
    field = get_apt(a0)[0]
    res = dict(n_frames=len(rows),
               rel_rms_pv_vs_cd=float(np.sqrt(((pv - cd) ** 2).sum() / (cd ** 2).sum())),
               rel_rms_pv_vs_cd4=float(np.sqrt(((pv - cd4) ** 2).sum() / (cd4 ** 2).sum())),
               rel_median=float(np.median([r["rel"] for r in rows])),
               rel_max=float(np.max([r["rel"] for r in rows])),
               field_vs_displacement_max_e=float(np.abs(field - disp).max()),
               field_vs_displacement_rms_e=float(np.sqrt(((field - disp) ** 2).mean())),
               apt_rms_e=float(np.sqrt((field ** 2).mean())), displacement_cpu_s=t_disp,
               sum_rule_displacement_max_e=float(np.abs(disp.sum(0)).max()), frames=rows)
    out.write_text(json.dumps(res, indent=1))
    log(f"checks: |Σ P·v − ΔM/2Δt| / |ΔM/2Δt| = {res['rel_rms_pv_vs_cd']:.2e} (rms over {len(rows)} frames; "
        f"median per frame {res['rel_median']:.2e}, max {res['rel_max']:.2e}); field vs displacement route "
        f"max {res['field_vs_displacement_max_e']:.1e} e")
    return res


def sampled_steps(n_steps: int, stride: int) -> np.ndarray:
    """Steps whose dM/dt enters every spectrum (central differences need both neighbours)."""
    return np.arange(stride, n_steps - 1, stride)


def write_stream(path: Path, series: dict[str, np.ndarray], time_fs: np.ndarray, temperature: float,
                 natoms: int, model: str, source: str) -> Path:
    """A dM/dt stream (aptnn schema) with the given series (F, 3) e·Å/fs, open boundaries."""
    from aptnn.io.stream_writer import StreamWriter

    names = list(series)
    data = np.stack([series[n] for n in names], axis=1)
    dt = float(time_fs[1] - time_fs[0])
    with StreamWriter(path, names, dt_fs=dt, temperature_K=temperature, natoms=natoms, estimator="velocity",
                      model=model, source=source, overwrite=True, flush_every=1e9) as w:
        w.append(time_fs, data)
    return path


def stage_reference(work: Path, p: dict, md: Path) -> dict:
    """Reference stream (central differences of the xTB dipole) and, on a segment, Σ_i P_i^xTB·v_i with xTB
    APTs at every sampled frame (the APT route without any ML)."""
    from calib_xtb_cluster import read_trajectory

    streams = work / "streams"
    streams.mkdir(exist_ok=True)
    traj = read_trajectory(md)
    n_steps = len(traj["time"])
    steps = sampled_steps(n_steps, p["stride"])
    dt = traj["dt_fs"]
    temperature = float(traj["temperature"].mean())
    meta = dict(temperature_K=temperature, n_frames=len(steps), stride=p["stride"], dt_fs=dt * p["stride"],
                natoms=len(traj["numbers"]), first_step=int(steps[0]), last_step=int(steps[-1]))
    ref = (traj["dipole"][steps + 1] - traj["dipole"][steps - 1]) / (2 * dt)
    np.save(work / "reference_dmdt.npy", ref)
    path = streams / "reference.dmdt.h5"
    if not path.exists():
        write_stream(path, {"total": ref}, traj["time"][steps], temperature, meta["natoms"],
                     "xTB dipole (central differences)", str(md))
    seg = work / "xtb_apt_segment.npz"
    n_seg = min(p["xtb_apt_frames"], len(steps))
    if n_seg and not seg.exists():
        from aptnn.label.run import label_frames

        t0 = time.process_time()
        pv = np.empty((n_seg, 3))
        done, failed = label_frames(frames_at(traj, steps[:n_seg]), progress=False)
        if failed:
            raise SystemExit(f"xTB labelling failed on segment frames: {failed[:3]}")
        from aptnn.labels import get_apt

        for k, a in enumerate(done):
            pv[k] = np.einsum("nxz,nz->x", get_apt(a)[0], traj["velocities"][steps[k]])
        np.savez(seg, pv=pv, steps=steps[:n_seg], cpu_s=time.process_time() - t0)
        log(f"reference: xTB APTs on {n_seg} segment frames in {time.process_time() - t0:.0f} s CPU")
    if n_seg:
        d = np.load(seg)
        write_stream(streams / "segment_xtb_apt.dmdt.h5", {"total": d["pv"]}, traj["time"][d["steps"]],
                     temperature, meta["natoms"], "xTB APTs", str(md))
        write_stream(streams / "segment_reference.dmdt.h5", {"total": ref[:n_seg]}, traj["time"][d["steps"]],
                     temperature, meta["natoms"], "xTB dipole (central differences)", str(md))
        meta["segment_frames"] = int(n_seg)
        meta["segment_rel_rms"] = float(np.sqrt(((d["pv"] - ref[:n_seg]) ** 2).sum() / (ref[:n_seg] ** 2).sum()))
        meta["segment_label_cpu_s_per_frame"] = float(d["cpu_s"]) / n_seg
    (work / "reference.json").write_text(json.dumps(meta, indent=1))
    return meta


# ------------------------------------------------------------------------------------------ step 2: committees
_KIND_OPTION: list[bool] = []


def has_kind_option() -> bool:
    """Whether this aptnn's ``train`` has --committee-kind (another engineer adds it; checked once)."""
    if not _KIND_OPTION:
        _KIND_OPTION.append("--committee-kind" in aptnn("train", "--help"))
    return _KIND_OPTION[0]


def stage_train(work: Path, p: dict, kinds: list[str], md: Path | None = None) -> dict:
    models = work / "models"
    models.mkdir(exist_ok=True)
    info = {}
    lab = work / "labels"
    for kind in kinds:
        if kind != "full" and not has_kind_option():
            log(f"train: aptnn train has no --committee-kind: skipping kind {kind}")
            continue
        for n in sorted(p["frames"], reverse=True):   # the largest training set first: reused elsewhere
            out = models / f"{kind}_n{n}.pt"
            epochs = int(min(p["max_epochs"], p["optimiser_steps"] // n))
            if not out.exists():
                args = ["train", str(lab / f"train{n}.extxyz"), "--valid", str(lab / "valid.extxyz"), "-o", str(out),
                        "--committee", str(p["members"]), "--channels", str(p["channels"]), "--cutoff",
                        str(p["cutoff"]), "--epochs", str(epochs), "--threads", "1", "--quiet", "--max-time", "3",
                        "--description", f"calibration study: {n} xTB frames of the (H2O)n cluster, kind {kind}"]
                if has_kind_option():
                    args += ["--committee-kind", kind]
                t0 = time.monotonic()
                text = aptnn(*args)
                wall = time.monotonic() - t0
                (models / f"{kind}_n{n}.train.txt").write_text(text + f"\nwall_s {wall:.1f}\n")
                log(f"train: {kind} committee of {p['members']} on {n} frames ({epochs} epochs max) in {wall:.0f} s")
                if md is not None:
                    write_info(work, md)
            info[f"{kind}_n{n}"] = str(out)
    return info


def member_dmdt(model_path: Path, traj: dict, steps: np.ndarray, batch: int = 16) -> tuple[np.ndarray, float]:
    """(M, F, 3) e·Å/fs: Σ_i P_i^(k)·v_i of every member k on the sampled steps; CPU seconds."""
    import torch

    from aptnn.predict import APTPredictor

    torch.set_num_threads(1)
    model = APTPredictor.load(str(model_path))
    frames = frames_at(traj, steps)
    out = []
    t0 = time.process_time()
    for k in range(0, len(frames), batch):
        apt = np.stack(model.predict_members(frames[k:k + batch]), axis=1)       # (M, B, N, 3, 3)
        out.append(np.einsum("mbnxz,bnz->mbx", apt, traj["velocities"][steps[k:k + batch]]))
    return np.concatenate(out, axis=1), time.process_time() - t0


def member_apts(model_path: Path, frames: list) -> np.ndarray:
    """(M, F, N, 3, 3) e."""
    from aptnn.predict import APTPredictor

    model = APTPredictor.load(str(model_path))
    return np.stack(model.predict_members(frames), axis=1)


def committees(members: int, sizes) -> dict[int, list[list[int]]]:
    """Disjoint subsets: size → [[members], …]."""
    return {s: [list(range(j * s, (j + 1) * s)) for j in range(members // s)] for s in sizes if s <= members}


def stage_predict(work: Path, p: dict, md: Path, models: dict) -> dict:
    from calib_xtb_cluster import read_trajectory

    from aptnn.io import read_frames
    from aptnn.labels import get_apt
    from aptnn.model.checkpoint import read_committee

    traj = read_trajectory(md)
    steps = sampled_steps(len(traj["time"]), p["stride"])
    meta = json.loads((work / "reference.json").read_text())
    pred = work / "predictions"
    pred.mkdir(exist_ok=True)
    lab = work / "labels"
    valid, test = read_frames(lab / "valid.extxyz"), read_frames(lab / "test.extxyz")
    out = {}
    for name, path in models.items():
        npz = pred / f"{name}.npz"
        if not npz.exists():
            dmdt, cpu = member_dmdt(Path(path), traj, steps)
            np.savez(npz, dmdt=dmdt, cpu_s=cpu, n_frames=len(steps),
                     valid_apt=member_apts(Path(path), valid), test_apt=member_apts(Path(path), test),
                     valid_ref=np.stack([get_apt(a)[0] for a in valid]),
                     test_ref=np.stack([get_apt(a)[0] for a in test]))
            log(f"predict: {name}: {len(steps)} frames × {dmdt.shape[0]} members in {cpu:.0f} s CPU "
                f"({1e3 * cpu / len(steps):.1f} ms/frame for the committee)")
        d = np.load(npz)
        committee = read_committee(path)
        for size, groups in committees(d["dmdt"].shape[0], p["sizes"]).items():
            for j, g in enumerate(groups):
                series = {"total": d["dmdt"][g].mean(0)}
                series.update({f"member{k}": d["dmdt"][m] for k, m in enumerate(g)})
                f = work / "streams" / f"{name}_c{size}_{j}.dmdt.h5"
                if not f.exists():
                    write_stream(f, series, traj["time"][steps], meta["temperature_K"], meta["natoms"],
                                 f"{path} members {g}", str(md))
        out[name] = dict(cpu_s=float(d["cpu_s"]), ms_per_frame=1e3 * float(d["cpu_s"]) / int(d["n_frames"]),
                         members=int(d["dmdt"].shape[0]), kind=committee["kind"],
                         uncertainty_scale=committee["uncertainty_scale"])
    (work / "predict.json").write_text(json.dumps(out, indent=1))
    return out


# ------------------------------------------------------------------------------------------------- analysis
def spectrum_of(path: Path, series: str, p: dict, temperature: float, blocks: int | None = None, **extra):
    """One series' spectrum with the study's settings (the members' own spectra are computed one by one here,
    independently of aptnn's committee bands, which :func:`library_bands` compares with)."""
    import inspect

    from aptnn.spectrum import compute_spectrum

    if "members" in inspect.signature(compute_spectrum).parameters:
        extra.setdefault("members", False)
    return compute_spectrum([str(path)], max_lag_fs=p["max_lag_fs"], series=[series], decompose=False,
                            n_blocks=blocks or p["blocks"], temperature_K=temperature, **extra)


def library_bands(path: Path, p: dict, temperature: float, model_sigma: np.ndarray, stat_sigma: np.ndarray,
                  total: np.ndarray) -> dict | None:
    """aptnn's own committee bands (``aptnn spectrum`` on a stream with member series, s = 1) against the ones
    computed here: largest differences relative to the largest value (None when this aptnn has no bands)."""
    import inspect

    from aptnn.spectrum import compute_spectrum

    if "members" not in inspect.signature(compute_spectrum).parameters:
        return None
    spec = compute_spectrum([str(path)], max_lag_fs=p["max_lag_fs"], decompose=False, n_blocks=p["blocks"],
                            temperature_K=temperature, members=True, model_band_scale=1.0)
    rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())  # noqa: E731
    return dict(total=rel(spec.total, total), model_std=rel(spec.model_std, model_sigma),
                stat_std=rel(spec.stat_std, stat_sigma), series=list(spec.member_series))


def spectra_from_arrays(series: dict[str, np.ndarray], dt: float, p: dict, temperature: float, natoms: int) -> dict:
    """Spectra (aptnn.spectrum) of in-memory dM/dt series via a temporary stream (same settings everywhere)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_stream(Path(tmp) / "s.dmdt.h5", series, dt * np.arange(len(next(iter(series.values())))),
                            temperature, natoms, "arrays", "arrays")
        return {name: spectrum_of(path, name, p, temperature) for name in series}


def masks(w: np.ndarray) -> dict[str, np.ndarray]:
    return {name: (w >= lo) & (w <= hi) for name, (lo, hi) in RANGES.items()}


def coverage(ref: np.ndarray, mean: np.ndarray, sigma: np.ndarray, w: np.ndarray, k: float) -> dict:
    inside = np.abs(ref - mean) <= k * sigma
    out = {name: float(inside[m].mean()) for name, m in masks(w).items()}
    m = masks(w)["0-4000"]
    weight = np.clip(ref[m], 0, None)
    out["weighted"] = float((weight * inside[m]).sum() / weight.sum())
    return out


def band_stats(ref, mean_spec, member_specs, s: float) -> dict:
    """Coverage at k = 1, 2 for the model band and the combined band, spectral difference, intensity error."""
    w = mean_spec.wavenumber
    A = np.stack([m.total for m in member_specs])
    model = s * A.std(0, ddof=1)
    stat = mean_spec.error
    combined = np.sqrt(model ** 2 + stat ** 2)
    m = masks(w)["0-4000"]
    d = float(np.abs(mean_spec.total - ref.total)[m].sum() / np.abs(mean_spec.total + ref.total)[m].sum())
    integ = lambda y: float(np.trapezoid(y[m], w[m]))  # noqa: E731
    i_ref, i_mean = integ(ref.total), integ(mean_spec.total)
    i_members = np.array([integ(a) for a in A])
    return dict(cov_model={k: coverage(ref.total, mean_spec.total, model, w, k) for k in (1, 2)},
                cov_combined={k: coverage(ref.total, mean_spec.total, combined, w, k) for k in (1, 2)},
                spectral_difference=d, intensity_rel_error=(i_mean - i_ref) / i_ref,
                intensity_rel_sigma=s * float(i_members.std(ddof=1)) / i_mean,
                z_abs=np.abs(ref.total - mean_spec.total)[m] / np.maximum(model[m], 1e-300),
                w=w[m], weight=ref.total[m], model_sigma=model, stat_sigma=stat)


def apt_scale(apt: np.ndarray, ref: np.ndarray, group: list[int]) -> tuple[dict, np.ndarray, np.ndarray]:
    """APT-level scales over all components of the frames: "z2" s² = mean (err/σ)² (the brief's definition and
    aptnn's checkpoint ``uncertainty_scale``), "rms" s² = mean err² / mean σ², "median" s = median |err/σ| / 0.6745;
    err = subset mean − xTB and σ = the subset's std (ddof=1) arrays (e)."""
    sub = apt[group]
    err = sub.mean(0) - ref
    sigma = np.maximum(sub.std(0, ddof=1), 1e-12)
    z = err / sigma
    return ({"z2": float(np.sqrt((z ** 2).mean())), "rms": float(np.sqrt((err ** 2).mean() / (sigma ** 2).mean())),
             "median": float(np.median(np.abs(z)) / 0.6745)}, err, sigma)


def spec_scale(z_abs: np.ndarray, weight: np.ndarray, q: float = 0.6827) -> float:
    """Spectrum-level scale: the ``q`` quantile of |A_ref − A_mean|/σ_model over 0–4000 cm⁻¹, each grid point
    weighted by A_ref (as the headline coverage), so that s·σ_model covers a fraction ``q`` of the intensity."""
    order = np.argsort(z_abs)
    cum = np.cumsum(np.clip(weight, 0, None)[order])
    return float(z_abs[order][np.searchsorted(cum, q * cum[-1])])


def stage_analyse(work: Path, p: dict, md: Path, models: dict) -> dict:
    meta = json.loads((work / "reference.json").read_text())
    T, natoms, dt = meta["temperature_K"], meta["natoms"], meta["dt_fs"]
    streams = work / "streams"
    ref = spectrum_of(streams / "reference.dmdt.h5", "total", p, T)
    ref_arr = np.load(work / "reference_dmdt.npy")
    half = len(ref_arr) // 2
    halves = [slice(0, half), slice(half, 2 * half)]
    ref_half = [spectra_from_arrays({"r": ref_arr[h]}, dt, p, T, natoms)["r"] for h in halves]
    results = {"reference": dict(peaks=ref.peaks(), integral=ref.integral(), summary=ref.summary())}
    if (streams / "segment_xtb_apt.dmdt.h5").exists():
        a = spectrum_of(streams / "segment_xtb_apt.dmdt.h5", "total", p, T)
        b = spectrum_of(streams / "segment_reference.dmdt.h5", "total", p, T)
        m = masks(a.wavenumber)["0-4000"]
        results["segment"] = dict(
            frames=meta.get("segment_frames"), dmdt_rel_rms=meta.get("segment_rel_rms"),
            spectral_difference=float(np.abs(a.total - b.total)[m].sum() / np.abs(a.total + b.total)[m].sum()),
            intensity_rel_difference=float((np.trapezoid(a.total[m], a.wavenumber[m])
                                            - np.trapezoid(b.total[m], b.wavenumber[m]))
                                           / np.trapezoid(b.total[m], b.wavenumber[m])))
    rows = []
    plots = {}
    for name, path in models.items():
        d = np.load(work / "predictions" / f"{name}.npz")
        M = d["dmdt"].shape[0]
        from aptnn.model.checkpoint import read_committee

        s_ckpt = read_committee(path)["uncertainty_scale"]
        for size, groups in committees(M, p["sizes"]).items():
            for j, g in enumerate(groups):
                f = streams / f"{name}_c{size}_{j}.dmdt.h5"
                mean_spec = spectrum_of(f, "total", p, T)
                member_specs = [spectrum_of(f, f"member{k}", p, T) for k in range(len(g))]
                scales, _, _ = apt_scale(d["valid_apt"], d["valid_ref"], g)
                test_scales, err_t, sig_t = apt_scale(d["test_apt"], d["test_ref"], g)
                z_test = err_t / sig_t
                s_apt, s_rms = scales["z2"], scales["rms"]
                row = dict(model=name, kind=name.split("_")[0], frames=int(name.split("_n")[1]), size=size,
                           subset=j, members=g, s_ckpt=s_ckpt if size == M else None, s_apt=s_apt, s_rms=s_rms,
                           s_median=scales["median"], test_scales=test_scales,
                           test_rmse_e=float(np.sqrt((err_t ** 2).mean())), test_mean_sigma_e=float(sig_t.mean()),
                           test_z_rms_raw=float(np.sqrt((z_test ** 2).mean())),
                           test_z_rms_apt=float(np.sqrt(((z_test / s_apt) ** 2).mean())),
                           test_rms_ratio_raw=test_scales["rms"], test_rms_ratio_cal=test_scales["rms"] / s_rms,
                           test_apt_cov1_raw=float((np.abs(z_test) <= 1).mean()),
                           test_apt_cov1_apt=float((np.abs(z_test) <= s_apt).mean()),
                           test_apt_cov1_rms=float((np.abs(z_test) <= s_rms).mean()),
                           test_apt_cov2_rms=float((np.abs(z_test) <= 2 * s_rms).mean()),
                           test_apt_cov2_apt=float((np.abs(z_test) <= 2 * s_apt).mean()))
                raw = band_stats(ref, mean_spec, member_specs, 1.0)
                for key in ("spectral_difference", "intensity_rel_error"):
                    row[key] = raw[key]
                row["intensity_rel_sigma_raw"] = raw["intensity_rel_sigma"]
                row["raw"] = {"model": raw["cov_model"], "combined": raw["cov_combined"]}
                for cal_name, s_cal in (("apt", s_apt), ("rms", s_rms)):
                    cal = band_stats(ref, mean_spec, member_specs, s_cal)
                    row[f"intensity_rel_sigma_{cal_name}"] = cal["intensity_rel_sigma"]
                    row[cal_name] = {"model": cal["cov_model"], "combined": cal["cov_combined"]}
                row["spec_z68_full"] = spec_scale(raw["z_abs"], raw["weight"])
                # spectrum-level calibration: fit on one half of the trajectory, test on the other
                hs = []
                for h in halves:
                    series = {"total": d["dmdt"][g].mean(0)[h]}
                    series.update({f"m{k}": d["dmdt"][m][h] for k, m in enumerate(g)})
                    sp = spectra_from_arrays(series, dt, p, T, natoms)
                    hs.append((sp["total"], [sp[f"m{k}"] for k in range(len(g))]))
                fitted = []
                for i in (0, 1):
                    b = band_stats(ref_half[i], *hs[i], 1.0)
                    fitted.append(spec_scale(b["z_abs"], b["weight"]))
                transfer = []
                for i in (0, 1):
                    st = band_stats(ref_half[1 - i], *hs[1 - i], fitted[i])
                    transfer.append({"model": st["cov_model"], "combined": st["cov_combined"]})
                row["s_spec_halves"] = fitted
                # common-mode check: the time-block standard error of the difference A_mean − A_ref itself
                nb = p["blocks"]
                length = len(ref_arr) // nb
                diffs = []
                for b in range(nb):
                    sl = slice(b * length, (b + 1) * length)
                    sp = spectra_from_arrays({"m": d["dmdt"][g].mean(0)[sl], "r": ref_arr[sl]}, dt, p, T, natoms)
                    diffs.append(sp["m"].total - sp["r"].total)
                diff_stat = np.std(diffs, axis=0, ddof=1) / np.sqrt(nb)

                wm = masks(mean_spec.wavenumber)["0-4000"]
                weight = np.clip(ref.total[wm], 0, None)
                row["diff_stat_over_stat"] = float((weight * diff_stat[wm]).sum() / (weight * mean_spec.error[wm]).sum())
                row["model_over_stat"] = float((weight * raw["model_sigma"][wm]).sum()
                                               / (weight * mean_spec.error[wm]).sum())
                both = np.sqrt(raw["model_sigma"] ** 2 + diff_stat ** 2)
                row["cov_model_plus_diffstat"] = {k: coverage(ref.total, mean_spec.total, both, mean_spec.wavenumber, k)
                                                  for k in (1, 2)}
                row["cov_diffstat_only"] = {k: coverage(ref.total, mean_spec.total, diff_stat, mean_spec.wavenumber, k)
                                            for k in (1, 2)}
                row["spec_transfer"] = {
                    band: {k: {r: float(np.mean([t[band][k][r] for t in transfer])) for r in transfer[0][band][k]}
                           for k in (1, 2)} for band in ("model", "combined")}
                rows.append(row)
                if j == 0:
                    plots[(name, size)] = dict(mean=mean_spec, model=raw["model_sigma"], stat=raw["stat_sigma"],
                                               s_rms=s_rms, s_ckpt=s_ckpt, diff_stat=diff_stat)
                    row["library_bands"] = library_bands(f, p, T, raw["model_sigma"], raw["stat_sigma"],
                                                         mean_spec.total)
                log(f"analyse: {name} c{size}/{j}: cov1 model {row['raw']['model'][1]['weighted']:.2f} "
                    f"(s_apt {s_apt:.2f}) D {row['spectral_difference']:.3f}")
    results["rows"] = rows
    results["settings"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}
    results["reference_meta"] = meta
    (work / "results.json").write_text(json.dumps(results, indent=1, default=float))
    plot(work, ref, plots)
    return results


def plot(work: Path, ref, plots: dict) -> None:
    """``spectra_bands.png``: reference and committee mean (top), then per model the difference A_mean − A_ref
    with the ±2σ model bands (s = 1 and s = s_rms) and the ±2σ statistical error of the difference itself."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({n for n, _ in plots}, key=lambda n: (n.split("_")[0] != "full", n.split("_")[0],
                                                          int(n.split("_n")[1])))
    if not names:
        return
    size = max(s for _, s in plots)
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(8, 2.2 * (len(names) + 1)), dpi=110, sharex=True)
    w = ref.wavenumber
    sel = w <= 4000
    axes[0].plot(w[sel], ref.total[sel], "k-", lw=1.0, label="xTB reference (dipole)")
    first = plots[(names[-1 if len(names) == 1 else 0], size)]
    axes[0].plot(w[sel], first["mean"].total[sel], "C0-", lw=0.8, label=f"{names[0]} committee mean")
    axes[0].fill_between(w[sel], (ref.total - 2 * ref.error)[sel], (ref.total + 2 * ref.error)[sel], color="0.7",
                         lw=0, label="±2σ_stat (time blocks)")
    axes[0].set_ylabel("σ(ν̃) / cm²")
    axes[0].legend(fontsize=7, loc="upper left")
    for ax, name in zip(axes[1:], names):
        d = plots[(name, size)]
        diff = d["mean"].total - ref.total
        ax.fill_between(w[sel], -2 * d["s_rms"] * d["model"][sel], 2 * d["s_rms"] * d["model"][sel], color="C1",
                        alpha=0.3, lw=0, label=f"±2σ_model, s_rms = {d['s_rms']:.2f}")
        ax.fill_between(w[sel], -2 * d["model"][sel], 2 * d["model"][sel], color="C0", alpha=0.45, lw=0,
                        label="±2σ_model, s = 1")
        if "diff_stat" in d:
            ax.plot(w[sel], 2 * d["diff_stat"][sel], "k:", lw=0.6, label="±2σ_stat of the difference")
            ax.plot(w[sel], -2 * d["diff_stat"][sel], "k:", lw=0.6)
        ax.plot(w[sel], diff[sel], "k-", lw=0.8, label=f"{name} ({size}): A_mean − A_ref")
        ax.set_ylabel("Δσ / cm²")
        ax.legend(fontsize=6, loc="upper right", ncol=2)
    axes[-1].set_xlabel("wavenumber / cm⁻¹")
    fig.tight_layout()
    fig.savefig(work / "spectra_bands.png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------- table
def aggregate(rows: list[dict], kind: str, n: int, size: int) -> dict | None:
    sel = [r for r in rows if r["kind"] == kind and r["frames"] == n and r["size"] == size]
    if not sel:
        return None

    def avg(get):
        return float(np.mean([get(r) for r in sel]))

    out = dict(n_subsets=len(sel))
    for cal in ("raw", "apt", "rms"):
        for band in ("model", "combined"):
            for k in (1, 2):
                for rng in ("0-4000", "500-4000", "weighted"):
                    out[f"{cal}_{band}_{k}_{rng}"] = avg(lambda r: r[cal][band][k][rng])
    for band in ("model", "combined"):
        for k in (1, 2):
            for rng in ("0-4000", "500-4000", "weighted"):
                out[f"spec_{band}_{k}_{rng}"] = avg(lambda r: r["spec_transfer"][band][k][rng])
    for key in ("spectral_difference", "intensity_rel_error", "intensity_rel_sigma_raw", "intensity_rel_sigma_apt",
                "intensity_rel_sigma_rms", "s_rms", "s_median", "test_rms_ratio_raw", "test_rms_ratio_cal",
                "test_apt_cov1_rms", "test_apt_cov2_rms", "s_apt", "test_rmse_e", "test_mean_sigma_e", "test_z_rms_raw", "test_z_rms_apt", "test_apt_cov1_raw",
                "test_apt_cov1_apt", "test_apt_cov2_apt", "spec_z68_full"):
        out[key] = avg(lambda r: r[key])
    out["abs_intensity_rel_error"] = avg(lambda r: abs(r["intensity_rel_error"]))
    for key in ("diff_stat_over_stat", "model_over_stat"):
        out[key] = avg(lambda r: r[key])
    for key in ("cov_model_plus_diffstat", "cov_diffstat_only"):
        for k in (1, 2):
            for rng in ("0-4000", "500-4000", "weighted"):
                out[f"{key}_{k}_{rng}"] = avg(lambda r: r[key][k][rng])
    out["s_spec"] = avg(lambda r: np.mean(r["s_spec_halves"]))
    out["s_ckpt"] = sel[0]["s_ckpt"]
    return out


CALS = {"raw": "s = 1 (raw member spread, no calibration)",
        "rms": "s = APT-level rms ratio on the validation frames, s² = mean err² / mean σ²",
        "apt": "s = APT-level mean z² on the validation frames, s² = mean (err/σ)² (the brief's and aptnn's "
               "uncertainty_scale definition)",
        "spec": "s = spectrum-level 68.3 % quantile of |ΔA|/σ_model (0–4000 cm⁻¹, weighted by A_ref) fitted on the "
                "other half of the trajectory (coverage of this half; averaged over both ways)"}
RANGE_TITLES = {"weighted": "0–4000 cm⁻¹ weighted by A_ref (headline)", "500-4000": "grid points 500–4000 cm⁻¹",
                "0-4000": "grid points 0–4000 cm⁻¹"}


def table(results: dict, out=print) -> str:
    rows = results["rows"]
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: (k != "full", k))
    lines = []
    emit = lines.append
    if "segment" in results:
        s = results["segment"]
        emit(f"APT route without ML (xTB APTs at every sampled frame, {s['frames']} frames) vs the dipole's central "
             f"differences: dM/dt rel. rms {s['dmdt_rel_rms']:.2e}; spectra: D = {s['spectral_difference']:.4f}, "
             f"integrated intensity {100 * s['intensity_rel_difference']:+.2f} %")
    for kind in kinds:
        frames = sorted({r["frames"] for r in rows if r["kind"] == kind})
        sizes = sorted({r["size"] for r in rows if r["kind"] == kind})
        head = "| frames | " + " | ".join(f"committee {z}" for z in sizes) + " |"
        rule = "|---|" + "---|" * len(sizes)
        for rng, rtitle in RANGE_TITLES.items():
            for cal in (("raw", "rms", "apt", "spec") if rng != "0-4000" else ("raw", "rms")):
                emit("")
                emit(f"[{kind}] coverage, {rtitle}; {CALS[cal]}: ±1σ/±2σ model band ‖ ±1σ/±2σ combined band")
                emit(head)
                emit(rule)
                for n in frames:
                    cells = []
                    for size in sizes:
                        a = aggregate(rows, kind, n, size)
                        cells.append("-" if a is None else
                                     f"{a[f'{cal}_model_1_{rng}']:.2f}/{a[f'{cal}_model_2_{rng}']:.2f} ‖ "
                                     f"{a[f'{cal}_combined_1_{rng}']:.2f}/{a[f'{cal}_combined_2_{rng}']:.2f}")
                    emit(f"| {n} | " + " | ".join(cells) + " |")
        emit("")
        emit(f"[{kind}] committee mean vs xTB: spectral difference D = Σ|A−B|/Σ|A+B| (0–4000 cm⁻¹); relative "
             "integrated-intensity error ΔI/I (mean of the subsets; |ΔI/I| the mean magnitude) and its predicted σ "
             "(raw / rms-calibrated / z²-calibrated)")
        emit("| frames | committee | D | ΔI/I | |ΔI/I| | σ_I raw | σ_I rms | σ_I z² |")
        emit("|---|---|---|---|---|---|---|---|")
        for n in frames:
            for size in sizes:
                a = aggregate(rows, kind, n, size)
                if a is not None:
                    emit(f"| {n} | {size} | {a['spectral_difference']:.3f} | {100 * a['intensity_rel_error']:+.2f} % | "
                         f"{100 * a['abs_intensity_rel_error']:.2f} % | {100 * a['intensity_rel_sigma_raw']:.2f} % | "
                         f"{100 * a['intensity_rel_sigma_rms']:.2f} % | {100 * a['intensity_rel_sigma_apt']:.2f} % |")
        emit("")
        emit(f"[{kind}] scales and APT-level transfer (validation → test frames): s fitted on validation (rms, "
             "mean z², median), checkpoint uncertainty_scale, test RMSE and mean σ (e), test rms ratio "
             "sqrt(mean err²/mean σ²) raw → after rms calibration, test ±1σ/±2σ component coverage after rms "
             "calibration, spectrum-level s (68 % quantile, whole trajectory; and fitted on halves)")
        emit("| frames | committee | s_rms | s_z² | s_median | s_ckpt | test RMSE | test mean σ | test ratio raw→cal "
             "| test cov 1σ/2σ | s_spec whole | s_spec halves |")
        emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in frames:
            for size in sizes:
                a = aggregate(rows, kind, n, size)
                if a is None:
                    continue
                ck = f"{a['s_ckpt']:.2f}" if a["s_ckpt"] is not None else "-"
                emit(f"| {n} | {size} | {a['s_rms']:.2f} | {a['s_apt']:.2f} | {a['s_median']:.2f} | {ck} | "
                     f"{a['test_rmse_e']:.4f} | {a['test_mean_sigma_e']:.4f} | {a['test_rms_ratio_raw']:.2f} → "
                     f"{a['test_rms_ratio_cal']:.2f} | {a['test_apt_cov1_rms']:.2f}/{a['test_apt_cov2_rms']:.2f} | "
                     f"{a['spec_z68_full']:.2f} | {a['s_spec']:.2f} |")
        emit("")
        emit(f"[{kind}] common mode: intensity-weighted σ_model/σ_stat and σ_stat(A_mean − A_ref)/σ_stat(A_mean) "
             "(time blocks of the difference itself); coverage (weighted, ±1σ/±2σ) of the band "
             "sqrt(σ_model² + σ_stat,diff²) and of σ_stat,diff alone, s = 1")
        emit("| frames | committee | σ_model/σ_stat | σ_stat,diff/σ_stat | model ⊕ stat,diff | stat,diff alone |")
        emit("|---|---|---|---|---|---|")
        for n in frames:
            for size in sizes:
                a = aggregate(rows, kind, n, size)
                if a is not None:
                    emit(f"| {n} | {size} | {a['model_over_stat']:.2f} | {a['diff_stat_over_stat']:.2f} | "
                         f"{a['cov_model_plus_diffstat_1_weighted']:.2f}/{a['cov_model_plus_diffstat_2_weighted']:.2f} | "
                         f"{a['cov_diffstat_only_1_weighted']:.2f}/{a['cov_diffstat_only_2_weighted']:.2f} |")
    text = "\n".join(lines)
    out(text)
    return text


def stage_post(work: Path, p: dict, md: Path, model: str) -> dict | None:
    """Cross-check: ``aptnn-post`` (member series, network at every frame) on the trajectory with ``model``
    against the member dM/dt computed here, and ``aptnn spectrum``'s bands on its stream."""
    name = Path(model).stem
    out = work / "streams" / f"post_{name}.dmdt.h5"
    help_text = subprocess.run([PY, "-m", "aptnn.cli_post", "--help"], capture_output=True, text=True).stdout
    if "member" not in open(Path(__import__("aptnn").__file__).parent / "estimators.py").read():
        log("post: this aptnn-post writes no member series: cross-check skipped")
        return None
    meta = json.loads((work / "reference.json").read_text())
    if not out.exists():
        args = [PY, "-m", "aptnn.cli_post", str(md), "--model", str(model), "-o", str(out), "--stride",
                str(p["stride"]), "--threads", "1", "--quiet", "--temperature", f"{meta['temperature_K']:.6f}"]
        if "--apt-every " in help_text or "--apt-every K" in help_text:
            args += ["--apt-every", "1"]
        t0 = time.monotonic()
        res = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        if res.returncode:
            log(f"post: aptnn-post failed: {res.stderr[-500:]}")
            return None
        log(f"post: aptnn-post {name} in {time.monotonic() - t0:.0f} s wall")
    import h5py

    with h5py.File(out, "r") as f:
        series = [x.decode() if isinstance(x, bytes) else str(x) for x in f["series"][()]]
        dmdt, t = f["dMdt"][()], f["time"][()]
    d = np.load(work / "predictions" / f"{name}.npz")
    with h5py.File(md, "r") as f:
        n_steps, dt_md = f["particles/cluster/position/value"].shape[0], float(f.attrs["dt_fs"])
    mine_t = sampled_steps(n_steps, p["stride"]) * dt_md
    common, ia, ib = np.intersect1d(np.round(t, 6), np.round(mine_t, 6), return_indices=True)
    members = [k for k, sname in enumerate(series) if sname.startswith("member")]
    theirs = dmdt[ia][:, members].transpose(1, 0, 2)
    ours = d["dmdt"][:, ib[ib < d["dmdt"].shape[1]]]
    n = min(theirs.shape[1], ours.shape[1])
    rel = float(np.abs(theirs[:, :n] - ours[:, :n]).max() / np.abs(ours[:, :n]).max())
    total_rel = float(np.abs(dmdt[ia][:n, series.index("total")] - ours[:, :n].mean(0)).max() / np.abs(ours).max())
    res = dict(stream=str(out), series=series, frames_compared=int(n), member_max_rel_diff=rel,
               total_max_rel_diff=total_rel)
    text = aptnn("spectrum", str(out), "-o", str(work / f"post_{name}_spectrum.csv"), "--max-lag",
                 str(p["max_lag_fs"]), "--blocks", str(p["blocks"]), "--no-decompose")
    res["aptnn_spectrum"] = text.strip()
    (work / f"post_{name}.json").write_text(json.dumps(res, indent=1))
    log(f"post: aptnn-post member series vs ours: max rel. difference {rel:.1e} over {n} frames "
        f"(total {total_rel:.1e}); aptnn spectrum: {text.strip().splitlines()[-1] if text.strip() else ''}")
    return res


def write_info(work: Path, md: Path) -> None:
    """``WORKDIR/trajectory_info.md``: the trajectory file, labelled frames and models, for reuse."""
    import h5py

    with h5py.File(md, "r") as f:
        attrs = dict(f.attrs)
        n_steps = f["particles/cluster/position/value"].shape[0]
        numbers = f["particles/cluster/species"][()]
    pick = json.loads((work / "labels" / "pick.json").read_text()) if (work / "labels" / "pick.json").exists() else {}
    checks = json.loads((work / "checks.json").read_text()) if (work / "checks.json").exists() else {}
    ref = json.loads((work / "reference.json").read_text()) if (work / "reference.json").exists() else {}
    lines = [
        "# Water-cluster GFN2-xTB trajectory (committee calibration study)",
        "",
        "Made by `benchmarks/committee_calibration.py` (MD: `benchmarks/calib_xtb_cluster.py`).",
        "",
        f"* **File**: `{md.resolve()}`, H5MD (HDF5), read directly by `aptnn-post {md.name}` "
        "(units from the `unit` attributes; no box: open boundaries).",
        f"* **System**: (H2O){int(attrs.get('n_waters', len(numbers) // 3))}, {len(numbers)} atoms, order O H H per "
        "water, neutral, open boundaries.",
        f"* **Dynamics**: {attrs.get('calculator', '')}; {attrs.get('equilibration', '')}; "
        f"then NVE with ASE velocity Verlet, **time step {attrs.get('dt_fs')} fs**, **{n_steps} stored steps** "
        f"(steps 0…{n_steps - 1}, every step stored), {(n_steps - 1) * float(attrs.get('dt_fs', 0.5)) / 1000:.1f} ps.",
        f"* **Thermodynamics**: mean kinetic temperature {float(attrs.get('mean_T_K', float('nan'))):.1f} K (3N−6 "
        f"degrees of freedom); total-energy drift {float(attrs.get('energy_drift_eV', float('nan'))):.2e} eV over the run, "
        f"fluctuation (std) {float(attrs.get('energy_std_eV', float('nan'))):.2e} eV; cost "
        f"{float(attrs.get('ms_per_step', float('nan'))):.1f} ms CPU per step (1 thread).",
        "",
        "Arrays (first axis = stored step k, time = k·dt):",
        "",
        "| dataset | shape | unit | meaning |",
        "|---|---|---|---|",
        f"| `/particles/cluster/position/value` | ({n_steps}, {len(numbers)}, 3) | Å | positions (unwrapped, float64) |",
        f"| `/particles/cluster/velocity/value` | ({n_steps}, {len(numbers)}, 3) | Å/fs | velocities at the same instant |",
        f"| `/particles/cluster/position/time`, `…/step` | ({n_steps},) | fs, – | time and step number |",
        f"| `/particles/cluster/species` | ({len(numbers)},) | – | atomic numbers |",
        f"| `/observables/dipole/value` | ({n_steps}, 3) | e·Å | xTB dipole of the positions (origin-independent, neutral) |",
        f"| `/observables/potential_energy/value`, `kinetic_energy` | ({n_steps},) | eV | energies |",
        f"| `/observables/temperature/value` | ({n_steps},) | K | kinetic temperature (3N−6 dof) |",
        "",
        "Python: `h5py.File(path)['observables/dipole/value'][()]`, or `read_trajectory(path)` in "
        "`benchmarks/calib_xtb_cluster.py` (dict of numpy arrays).",
        "",
        "## Labelled frames (xTB APTs, `aptnn label --backend xtb --route field`)",
        "",
        "extxyz with per-atom `apt` (N×9, e, row-major P[ξ,ζ] = ∂M_ξ/∂r_ζ), `velocities` (Å/fs) and info `step`, "
        "`time_fs`, `dipole_eA`; frames are stored steps of the file above:",
        "",
    ]
    for role in ("train", "valid", "test"):
        if role in pick:
            lines.append(f"* `{(work / 'labels' / (role + '.extxyz')).resolve()}`: {len(pick[role])} {role} frames, "
                         f"steps {pick[role]}")
    for key in sorted(k for k in pick if k.startswith("train") and k != "train"):
        lines.append(f"* `{(work / 'labels' / (key + '.extxyz')).resolve()}`: the {key[5:]}-frame training subset, "
                     f"steps {pick[key]}")
    if checks:
        lines += ["", f"Check: Σ_i P_i^xTB·v_i against central differences (M(t+Δt) − M(t−Δt))/(2Δt) of the stored "
                      f"dipole on these {checks['n_frames']} frames: relative rms difference "
                      f"{checks['rel_rms_pv_vs_cd']:.2e} (median per frame {checks['rel_median']:.2e}, max "
                      f"{checks['rel_max']:.2e}); field vs displacement route on one frame: max "
                      f"{checks['field_vs_displacement_max_e']:.1e} e."]
    if ref:
        lines += ["", "## Reference spectrum input",
                  "", f"`{(work / 'streams' / 'reference.dmdt.h5').resolve()}`: aptnn dM/dt stream (series `total`, e·Å/fs) "
                      f"of the xTB dipole's central differences at every {ref['stride']}th step (steps "
                      f"{ref['first_step']}…{ref['last_step']}, dt {ref['dt_fs']} fs, {ref['n_frames']} frames), "
                      f"temperature attribute {ref['temperature_K']:.1f} K (mean kinetic), no volume (cross-section "
                      "in cm²). `aptnn spectrum` on it gives the reference spectrum; the study uses --max-lag "
                      "1000 fs, Hann window, 8 blocks."]
    models = sorted((work / "models").glob("*.pt")) if (work / "models").exists() else []
    if models:
        lines += ["", "## Committee checkpoints", "",
                  "Channels 4, cutoff 5 Å, 2 layers, l ≤ 2, trained by `aptnn train … --committee 8 --valid "
                  "valid.extxyz` (members k = seed k); `full_n16.pt` is the 16-frame model of independent networks, "
                  "`heads_n*.pt` shared-trunk committees:", ""]
        from aptnn.model.checkpoint import read_committee

        for m in models:
            info = read_committee(m)
            kind, n = m.stem.split("_n")
            text = (m.with_suffix(".train.txt")).read_text() if m.with_suffix(".train.txt").exists() else ""
            rmse = [float(x.split("RMSE ")[1].split(" e")[0]) for x in text.splitlines() if "RMSE" in x]
            lines.append(f"* `{m.resolve()}`: kind {info['kind']}, {info['n_members']} members, trained on "
                         f"`labels/train{n}.extxyz` ({n} frames); validation RMSE "
                         + (f"{rmse[0]:.4f} e (the shared network's best epoch)" if len(rmse) == 1 else
                            f"{min(rmse):.4f}–{max(rmse):.4f} e per member" if rmse else "?")
                         + f"; checkpoint uncertainty_scale {info['uncertainty_scale']:.3f}")
        streams = work / "streams"
        lines += ["", f"Member dM/dt streams of every committee on the trajectory (series `total` = committee mean, "
                      f"`member<k>`, aptnn-post layout; c<size>_<j> = disjoint member subsets): `{streams.resolve()}/"
                      "<kind>_n<frames>_c<size>_<j>.dmdt.h5`; arrays in `predictions/<model>.npz` (`dmdt` (M, F, 3) "
                      "e·Å/fs at the reference's frames, member APTs on the valid/test frames)."]
    (work / "trajectory_info.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir")
    parser.add_argument("--quick", action="store_true", help="(H2O)8, 1.5 ps, 4 and 8 frames, 4 members: minutes")
    parser.add_argument("--md", default=None, help="reuse this trajectory (H5MD of calib_xtb_cluster.py)")
    parser.add_argument("--kinds", default="full,heads", help="committee kinds (heads only if aptnn has them)")
    parser.add_argument("--stages", default="md,label,checks,reference,train,predict,post,analyse")
    parser.add_argument("--xtb-apt-frames", type=int, default=None,
                        help="sampled frames with xTB APTs for the no-ML check of the APT route")
    args = parser.parse_args()
    try:
        os.nice(10)
    except OSError:
        pass
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    p = dict(SIZES_QUICK if args.quick else SIZES_FULL)
    if args.xtb_apt_frames is not None:
        p["xtb_apt_frames"] = args.xtb_apt_frames
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    kinds = args.kinds.split(",")
    md = stage_md(work, p, args.md) if "md" in stages or args.md else work / "cluster_md.h5"
    if "label" in stages:
        stage_label(work, p, md)
    if "checks" in stages:
        stage_checks(work, p, md)
    if "reference" in stages:
        stage_reference(work, p, md)
    if (work / "labels" / "pick.json").exists():
        write_info(work, md)
    models = stage_train(work, p, kinds, md) if "train" in stages else {
        f.stem: str(f) for f in sorted((work / "models").glob("*.pt"))}
    if models:
        write_info(work, md)
    if "predict" in stages:
        stage_predict(work, p, md, models)
    if "post" in stages and models:
        big = [m for m in models if m.startswith("full_")]
        if big:
            stage_post(work, p, md, models[max(big, key=lambda m: int(m.split("_n")[1]))])
    if "analyse" in stages:
        results = stage_analyse(work, p, md, models)
        text = table(results)
        (work / "table.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
