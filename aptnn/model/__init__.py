"""The APT model: e3nn network, irreps ↔ 3×3 tensors, equivariant normalisation, checkpoints."""
from aptnn.model.network import APTNetwork, ModelConfig

__all__ = ["APTNetwork", "ModelConfig"]
