"""The model's identity as recorded in stream files: the checkpoint's name and the SHA-256 of its bytes."""
from __future__ import annotations

import hashlib
from pathlib import Path


def model_fingerprint(name: str) -> str:
    """``name sha256:<hex>`` of the checkpoint file (a path or a shipped model's name), recorded in streams."""
    from aptnn.model.checkpoint import resolve

    digest = hashlib.sha256(Path(resolve(name)).read_bytes()).hexdigest()
    return f"{name} sha256:{digest}"
