"""A checkpoint seen without torch: the model's identity recorded in stream files (name + SHA-256 of its bytes),
and the species its stored config names."""
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


def stored_species(path: str | Path) -> list[int] | None:
    """Atomic numbers the checkpoint at ``path`` knows, read in milliseconds from its stored config without
    importing torch (for processes that never load the model, e.g. the aptnn-ipi client); None if the file
    cannot be read that way (:func:`aptnn.model.checkpoint.read_config` then reports the problem)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            payload = _ConfigOnly(z.open(name)).load()
        return [int(z) for z in json.loads(payload["config"])["species"]]
    except Exception:
        return None
