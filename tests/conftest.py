"""Shared fixtures: small generated water systems, a random-weight float64 network, the shared DFT data."""
from __future__ import annotations

from pathlib import Path

import pytest
from ase import Atoms
from helpers import random_network, water_box

from aptnn.model.network import APTNetwork

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "water-rpbe-d3"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "train10.extxyz").exists():
        pytest.skip(f"shared DFT water data not found at {SHARED} (it lies next to the repository root)")
    return SHARED


@pytest.fixture
def waters() -> Atoms:
    return water_box()


@pytest.fixture
def net64() -> APTNetwork:
    return random_network()
