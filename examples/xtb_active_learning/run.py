"""Active learning with GFN2-xTB labels on a short MD trajectory of a water cluster.

    python run.py [--steps 3000] [--out work] [--holdout end|spread]

1. Langevin MD of (H2O)6 at 300 K with GFN2-xTB (tblite, ASE), 0.5 fs, one frame every 20 steps;
2. 10 frames are labelled with xTB (field route) as the held-out test set: the last ones (``end``, a test of
   extrapolation in time) or every 14th (``spread``, frames across the run); the MD is reused if
   OUT/trajectory.extxyz exists;
3. `aptnn learn` from the first frames: committee selection, committee-fps (diverse among the uncertain)
   and, for comparison, random selection;
4. prints the labels each needed to reach a test RMSE below 0.02 e.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from scipy.spatial.transform import Rotation

from aptnn.label.run import label_frames
from aptnn.label.xtb import xtb_factory
from aptnn.learn import LearnSettings, learn


def cluster(n: int = 6, seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    h2o = molecule("H2O")
    h2o.positions -= h2o.get_center_of_mass()
    atoms = Atoms()
    for k, idx in enumerate(np.ndindex(2, 2, 2)):
        if k == n:
            break
        w = h2o.copy()
        w.positions = Rotation.random(random_state=int(rng.integers(1 << 30))).apply(w.positions)
        w.positions += np.array(idx) * 2.9
        atoms += w
    return atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", default="work")
    parser.add_argument("--holdout", choices=["end", "spread"], default="end")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    frames = read(out / "trajectory.extxyz", ":") if (out / "trajectory.extxyz").exists() else md_frames(args.steps)
    write(out / "trajectory.extxyz", frames)
    frames = frames[5:]  # skip the first 100 fs
    if args.holdout == "end":
        pool, held_out = frames[:-10], frames[-10:]
    else:
        held = set(range(7, len(frames), 14))
        pool, held_out = [f for k, f in enumerate(frames) if k not in held], [frames[k] for k in sorted(held)]
    test, _ = label_frames(held_out, progress=False)
    print(f"MD: {len(frames) + 5} frames of (H2O)6; pool {len(pool)}, test {len(test)} ({args.holdout}; xTB labels)")
    results = {}
    for method in ("committee", "committee-fps", "random"):
        rows = learn(pool, test, out / f"{method}-{args.holdout}",
                     LearnSettings(initial=4, per_round=4, rounds=6, method=method, epochs=80, channels=4,
                                   cutoff=5.0))
        results[method] = [(int(r["labels"]), float(r["test_rmse_e"])) for r in rows]
        print(method, " ".join(f"{n}:{e:.4f}" for n, e in results[method]))
    for method, curve in results.items():
        reached = [n for n, e in curve if e < 0.02]
        print(f"{method}: test RMSE < 0.02 e after {reached[0] if reached else 'more than ' + str(curve[-1][0])} "
              f"labels; best {min(e for _, e in curve):.4f} e")


def md_frames(steps: int) -> list[Atoms]:
    """GFN2-xTB Langevin MD of (H2O)6 at 300 K, 0.5 fs, a frame every 20 steps."""
    atoms = cluster()
    atoms.calc = xtb_factory()(None)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    md = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, fixcm=False,
                  rng=np.random.default_rng(2))
    frames = []
    md.attach(lambda: frames.append(atoms.copy()), interval=20)
    md.run(steps)
    for f in frames:
        f.calc = None
    return frames


if __name__ == "__main__":
    main()
