"""Shared fixtures: small generated water systems, a random-weight float64 network, the shared DFT data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from aptnn.model.network import APTNetwork, ModelConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "water-rpbe-d3"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "train10.extxyz").exists():
        pytest.skip(f"shared DFT water data not found at {SHARED} (it lies next to the repository root)")
    return SHARED


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


@pytest.fixture
def waters() -> Atoms:
    return water_box()


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


@pytest.fixture
def net64() -> APTNetwork:
    return random_network()
