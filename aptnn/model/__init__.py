"""The APT model: e3nn network (:mod:`.network`), irreps ↔ 3×3 tensors (:mod:`.tensor`), checkpoints
(:mod:`.checkpoint`), and what a checkpoint holds read without torch (:mod:`.fingerprint`). Importing this
package loads nothing heavy: ``APTNetwork`` and ``ModelConfig`` come on first use."""
from __future__ import annotations

__all__ = ["APTNetwork", "ModelConfig"]


def __getattr__(name: str):
    if name in __all__:
        from aptnn.model import network

        return getattr(network, name)
    raise AttributeError(f"module 'aptnn.model' has no attribute {name!r}")
