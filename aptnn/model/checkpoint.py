"""Checkpoints: one file with the weights of every committee member plus a JSON config.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    format          "aptnn-apt-model"
    format_version  1 for committee kind "full", 2 for kind "heads" (older aptnn refuses those by version)
    aptnn_version   version string of the writer
    committee_kind  "full" (independent networks) or "heads" (shared trunk, one readout head per member);
                    absent in files written before aptnn had heads: read as "full"
    config          JSON of ModelConfig (species, cutoff Å, irreps sizes, normalisation in e, units); the keys
                    ``targets`` and ``pgt_irrep_scale`` (e·Å/V) only for models with a PGT readout
    training        JSON with the training settings, data hash, final metrics (RMSE in e) and
                    ``uncertainty_scale`` (dimensionless factor for the committee std; absent: 1.0)
    members         list of state dicts, one per committee member: a whole network ("full") or one head's
                    readout and de-normalisation buffers ("heads")
    trunk           "heads" only: state dict of the shared embedding and message-passing layers
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch

from aptnn._version import __version__
from aptnn.defaults import COMMITTEE_KINDS
from aptnn.errors import CheckpointError, OutputError
from aptnn.model.network import OPTIONAL_CONFIG, APTNetwork, HeadMember, HeadsNetwork, ModelConfig, target_problem

FORMAT = "aptnn-apt-model"
FORMAT_VERSION = 1
#: format version written for each committee kind (a reader accepts all of them)
KIND_VERSIONS = {"full": 1, "heads": 2}
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


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def committee_weights(members: list[APTNetwork] | list[HeadMember] | HeadsNetwork,
                      ) -> tuple[str, dict | None, list[dict]]:
    """(committee kind, shared trunk state dict or None, per-member state dicts) of a committee: a list of
    independent networks ("full"), of :class:`HeadMember` views of one :class:`HeadsNetwork` ("heads"; the
    views' heads are stored in list order), or that network itself."""
    if isinstance(members, HeadsNetwork):
        members = members.members()
    heads = [isinstance(m, HeadMember) for m in members]
    if not any(heads):
        return "full", None, [_cpu(m.state_dict()) for m in members]
    net = members[0].network
    if not all(heads) or any(m.network is not net for m in members):
        raise ValueError("a committee is either independent networks or heads of one shared network")
    trunk = {k: v for k, v in _cpu(net.state_dict()).items() if not k.startswith("heads.")}
    return "heads", trunk, [_cpu(net.heads[m.index].state_dict()) for m in members]


def save_checkpoint(path: str | os.PathLike, members: list[APTNetwork] | list[HeadMember] | HeadsNetwork,
                    training: dict | None = None) -> None:
    """Write all committee members (either kind, see :func:`committee_weights`) and their shared config to
    ``path`` atomically."""
    kind, trunk, states = committee_weights(members)
    cfg = members.config if isinstance(members, HeadsNetwork) else members[0].config
    units = dict(UNITS, pgt="e*angstrom/V, G[xi,eta,zeta] = dalpha_xieta/dr_zeta") if "pgt" in cfg.targets else UNITS
    config = dict(cfg.to_dict(), units=units)
    payload = {
        "format": FORMAT,
        "format_version": KIND_VERSIONS[kind],
        "aptnn_version": __version__,
        "committee_kind": kind,
        "config": json.dumps(config),
        "training": json.dumps(training or {}),
        "members": states,
    }
    if trunk is not None:
        payload["trunk"] = trunk
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a missing folder as RuntimeError
        if tmp.exists():
            tmp.unlink()
        raise OutputError(f"cannot write the checkpoint: {type(err).__name__}: {err}", str(path)) from None


#: accepted ranges of the integer sizes of a config (a config outside them is refused before building)
INT_LIMITS = {"channels": (1, 512), "lmax": (0, 4), "n_layers": (1, 8), "n_radial": (1, 64),
              "radial_hidden": (1, 1024), "envelope_power": (1, 16)}
CUTOFF_MAX_A = 20.0
AVG_NEIGHBOURS_MAX = 1e4
MAX_MEMBERS = 64


def check_config(config: object, where: str) -> ModelConfig:
    """A :class:`ModelConfig` from a checkpoint's config dict, or a :class:`CheckpointError` naming ``where``
    and the problem: unknown or missing keys, wrong types, sizes outside :data:`INT_LIMITS`, cutoff outside
    (0, 20] Å, species not unique atomic numbers, iso_mean / irrep_scale of the wrong length, targets /
    pgt_irrep_scale that cannot be built. The optional keys (``targets``, ``pgt_irrep_scale``: absent from
    checkpoints written before PGT heads and from APT-only ones) take their defaults."""
    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"{where}: model config: {problem}")

    if not isinstance(config, dict):
        raise bad(f"a JSON object expected, got {type(config).__name__}")
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(config) - set(names))
    missing = [n for n in names if n not in config and n not in OPTIONAL_CONFIG]
    if unknown or missing:
        raise bad(", ".join(([f"unknown key(s) {unknown}"] if unknown else [])
                            + ([f"missing key(s) {missing}"] if missing else [])))

    def number(key: str, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"{key} = {value!r} is not a finite number")
        return float(value)

    for key, (lo, hi) in INT_LIMITS.items():
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"{key} = {value!r} is not a whole number")
        if not lo <= value <= hi:
            raise bad(f"{key} = {value} is outside {lo}…{hi}")
    if not 0 < number("cutoff", config["cutoff"]) <= CUTOFF_MAX_A:
        raise bad(f"cutoff = {config['cutoff']} Å is outside (0, {CUTOFF_MAX_A:g}] Å")
    if not 0 < number("avg_neighbours", config["avg_neighbours"]) <= AVG_NEIGHBOURS_MAX:
        raise bad(f"avg_neighbours = {config['avg_neighbours']} is outside (0, {AVG_NEIGHBOURS_MAX:g}]")
    if not isinstance(config["sum_rule"], bool):
        raise bad(f"sum_rule = {config['sum_rule']!r} is not true/false")
    species = config["species"]
    if (not isinstance(species, list) or not species
            or any(isinstance(z, bool) or not isinstance(z, int) or not 1 <= z <= 118 for z in species)):
        raise bad(f"species = {species!r} is not a non-empty list of atomic numbers 1…118")
    if len(set(species)) != len(species):
        raise bad(f"species = {species} repeats an element")
    for key, lengths in (("iso_mean", (0, len(species))), ("irrep_scale", (3,))):
        value = config[key]
        if not isinstance(value, list) or len(value) not in lengths:
            raise bad(f"{key} = {value!r} is not a list of {' or '.join(map(str, lengths))} numbers")
        [number(key, v) for v in value]
    cfg = ModelConfig(**config)
    problem = target_problem(cfg)
    if problem:
        raise bad(problem)
    return cfg


