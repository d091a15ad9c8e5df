"""Prediction: frames → APTs with a trained (committee) model. Python API behind ``aptnn predict``."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from ase import Atoms
from tqdm.auto import tqdm

from aptnn.frames import APT_KEY, APT_STD_KEY, check_frame, set_apt
from aptnn.graph import collate, frame_graph
from aptnn.model.checkpoint import load_checkpoint
from aptnn.model.network import APTNetwork


class APTPredictor:
    """A loaded model (one or several committee members) that predicts APTs in e for ASE frames.

    >>> model = aptnn.load_model("water-rpbe-d3")
    >>> apt = model.predict(atoms)          # (N, 3, 3), P[i, ξ, ζ] = ∂M_ξ/∂r_iζ in e
    """

    def __init__(self, members: list[APTNetwork], training: dict | None = None, device: str = "cpu"):
        self.members = members
        self.training = training or {}
        self.device = device
        self.config = members[0].config
        self.dtype = next(members[0].parameters()).dtype

    @classmethod
    def load(cls, name_or_path: str, dtype: str | None = None, device: str = "cpu") -> "APTPredictor":
        """Load a shipped model by name or a checkpoint file; ``dtype`` "float32" (default) or "float64"."""
        members, training = load_checkpoint(name_or_path, getattr(torch, dtype or "float32"), device)
        return cls(members, training, device)

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    @property
    def cutoff(self) -> float:
        return float(self.config.cutoff)

    def predict_batch(self, frames: list[Atoms], source: str | None = None, first_index: int = 0,
                      ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """APTs for several frames at once: lists of (N_k, 3, 3) means and committee std (None for one member)."""
        graphs = []
        for k, atoms in enumerate(frames):
            check_frame(atoms, source, first_index + k)
            graphs.append(frame_graph(atoms, self.species, self.cutoff, source, first_index + k))
        batch = collate(graphs, dtype=self.dtype, device=self.device)
        charge = torch.tensor([float(a.info.get("charge", 0.0)) for a in frames], dtype=self.dtype,
                              device=self.device)
        with torch.no_grad():
            preds = torch.stack([m(batch, charge) for m in self.members]).double().cpu()
        mean = preds.mean(0)
        std = preds.std(0, unbiased=True) if len(self.members) > 1 else None
        splits = np.cumsum([len(a) for a in frames])[:-1]
        means = np.split(mean.numpy(), splits)
        stds = np.split(std.numpy(), splits) if std is not None else None
        return means, stds

    def predict(self, atoms: Atoms) -> np.ndarray:
        """APTs of one frame: (N, 3, 3) in e, P[i, ξ, ζ] = ∂M_ξ/∂r_iζ (committee mean)."""
        return self.predict_batch([atoms])[0][0]

    def annotate(self, frames: Iterable[Atoms], batch_size: int = 4, source: str | None = None,
                 progress: bool = True, total: int | None = None) -> list[Atoms]:
        """Copies of ``frames`` with ``apt`` (and ``apt_std`` for committees) arrays, N×9 row-major, e."""
        frames = list(frames)
        out = []
        bar = tqdm(total=total or len(frames), desc="predict", unit="frame", disable=not progress)
        for k in range(0, len(frames), batch_size):
            chunk = frames[k:k + batch_size]
            means, stds = self.predict_batch(chunk, source, k)
            for j, atoms in enumerate(chunk):
                atoms = atoms.copy()
                atoms.arrays.pop(APT_KEY, None)
                set_apt(atoms, means[j], APT_KEY)
                if stds is not None:
                    set_apt(atoms, stds[j], APT_STD_KEY)
                out.append(atoms)
            bar.update(len(chunk))
        bar.close()
        return out
