"""Evaluation: component-wise RMSE (e) of predicted vs reference APTs, per species and per irrep."""
from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from aptnn.errors import InputError
from aptnn.labels import APT_KEY, get_apt
from aptnn.model.tensor import IRREP_SLICES, change_of_basis


def check_labelled(frames: list[Atoms], source: str) -> int:
    """Number of labelled atoms (finite ``apt`` rows, e) in ``frames``; an :class:`InputError` naming
    ``source`` when there is none (no ``apt`` array, or only NaN)."""
    n = sum(int(get_apt(atoms)[1].sum()) for atoms in frames)
    if n == 0:
        has = any(APT_KEY in atoms.arrays for atoms in frames)
        raise InputError(f"no APT labels to evaluate against ({'every' if has else 'no'} per-atom '{APT_KEY}' "
                         f"{'row is NaN' if has else 'array'}: 9 numbers per atom, e)", source)
    return n


def metrics(references: list[Atoms], predictions: list[np.ndarray]) -> dict:
    """RMSE over all labelled atoms and 9 components (the paper's number), per species and per irrep.

    ``predictions``: list of (N, 3, 3) arrays in e. Returns a dict of floats in e plus counts.
    """
    q = change_of_basis().numpy()
    ref, pred, numbers = [], [], []
    for atoms, p in zip(references, predictions):
        apt, mask = get_apt(atoms)
        ref.append(apt[mask])
        pred.append(np.asarray(p)[mask])
        numbers.append(atoms.numbers[mask])
    ref, pred, numbers = np.concatenate(ref), np.concatenate(pred), np.concatenate(numbers)
    if len(ref) == 0:
        raise InputError("no labelled atoms to evaluate")
    diff = pred - ref
    out: dict = {"rmse_e": float(np.sqrt(np.mean(diff**2))), "n_atoms": int(len(ref)),
                 "mae_e": float(np.mean(np.abs(diff))),
                 "rmse_transposed_e": float(np.sqrt(np.mean((pred.transpose(0, 2, 1) - ref) ** 2)))}
    for z in np.unique(numbers):
        sel = numbers == z
        out[f"rmse_{chemical_symbols[z]}_e"] = float(np.sqrt(np.mean(diff[sel] ** 2)))
    yd = np.einsum("nij,kij->nk", diff, q)
    for name, sl in IRREP_SLICES.items():
        out[f"rmse_{name}_e"] = float(np.sqrt(np.mean(yd[:, sl] ** 2)))
    return out


def format_metrics(m: dict) -> str:
    """A small human-readable table of :func:`metrics` (all values in e)."""
    lines = [f"labelled atoms: {m['n_atoms']}", f"component RMSE: {m['rmse_e']:.5f} e   MAE: {m['mae_e']:.5f} e"]
    lines += [f"  {k[5:-2]:>10s}: {v:.5f} e" for k, v in m.items()
              if k.startswith("rmse_") and k not in ("rmse_e", "rmse_transposed_e")]
    lines.append(f"(RMSE against transposed references: {m['rmse_transposed_e']:.5f} e)")
    return "\n".join(lines)


def parity_plot(references: list[Atoms], predictions: list[np.ndarray], path: str, title: str = "") -> None:
    """Scatter predicted vs reference components (e) per species; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    refs, preds, zs = [], [], []
    for atoms, p in zip(references, predictions):
        apt, mask = get_apt(atoms)
        refs.append(apt[mask].reshape(-1, 9))
        preds.append(np.asarray(p)[mask].reshape(-1, 9))
        zs.append(atoms.numbers[mask])
    refs, preds, zs = np.concatenate(refs), np.concatenate(preds), np.concatenate(zs)
    for z in np.unique(zs):
        sel = zs == z
        err = math.sqrt(float(np.mean((preds[sel] - refs[sel]) ** 2)))
        ax.scatter(refs[sel].ravel(), preds[sel].ravel(), s=2, alpha=0.4,
                   label=f"{chemical_symbols[z]} (RMSE {err:.4f} e)")
    lo, hi = float(min(refs.min(), preds.min())), float(max(refs.max(), preds.max()))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel("reference APT component P[ξ,ζ] / e")
    ax.set_ylabel("predicted APT component P[ξ,ζ] / e")
    ax.set_title(title or "APT parity")
    ax.legend(markerscale=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