def _check_state(state: object, cfg: ModelConfig, where: str, trunk: bool = True, head: bool = True) -> None:
    """Shapes that follow from the config, checked before any network is built (a config that claims large
    sizes with small tensors is refused here). ``trunk``/``head``: which parts ``state`` should hold (a full
    member both, a "heads" checkpoint's trunk and heads one each)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{where}: weights are not a dict of tensors")
    expected = {}
    if trunk:
        expected.update({"embedding.weight": (cfg.channels, len(cfg.species)), "radial_basis.freq": (cfg.n_radial,)})
        expected.update({f"layers.{k}.radial.0.weight": (cfg.radial_hidden, cfg.n_radial)
                         for k in range(cfg.n_layers)})
    if head and "apt" in cfg.targets:
        expected.update({"iso_mean": (len(cfg.species),), "component_scale": (9,)})
    if head and "pgt" in cfg.targets:
        expected.update({"pgt_scale": (18,)})
    for key, shape in expected.items():
        if key not in state:
            raise CheckpointError(f"{where}: weights lack {key} (config: {cfg.n_layers} layers)")
        if tuple(state[key].shape) != shape:
            raise CheckpointError(f"{where}: {key} has shape {tuple(state[key].shape)}, the config implies {shape}")
    if any(k.startswith(f"layers.{cfg.n_layers}.") for k in state):
        raise CheckpointError(f"{where}: weights hold more layers than the config's {cfg.n_layers}")


def read_config(name_or_path: str | os.PathLike) -> ModelConfig:
    """The checked configuration of a checkpoint (species, cutoff, sizes) without building the networks:
    what an entry point needs to validate its input before the model is loaded."""
    return _read_payload(resolve(name_or_path))[1]


def read_committee(name_or_path: str | os.PathLike) -> dict:
    """``{"kind", "n_members", "uncertainty_scale"}`` of a checked checkpoint, without building the networks
    (:func:`aptnn.model.fingerprint.stored_committee` reads the same without torch)."""
    payload, _, training = _read_payload(resolve(name_or_path))
    return {"kind": payload.get("committee_kind", "full"), "n_members": len(payload["members"]),
            "uncertainty_scale": float(training.get("uncertainty_scale", 1.0))}


def load_checkpoint(name_or_path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                    device: str = "cpu") -> tuple[list[APTNetwork] | list[HeadMember], dict]:
    """Load a checkpoint; returns (members in eval mode, training info). Members: independent
    :class:`APTNetwork` objects (kind "full") or :class:`HeadMember` views of one shared :class:`HeadsNetwork`
    (kind "heads"). Foreign, damaged or inconsistent files are refused with a :class:`CheckpointError` before
    any network is built."""
    path = resolve(name_or_path)
    payload, cfg, training = _read_payload(path)
    states = payload["members"]
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        if payload.get("committee_kind", "full") == "heads":
            net = HeadsNetwork(cfg, len(states))
            state = dict(payload["trunk"])
            for k, head in enumerate(states):
                state.update({f"heads.{k}.{key}": value for key, value in head.items()})
            _load_state(net, state, f"{path}: heads")
            return net.to(device=device, dtype=dtype).eval().members(), training
        members = []
        for k, state in enumerate(states):
            net = APTNetwork(cfg)
            _load_state(net, state, f"{path}: member {k}")
            members.append(net.to(device=device, dtype=dtype).eval())
    finally:
        torch.set_default_dtype(previous)
    return members, training


#: buffers fitted to each member's training data (normalisation), loaded as stored
FITTED_BUFFERS = ("iso_mean", "component_scale", "pgt_scale")


def _load_state(net: torch.nn.Module, state: dict, where: str) -> None:
    """Load ``state`` into ``net``, keeping the constant buffers ``net`` was built with.

    Constant buffers (changes of basis, Wigner 3j symbols, output masks, radial frequencies) depend only on the
    architecture and are built exactly in the dtype being loaded. A checkpoint saved in float32 stores them rounded
    to float32; loading those into a float64 network would break its equivariance at ~1e-8 (the l = 3 parts most).
    They are checked against the stored ones (float32 rounding is allowed) and kept. The normalisation buffers
    (:data:`FITTED_BUFFERS`, per committee member) are loaded as stored.
    """
    built = {name: buf.detach().clone() for name, buf in net.named_buffers()
             if name.rsplit(".", 1)[-1] not in FITTED_BUFFERS}
    try:
        net.load_state_dict(state)
    except RuntimeError as err:  # missing, unexpected or differently shaped tensors
        lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()] or [str(err)]
        raise CheckpointError(f"{where}: weights do not fit the config: {lines[0][:300]}"
                              + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")) from None
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name not in built:
                continue
            stored, exact = buf.detach().double(), built[name].double()
            if not torch.allclose(stored, exact, rtol=1e-5, atol=1e-6):
                raise CheckpointError(f"{where}: stored buffer {name} differs from the one its config defines "
                                      f"(max difference {float((stored - exact).abs().max()):.3g})")
            buf.copy_(built[name])


def _read_payload(path: Path) -> tuple[dict, ModelConfig, dict]:
    """(payload, checked config, training info) of a checkpoint file; every problem is a CheckpointError."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        text = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        with open(path, "rb") as fh:
            zipped = fh.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
        raise CheckpointError(f"{path}: truncated or damaged checkpoint file (its zip archive cannot be read: {text})"
                              if zipped else f"{path}: not an aptnn checkpoint ({text})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an aptnn checkpoint (no '{FORMAT}' marker)")
    kind = payload.get("committee_kind", "full")
    if payload.get("format_version") not in KIND_VERSIONS.values():
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} "
                              f"is not supported by aptnn {__version__} (needs one of "
                              f"{', '.join(map(str, sorted(set(KIND_VERSIONS.values()))))})")
    if kind not in COMMITTEE_KINDS or payload["format_version"] != KIND_VERSIONS[kind]:
        raise CheckpointError(f"{path}: committee kind {kind!r} with format version {payload['format_version']} "
                              f"(known kinds: {', '.join(f'{k} = version {v}' for k, v in KIND_VERSIONS.items())})")
    texts = {}
    for key in ("config", "training"):
        try:
            texts[key] = json.loads(payload.get(key, "{}"))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: {key} is not valid JSON ({err})") from None
    config = texts["config"]
    if isinstance(config, dict):
        config.pop("units", None)
    cfg = check_config(config, str(path))
    training = texts["training"] if isinstance(texts["training"], dict) else {}
    scale = training.get("uncertainty_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
        raise CheckpointError(f"{path}: training uncertainty_scale = {scale!r} is not a positive finite number")
    states = payload.get("members")
    if not isinstance(states, list) or not 1 <= len(states) <= MAX_MEMBERS:
        raise CheckpointError(f"{path}: 'members' is not a list of 1…{MAX_MEMBERS} weight sets")
    heads = kind == "heads"
    if heads:
        _check_state(payload.get("trunk"), cfg, f"{path}: trunk", head=False)
    for k, state in enumerate(states):
        _check_state(state, cfg, f"{path}: member {k}", trunk=not heads)
    return payload, cfg, training
