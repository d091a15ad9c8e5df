"""Prediction: frames → APTs with a trained (committee) model. Python API behind ``aptnn predict``."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from ase import Atoms

from aptnn import keys
from aptnn.errors import InputError
from aptnn.estimators import response
from aptnn.graph import collate, frame_graph
from aptnn.labels import APT_KEY, APT_STD_KEY, check_frame
from aptnn.model.checkpoint import load_checkpoint
from aptnn.model.network import APTNetwork, HeadMember, run_committee
from aptnn.progress import progress_bar


class APTPredictor:
    """A loaded model (one or several committee members) that predicts APTs in e for ASE frames.

    >>> model = aptnn.load_model("water-rpbe-d3")
    >>> apt = model.predict(atoms)          # (N, 3, 3), P[i, ξ, ζ] = ∂M_ξ/∂r_iζ in e

    Committees of either kind look the same here: "full" (independent networks) or "heads" (one shared trunk
    with a readout head per member, evaluated once per call); ``members`` then holds :class:`HeadMember` views.
    The committee std (``apt_std``) is returned raw; :attr:`uncertainty_scale` is the factor, fitted on
    validation frames at training time, that consumers multiply it by for calibrated error bars.
    """

    def __init__(self, members: list[APTNetwork] | list[HeadMember], training: dict | None = None,
                 device: str = "cpu", fingerprint: str | None = None):
        """``fingerprint``: the model's identity recorded in stream files (``name sha256:<hex>``; set by
        :meth:`load`, computed once), None for a model built in memory."""
        self.members = members
        nets = [m.network if isinstance(m, HeadMember) else m for m in members]
        self._networks = list({id(n): n for n in nets}.values())   # distinct networks, each run once per call
        self.fingerprint = fingerprint
        self.training = training or {}
        self.device = device
        self.config = members[0].config
        self.dtype = next(members[0].parameters()).dtype
        self._eager: list | None = None   # original modules while compiled, until the first call succeeded

    def compile(self) -> "APTPredictor":
        """Compile the per-edge tensor products and radial networks with ``torch.compile`` (dynamic shapes).

        Measured on the 2-core CPU machine (384-atom water, shipped model): 82 → 60 ms per frame on one thread,
        50 → 32 ms wall on two, after a one-off compilation of ~10 s (again when the thread count changes);
        results agree with eager mode to float32 rounding. Worth it for long runs (aptnn-post, aptnn-ipi).
        Needs a C++ compiler; if compilation fails, the model falls back to eager mode with a warning.
        Either committee kind: every distinct network's layers are compiled once (one shared trunk for "heads").
        """
        self._eager = []
        for network in self._networks:
            for layer in network.layers:
                self._eager.append((layer, layer.tp, layer.radial))
                layer.tp = torch.compile(layer.tp, dynamic=True)
                layer.radial = torch.compile(layer.radial, dynamic=True)
        return self

    @property
    def committee_kind(self) -> str:
        """"heads" (shared trunk) or "full" (independent networks; also a single model)."""
        return "heads" if isinstance(self.members[0], HeadMember) else "full"

    @property
    def uncertainty_scale(self) -> float:
        """Dimensionless factor s for the committee std: calibrated σ = s × ``apt_std`` (e), fitted on the
        validation frames when the committee was trained (training metadata ``uncertainty_scale``); 1.0 for
        a single model, a committee trained without validation frames, or an older checkpoint."""
        return float(self.training.get("uncertainty_scale", 1.0))

    def _run_members(self, batch, charge, targets=None):
        with torch.no_grad():
            if self._eager is None:
                return run_committee(self.members, batch, charge, targets)
            try:  # the first call compiles; later calls run the compiled code
                out = run_committee(self.members, batch, charge, targets)
            except Exception as err:  # noqa: BLE001 — any compiler failure: run eagerly instead
                import warnings

                for layer, tp, radial in self._eager:
                    layer.tp, layer.radial = tp, radial
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); running the model "
                              "without compilation", stacklevel=3)
                out = run_committee(self.members, batch, charge, targets)
            self._eager = None
            return out

    @classmethod
    def load(cls, name_or_path: str, dtype: str | None = None, device: str = "cpu",
             compile: bool = False) -> "APTPredictor":
        """Load a shipped model by name or a checkpoint file; ``dtype`` "float32" (default) or "float64";
        ``compile``: see :meth:`compile`."""
        from aptnn.model.fingerprint import model_fingerprint

        members, training = load_checkpoint(name_or_path, getattr(torch, dtype or "float32"), device)
        predictor = cls(members, training, device, fingerprint=model_fingerprint(str(name_or_path)))
        return predictor.compile() if compile else predictor

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    @property
    def cutoff(self) -> float:
        return float(self.config.cutoff)

    @property
    def targets(self) -> list[str]:
        """What the model predicts: "apt" (e) and/or "pgt" (e·Å/V, polarisability gradients for Raman)."""
        return list(self.config.targets)

    @property
    def has_pgt(self) -> bool:
        """The model has a PGT head: streams can carry dα/dt (Raman) beside dM/dt."""
        return "pgt" in self.config.targets

    def streams_pgt(self, raman: bool | None) -> bool:
        """Whether a producer streams dα/dt as well: ``raman`` True (the model must have a PGT head), False, or
        None (whenever the model has one). The model must predict APTs in any case (dM/dt is always streamed)."""
        self.require("apt")
        if raman:
            self.require("pgt")
        return bool(self.has_pgt if raman is None else raman)

    def require(self, target: str) -> None:
        """An :class:`InputError` unless the model predicts ``target`` ("apt" or "pgt")."""
        if target not in self.config.targets:
            what = {"apt": "APTs (IR)", "pgt": "polarisability gradients (PGTs, Raman)"}[target]
            raise InputError(f"the model predicts {' and '.join(self.targets)} only, not {what}: use a model "
                             f"trained with --targets {target}" + ("" if target == "apt" else ",apt"))

    def _evaluate(self, frames: list[Atoms], source: str | None, first_index: int,
                  targets: tuple[str, ...] = ("apt",)) -> dict[str, torch.Tensor]:
        """The model's ``targets`` for all frames, checked and batched into one model call (one trunk
        evaluation): {"apt": (n_members, Σ N_k, 3, 3) e, "pgt": (n_members, Σ N_k, 3, 3, 3) e·Å/V}, float64."""
        for target in targets:
            self.require(target)
        graphs = []
        for k, atoms in enumerate(frames):
            check_frame(atoms, source, first_index + k)
            graphs.append(frame_graph(atoms, self.species, self.cutoff, source, first_index + k))
        batch = collate(graphs, dtype=self.dtype, device=self.device)
        charge = torch.tensor([float(a.info.get(keys.CHARGE, 0.0)) for a in frames], dtype=self.dtype,
                              device=self.device)
        if targets == ("apt",):   # the historical call, bit-identical for APT-only models
            out = {"apt": self._run_members(batch, charge)}
        else:
            out = self._run_members(batch, charge, targets)
        out = {t: v.double().cpu() for t, v in out.items()}
        for target, value in out.items():
            finite = torch.isfinite(value).flatten(2).all(-1).all(0)   # (Σ N_k,)
            if not bool(finite.all()):
                atom = int(torch.argmin(finite.int()))
                k = int(np.searchsorted(np.cumsum([len(a) for a in frames]), atom, side="right"))
                local = atom - sum(len(a) for a in frames[:k])
                raise InputError(f"the model gave non-finite {target.upper()}s (NaN/inf) for atom {local}", source,
                                 first_index + k)
        return out

    def _members(self, frames: list[Atoms], source: str | None, first_index: int,
                 with_pgt: bool = False) -> torch.Tensor:
        """(n_members, Σ N_k, 3, 3) float64 APTs (e) of all frames; ``with_pgt``: the response rows
        (n_members, Σ N_k, 9, 3) of :func:`aptnn.estimators.response` instead (APT rows in e, then the PGT's
        Voigt rows in e·Å/V), APTs and PGTs from one trunk evaluation."""
        if not with_pgt:
            return self._evaluate(frames, source, first_index)["apt"]
        out = self._evaluate(frames, source, first_index, ("apt", "pgt"))
        return torch.from_numpy(response(out["apt"].numpy(), out["pgt"].numpy()))

    @staticmethod
    def _mean_std(preds: torch.Tensor, frames: list[Atoms]) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Committee mean and raw std (None for one member) of (n_members, Σ N_k, …), split per frame."""
        splits = np.cumsum([len(a) for a in frames])[:-1]
        means = np.split(preds.mean(0).numpy(), splits)
        stds = np.split(preds.std(0, unbiased=True).numpy(), splits) if len(preds) > 1 else None
        return means, stds

    def predict_batch(self, frames: list[Atoms], source: str | None = None, first_index: int = 0,
                      with_pgt: bool = False) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """APTs for several frames at once: lists of (N_k, 3, 3) means and committee std in e (None for one
        member). The std is raw (unbiased over the members); multiply by :attr:`uncertainty_scale` for the
        calibrated uncertainty. ``with_pgt``: (N_k, 9, 3) response rows instead (see :meth:`_members`)."""
        return self._mean_std(self._members(frames, source, first_index, with_pgt), frames)

    def predict_members(self, frames: list[Atoms], source: str | None = None,
                        first_index: int = 0, with_pgt: bool = False) -> list[np.ndarray]:
        """Every committee member's APTs: one (n_members, N_k, 3, 3) array per frame, in e (``with_pgt``:
        (n_members, N_k, 9, 3) response rows, see :meth:`_members`)."""
        preds = self._members(frames, source, first_index, with_pgt).numpy()
        return np.split(preds, np.cumsum([len(a) for a in frames])[:-1], axis=1)

    def predict(self, atoms: Atoms) -> np.ndarray:
        """APTs of one frame: (N, 3, 3) in e, P[i, ξ, ζ] = ∂M_ξ/∂r_iζ (committee mean)."""
        return self.predict_batch([atoms])[0][0]

    def predict_pgt_batch(self, frames: list[Atoms], source: str | None = None, first_index: int = 0,
                          ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """PGTs for several frames: lists of (N_k, 3, 3, 3) committee means and raw std (None for one member)
        in e·Å/V, G[i, ξ, η, ζ] = ∂α_ξη/∂r_iζ (a model with a PGT head; sum rule Σ_i G_i = 0)."""
        return self._mean_std(self._evaluate(frames, source, first_index, ("pgt",))["pgt"], frames)

    def predict_pgt(self, atoms: Atoms) -> np.ndarray:
        """PGTs of one frame: (N, 3, 3, 3) in e·Å/V, G[i, ξ, η, ζ] = ∂α_ξη/∂r_iζ (committee mean)."""
        return self.predict_pgt_batch([atoms])[0][0]

    def annotate(self, frames: Iterable[Atoms], batch_size: int = 4, source: str | None = None,
                 progress: bool = True, total: int | None = None) -> list[Atoms]:
        """Copies of ``frames`` with what the model predicts: ``apt`` (N×9 row-major, e) and, for a model with a
        PGT head, ``pgt`` (N×27 row-major, e·Å/V); committees add the raw std as ``apt_std`` / ``pgt_std``."""
        frames = list(frames)
        out = []
        bar = progress_bar(total=total or len(frames), desc="predict", unit="frame", disable=not progress)
        sizes = {"apt": 9, "pgt": 27}
        names = {"apt": (APT_KEY, APT_STD_KEY), "pgt": (keys.PGT, keys.PGT_STD)}
        for k in range(0, len(frames), batch_size):
            chunk = frames[k:k + batch_size]
            results = {t: self._mean_std(v, chunk) for t, v in
                       self._evaluate(chunk, source, k, tuple(self.targets)).items()}
            for j, atoms in enumerate(chunk):
                atoms = atoms.copy()
                for target, (means, stds) in results.items():
                    for key, values in zip(names[target], (means, stds)):
                        atoms.arrays.pop(key, None)
                        if values is not None:
                            atoms.arrays[key] = values[j].reshape(len(atoms), sizes[target]).copy()
                out.append(atoms)
            bar.update(len(chunk))
        bar.close()
        return out
