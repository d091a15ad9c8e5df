"""A checkpoint seen without torch: the model's identity recorded in stream files (name + SHA-256 of its bytes),
the species its stored config names, and its committee (kind, size, uncertainty scale)."""
from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path


def model_fingerprint(name: str) -> str:
    """``name sha256:<hex>`` of the checkpoint file (a path or a shipped model's name), recorded in streams."""
    from aptnn.model.checkpoint import resolve

    digest = hashlib.sha256(Path(resolve(name)).read_bytes()).hexdigest()
    return f"{name} sha256:{digest}"


class _ConfigOnly(pickle.Unpickler):
    """Reads a torch checkpoint's pickle without torch: tensors become None (their data is never read)."""

    def find_class(self, module, name):
        if module.split(".")[0] in ("torch", "collections", "numpy"):
            return lambda *args, **kwargs: None
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        return None


def _stored_payload(path: str | Path) -> dict:
    """The checkpoint's top-level dict with every tensor (and state dict) read as None; raises on any problem."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
        payload = _ConfigOnly(z.open(name)).load()
    if not isinstance(payload, dict):
        raise ValueError("not a dict")
    return payload


def stored_species(path: str | Path) -> list[int] | None:
    """Atomic numbers the checkpoint at ``path`` knows, read in milliseconds from its stored config without
    importing torch (for processes that never load the model, e.g. the aptnn-ipi client); None if the file
    cannot be read that way (:func:`aptnn.model.checkpoint.read_config` then reports the problem)."""
    try:
        return [int(z) for z in json.loads(_stored_payload(path)["config"])["species"]]
    except Exception:
        return None


def stored_committee(path: str | Path) -> dict | None:
    """``{"kind": "full" | "heads", "n_members": int, "uncertainty_scale": float}`` of the checkpoint at
    ``path`` (a file, not a shipped model's name), read without torch like :func:`stored_species`. The scale is
    dimensionless: calibrated committee std = scale × raw std (e); 1.0 when the checkpoint has none. None if the
    file cannot be read that way (:func:`aptnn.model.checkpoint.read_committee` then reports the problem)."""
    try:
        payload = _stored_payload(path)
        training = json.loads(payload.get("training", "{}"))
        return {"kind": str(payload.get("committee_kind", "full")), "n_members": len(payload["members"]),
                "uncertainty_scale": float(training.get("uncertainty_scale", 1.0))}
    except Exception:
        return None
