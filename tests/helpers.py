"""Small helpers used by several test modules."""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from aptnn.graph import collate, frame_graph
from aptnn.model.network import APTNetwork, ModelConfig


def apts(net: APTNetwork, atoms: Atoms | list[Atoms]) -> np.ndarray:
    """(N, 3, 3) APTs of one frame (or concatenated over several) from ``net`` without autograd."""
    frames = atoms if isinstance(atoms, list) else [atoms]
    dtype = next(net.parameters()).dtype
    graphs = [frame_graph(a, net.config.species, net.config.cutoff) for a in frames]
    with torch.no_grad():
        return net(collate(graphs, dtype=dtype)).numpy()


def water_box(n_per_side: int = 2, spacing: float = 3.1, seed: int = 0, pbc: bool = True) -> Atoms:
    """n³ randomly oriented water molecules on a jittered grid; cubic cell n·spacing Å."""
    rng = np.random.default_rng(seed)
    h2o = molecule("H2O")
    h2o.positions -= h2o.get_center_of_mass()
    atoms = Atoms()
    for idx in np.ndindex(n_per_side, n_per_side, n_per_side):
        w = h2o.copy()
        w.positions = Rotation.random(random_state=rng.integers(1 << 30)).apply(w.positions)
        w.positions += (np.array(idx) + 0.5) * spacing + rng.normal(scale=0.2, size=3)
        atoms += w
    atoms.cell = np.eye(3) * n_per_side * spacing
    atoms.pbc = pbc
    return atoms


def random_network(dtype=torch.float64, sum_rule: bool = True, channels: int = 4, seed: int = 1,
                   **kw) -> APTNetwork:
    """An untrained network with non-trivial weights and normalisation (per-species mean, irrep scales)."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        cfg = ModelConfig(species=[1, 8], channels=channels, avg_neighbours=20.0, sum_rule=sum_rule,
                          iso_mean=[0.4, -0.8], irrep_scale=[1.0, 10.0, 5.0], **kw)
        net = APTNetwork(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    return net
