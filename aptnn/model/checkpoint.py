"""Checkpoints: one file with the weights of every committee member plus a JSON config.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    format          "aptnn-apt-model"
    format_version  1
    aptnn_version   version string of the writer
    config          JSON of ModelConfig (species, cutoff Å, irreps sizes, normalisation in e, units)
    training        JSON with the training settings, data hash, and final metrics (RMSE in e)
    members         list of state dicts (one per committee member)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from aptnn import __version__
from aptnn.errors import CheckpointError
from aptnn.model.network import APTNetwork, ModelConfig

FORMAT = "aptnn-apt-model"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models"
UNITS = {"length": "angstrom", "apt": "e", "convention": "P[xi,zeta] = dM_xi/dr_zeta, row-major"}


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint path, or the file of a shipped model of that name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = SHIPPED_DIR / f"{name_or_path}.pt"
    if shipped.exists():
        return shipped
    raise CheckpointError(f"{name_or_path}: no such file and no shipped model of that name "
                          f"(shipped: {', '.join(shipped_models()) or 'none'})")


def save_checkpoint(path: str | os.PathLike, members: list[APTNetwork], training: dict | None = None) -> None:
    """Write all committee members and their shared config to ``path`` atomically."""
    config = dict(members[0].config.to_dict(), units=UNITS)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "aptnn_version": __version__,
        "config": json.dumps(config),
        "training": json.dumps(training or {}),
        "members": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in members],
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(name_or_path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                    device: str = "cpu") -> tuple[list[APTNetwork], dict]:
    """Load a checkpoint; returns (members in eval mode, training info). Foreign files are refused."""
    path = resolve(name_or_path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: not an aptnn checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an aptnn checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} "
                              f"is not supported by aptnn {__version__} (needs {FORMAT_VERSION})")
    config = json.loads(payload["config"])
    config.pop("units", None)
    try:
        cfg = ModelConfig(**config)
    except TypeError as err:
        raise CheckpointError(f"{path}: unknown model configuration ({err})") from None
    members = []
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        for state in payload["members"]:
            net = APTNetwork(cfg)
            net.load_state_dict(state)
            members.append(net.to(device=device, dtype=dtype).eval())
    finally:
        torch.set_default_dtype(previous)
    return members, json.loads(payload.get("training", "{}"))
