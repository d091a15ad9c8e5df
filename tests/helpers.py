"""Small helpers used by several test modules."""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from aptnn.graph import collate, frame_graph
from aptnn.model.network import APTNetwork


def apts(net: APTNetwork, atoms: Atoms | list[Atoms]) -> np.ndarray:
    """(N, 3, 3) APTs of one frame (or concatenated over several) from ``net`` without autograd."""
    frames = atoms if isinstance(atoms, list) else [atoms]
    dtype = next(net.parameters()).dtype
    graphs = [frame_graph(a, net.config.species, net.config.cutoff) for a in frames]
    with torch.no_grad():
        return net(collate(graphs, dtype=dtype)).numpy()
