"""The E(3)-equivariant message-passing network (e3nn) that maps a frame graph to per-atom APTs.

Architecture (NequIP-like, chosen for CPU speed):
species one-hot → linear embedding (scalars) → ``n_layers`` × [channel-wise ("uvu") tensor product of
neighbour features with spherical harmonics Y(r̂_ij), weighted per edge by a radial MLP of a Bessel basis
with a smooth polynomial cutoff; summed over neighbours; linear mixing + self-connection; gated
nonlinearity] → linear readout to 1x0e+1x1e+1x2e per atom → de-normalisation → 3×3 tensor P[ξ,ζ] in e →
optional acoustic sum rule Σ_i P_i = Q·I.

Targets (``ModelConfig.targets``): "apt" (the default, the only one of older checkpoints) and/or "pgt", the
polarisability-gradient tensor G[ξ,η,ζ] = ∂α_ξη/∂r_ζ in e·Å/V (:mod:`aptnn.model.pgt_tensor`): a second linear
readout to 2x1o+1x2o+1x3o → per-block de-normalisation (``pgt_irrep_scale``, no mean) → (N, 3, 3, 3) tensor
symmetric in ξη → optional sum rule Σ_i G_i = 0 per frame. The last layer keeps exactly the irreps the readouts
need: 0e (gates, descriptors) plus 1e, 2e for "apt" and 1o, 2o, 3o for "pgt" (``C x 3o`` is added to that
layer's hidden irreps; the tensor product makes it from 1o ⊗ 2e and 2e ⊗ 1o, so lmax = 2 suffices). A model
with targets ["apt"] has exactly the module structure (state dict keys) of models written before PGT heads.

Calling a network: ``net(batch, charge)`` returns the APT tensor, as it always did (every existing call site:
training loss, committees, :class:`~aptnn.predict.APTPredictor`, ``torch.compile``); ``net(batch, charge,
targets=["apt", "pgt"])`` returns a dict ``{"apt": (N, 3, 3), "pgt": (N, 3, 3, 3)}`` from one trunk evaluation
(``net.forward_pgt(batch)`` for the PGT alone). Selecting by keyword keeps the return type independent of the
checkpoint and keeps ``forward`` the single entry point (what DistributedDataParallel needs to train a head).

Committees come in two kinds: "full" (independent :class:`APTNetwork` members, cost N× per frame) and
"heads" (:class:`HeadsNetwork`: one shared :class:`Trunk` with N readout heads, each with its own linear
readout, de-normalisation and sum rule; one trunk evaluation per frame). Every head is exactly equivariant
and obeys the sum rule on its own. :func:`run_committee` evaluates a committee of either kind.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from e3nn import o3
from e3nn.nn import Gate

from aptnn.defaults import DEFAULT_CHANNELS
from aptnn.graph import Batch
from aptnn.model import pgt_tensor
from aptnn.model.tensor import IRREPS_APT, apply_sum_rule, change_of_basis, to_cartesian

#: what a network can predict: per-atom APTs (e) and polarisability-gradient tensors (e·Å/V)
TARGETS = ("apt", "pgt")
#: irreps of the last layer each readout needs (0e is always kept: gates and invariant descriptors)
TARGET_IRREPS = {"apt": ("1e", "2e"), "pgt": ("1o", "2o", "3o")}
#: optional config keys and their defaults: a checkpoint written before PGT heads lacks them
OPTIONAL_CONFIG = {"targets": ["apt"], "pgt_irrep_scale": [1.0, 1.0, 1.0, 1.0]}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network (stored as JSON in checkpoints). Lengths in Å."""

    species: list[int]                 # atomic numbers, in embedding order
    cutoff: float = 6.0
    channels: int = DEFAULT_CHANNELS   # multiplicity of every hidden irrep (8: the shipped model's)
    lmax: int = 2
    n_layers: int = 2
    n_radial: int = 8                  # Bessel basis functions
    radial_hidden: int = 32
    envelope_power: int = 6
    avg_neighbours: float = 1.0        # neighbour sums are divided by sqrt of this
    sum_rule: bool = True
    iso_mean: list[float] = field(default_factory=list)      # per species, e (isotropic component)
    irrep_scale: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # 0e, 1e, 2e, e
    targets: list[str] = field(default_factory=lambda: ["apt"])                  # "apt" and/or "pgt"
    pgt_irrep_scale: list[float] = field(default_factory=lambda: [1.0] * 4)  # 1o_iso, 1o_aniso, 2o, 3o; e·Å/V

    def to_dict(self) -> dict:
        """The config as JSON-able dict; the optional keys (:data:`OPTIONAL_CONFIG`) only where they differ from
        their defaults, so an APT-only model's config reads exactly as before (and older aptnn can load it)."""
        out = asdict(self)
        for key, default in OPTIONAL_CONFIG.items():
            if out[key] == default:
                del out[key]
        return out

    def hidden_irreps(self) -> o3.Irreps:
        return o3.Irreps([(self.channels, (deg, p)) for deg in range(self.lmax + 1) for p in (1, -1)])

    def readout_irreps(self) -> set[o3.Irrep]:
        """The irreps the readouts of ``targets`` need from the last layer: {0e, 1e, 2e} for ["apt"]."""
        return {o3.Irrep(ir) for ir in ("0e",) + sum((TARGET_IRREPS[t] for t in self.targets), ())}

    def last_hidden_irreps(self) -> o3.Irreps:
        """Hidden irreps of the last layer: :meth:`hidden_irreps`, plus ``channels x 3o`` if a readout needs 3o
        and lmax < 3."""
        hidden = self.hidden_irreps()
        if o3.Irrep("3o") in self.readout_irreps() and o3.Irrep("3o") not in {ir for _, ir in hidden}:
            hidden = hidden + o3.Irreps(f"{self.channels}x3o")
        return hidden


def target_problem(config: ModelConfig) -> str | None:
    """Why ``config.targets`` / ``pgt_irrep_scale`` cannot be built, or None. A PGT readout needs 1o, 2o and 3o
    features in the last layer: these exist exactly when lmax ≥ 2 and n_layers ≥ 2 (the first layer only has
    Y(r̂) ⊗ scalars, i.e. 0e, 1o, 2e, …; 3o then comes from 1o ⊗ 2e)."""
    targets = config.targets
    if (not isinstance(targets, (list, tuple)) or not targets or any(t not in TARGETS for t in targets)
            or len(set(targets)) != len(targets)):
        return f"targets = {targets!r} is not a non-empty list of distinct names from {list(TARGETS)}"
    if "pgt" in targets and (config.lmax < 2 or config.n_layers < 2):
        return (f"targets 'pgt' need lmax >= 2 and n_layers >= 2 "
                f"(got lmax = {config.lmax}, n_layers = {config.n_layers})")
    scale = config.pgt_irrep_scale
    if (not isinstance(scale, list) or len(scale) != len(pgt_tensor.BLOCK_DIMS)
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in scale)):
        return f"pgt_irrep_scale = {scale!r} is not a list of {len(pgt_tensor.BLOCK_DIMS)} finite numbers"
    return None


class RadialBasis(torch.nn.Module):
    """Bessel functions sin(nπr/r_c)/r times a polynomial envelope that goes smoothly to 0 at r_c."""

    def __init__(self, cutoff: float, n: int = 8, p: int = 6):
        super().__init__()
        self.cutoff, self.p = cutoff, p
        self.register_buffer("freq", torch.arange(1, n + 1) * math.pi / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = r / self.cutoff
        p = self.p
        env = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        env = env * (x < 1)
        return math.sqrt(2 / self.cutoff) * torch.sin(self.freq * r[:, None]) / r[:, None] * env[:, None]


def _mlp(sizes: list[int]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.SiLU()]
    return torch.nn.Sequential(*layers[:-1])


class Interaction(torch.nn.Module):
    """One message-passing layer: h_i ← Gate(Lin(Σ_j TP_uvu(h_j, Y(r̂_ij); R(r_ij))) + SelfLin(h_i))."""

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, hidden: o3.Irreps,
                 n_radial: int, radial_hidden: int, avg_neighbours: float, wanted: set[o3.Irrep] | None = None):
        """``wanted``: the irreps this layer outputs (those of ``hidden`` that are also reachable); None: all
        of ``hidden`` (a middle layer). The last layer gets :meth:`ModelConfig.readout_irreps`."""
        super().__init__()
        wanted = {ir for _, ir in hidden} if wanted is None else set(wanted)
        mid, instructions = [], []
        for i_in, (mul, ir_in) in enumerate(irreps_in):
            for i_sh, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        instructions.append((i_in, i_sh, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        mid = o3.Irreps(mid)
        mid_sorted, perm, _ = mid.sort()
        instructions = [(a, b, perm[c], m, t) for a, b, c, m, t in instructions]
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, mid_sorted, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = _mlp([n_radial, radial_hidden, radial_hidden, self.tp.weight_numel])
        self.norm = 1.0 / math.sqrt(avg_neighbours)
        reachable = {ir for _, ir in mid} | {ir for _, ir in irreps_in}
        scalars = o3.Irreps([(m, ir) for m, ir in hidden if ir.l == 0 and ir in reachable and ir in wanted])
        gated = o3.Irreps([(m, ir) for m, ir in hidden if ir.l > 0 and ir in reachable and ir in wanted])
        gates = o3.Irreps([(m, "0e") for m, _ in gated])
        self.gate = Gate(scalars, [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
                         gates, [torch.sigmoid] * len(gates), gated)
        self.linear = o3.Linear(mid_sorted.simplify(), self.gate.irreps_in)
        self.self_linear = o3.Linear(irreps_in, self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out

    def forward(self, h, sh, radial, senders, receivers):
        weights = self.radial(radial)
        messages = self.tp(h[receivers], sh, weights)
        summed = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype, device=h.device)
        summed.index_add_(0, senders, messages)
        return self.gate(self.linear(summed * self.norm) + self.self_linear(h))


class Trunk(torch.nn.Module):
    """Species embedding + message-passing layers: frame graph → per-atom hidden features (no readout)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        problem = target_problem(config)
        if problem:
            raise ValueError(f"model config: {problem}")
        hidden = config.hidden_irreps()
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        self.embedding = torch.nn.Linear(len(config.species), config.channels, bias=False)
        self.radial_basis = RadialBasis(config.cutoff, config.n_radial, config.envelope_power)
        layers, irreps = [], o3.Irreps(f"{config.channels}x0e")
        for k in range(config.n_layers):
            last = k == config.n_layers - 1
            layer = Interaction(irreps, self.irreps_sh, config.last_hidden_irreps() if last else hidden,
                                config.n_radial, config.radial_hidden, config.avg_neighbours,
                                config.readout_irreps() if last else None)
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = torch.nn.ModuleList(layers)

    def features(self, batch: Batch) -> torch.Tensor:
        """Per-atom hidden features after the last layer (irreps of ``self.layers[-1].irreps_out``)."""
        lengths = batch.vectors.norm(dim=1)
        sh = o3.spherical_harmonics(self.irreps_sh, batch.vectors, normalize=True, normalization="component")
        radial = self.radial_basis(lengths)
        h = self.embedding(torch.nn.functional.one_hot(batch.species, len(self.config.species)).to(
            batch.vectors.dtype))
        for layer in self.layers:
            h = layer(h, sh, radial, batch.senders, batch.receivers)
        return h

    def descriptors(self, batch: Batch) -> torch.Tensor:
        """(N, C) rotation-invariant per-atom descriptors: the scalar (0e) channels of the last layer."""
        h = self.features(batch)
        irreps = self.layers[-1].irreps_out
        return torch.cat([h[:, sl] for sl, (_, ir) in zip(irreps.slices(), irreps) if ir == o3.Irrep("0e")], dim=1)


def _init_readout(module: torch.nn.Module, irreps_in: o3.Irreps, config: ModelConfig) -> None:
    """Give ``module`` the readouts of ``config.targets``. "apt": ``readout`` (linear to 1x0e+1x1e+1x2e) and
    the de-normalisation buffers ``iso_mean`` (per species, e), ``component_scale`` (9, e) and ``q`` (change of
    basis). "pgt": ``pgt_readout`` (linear to 2x1o+1x2o+1x3o) and the buffers ``pgt_scale`` (18, e·Å/V, one
    scale per block) and ``pgt_q`` (18, 3, 3, 3). An APT-only module has exactly the attributes it always had."""
    dtype = torch.get_default_dtype()
    if "apt" in config.targets:
        module.readout = o3.Linear(irreps_in, IRREPS_APT)
        iso = config.iso_mean or [0.0] * len(config.species)
        module.register_buffer("iso_mean", torch.tensor(iso, dtype=dtype))
        scale = torch.tensor(config.irrep_scale, dtype=dtype)
        module.register_buffer("component_scale", scale.repeat_interleave(torch.tensor([1, 3, 5])))
        module.register_buffer("q", change_of_basis(dtype))
    if "pgt" in config.targets:
        module.pgt_readout = o3.Linear(irreps_in, pgt_tensor.pgt_irreps())
        module.register_buffer("pgt_scale", pgt_tensor.block_scale(config.pgt_irrep_scale, dtype))
        module.register_buffer("pgt_q", pgt_tensor.change_of_basis(dtype))


def _readout_irreducible(module: torch.nn.Module, h: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
    """(N, 9) irreducible APT components (0e | 1e | 2e) in e from hidden features ``h``, before the sum rule."""
    y = module.readout(h) * module.component_scale
    return torch.cat([y[:, :1] + module.iso_mean[species, None], y[:, 1:]], dim=1)


def _readout_apt(module: torch.nn.Module, h: torch.Tensor, batch: Batch, sum_rule: bool,
                 total_charge: torch.Tensor | float) -> torch.Tensor:
    """(N, 3, 3) APTs in e from hidden features: readout, de-normalisation, Cartesian tensor, sum rule."""
    p = to_cartesian(_readout_irreducible(module, h, batch.species), module.q)
    return apply_sum_rule(p, batch.frame, batch.n_frames, total_charge) if sum_rule else p


def _readout_pgt(module: torch.nn.Module, h: torch.Tensor, batch: Batch, sum_rule: bool) -> torch.Tensor:
    """(N, 3, 3, 3) PGTs G[i, ξ, η, ζ] in e·Å/V from hidden features: readout, per-block de-normalisation,
    Cartesian tensor (symmetric in ξη), sum rule Σ_i G_i = 0 per frame."""
    g = pgt_tensor.to_cartesian(module.pgt_readout(h) * module.pgt_scale, module.pgt_q)
    return pgt_tensor.apply_sum_rule(g, batch.frame, batch.n_frames) if sum_rule else g


def _check_targets(available: list[str], targets) -> tuple[str, ...]:
    """``targets`` (a name or a sequence of names) as a tuple, or a ValueError if the model lacks one."""
    wanted = (targets,) if isinstance(targets, str) else tuple(targets)
    if not wanted or any(t not in available for t in wanted):
        raise ValueError(f"targets {list(wanted)} requested from a model with targets {list(available)}")
    return wanted


def _readouts(module: torch.nn.Module, h: torch.Tensor, batch: Batch, available: list[str], sum_rule: bool,
              total_charge: torch.Tensor | float, targets) -> torch.Tensor | dict[str, torch.Tensor]:
    """``targets`` None: the (N, 3, 3) APTs (the historical return value); otherwise a dict with the requested
    targets ("apt": (N, 3, 3) in e, "pgt": (N, 3, 3, 3) in e·Å/V). ``available``: the module's targets."""
    if targets is None:
        if "apt" not in available:
            raise ValueError(f"this model predicts {list(available)}, not APTs: call it with "
                             f"targets={list(available)}")
        return _readout_apt(module, h, batch, sum_rule, total_charge)
    return {t: _readout_apt(module, h, batch, sum_rule, total_charge) if t == "apt"
            else _readout_pgt(module, h, batch, sum_rule) for t in _check_targets(available, targets)}


class APTNetwork(Trunk):
    """Frame graph → per-atom APTs P[i, ξ, ζ] = ∂M_ξ/∂r_iζ in e, shape (N, 3, 3) (and, with "pgt" in
    ``config.targets``, PGTs G[i, ξ, η, ζ] = ∂α_ξη/∂r_iζ in e·Å/V, shape (N, 3, 3, 3)). One committee member
    of a "full" committee (independent networks)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        _init_readout(self, self.layers[-1].irreps_out, config)

    def irreducible(self, batch: Batch) -> torch.Tensor:
        """(N, 9) irreducible components (0e | 1e | 2e) of the APTs, in e, before the sum rule."""
        return _readout_irreducible(self, self.features(batch), batch.species)

    def pgt_irreducible(self, batch: Batch) -> torch.Tensor:
        """(N, 18) irreducible components (2x1o | 2o | 3o) of the PGTs, in e·Å/V, before the sum rule."""
        _check_targets(self.config.targets, "pgt")
        return self.pgt_readout(self.features(batch)) * self.pgt_scale

    def forward(self, batch: Batch, total_charge: torch.Tensor | float = 0.0,
                targets: list[str] | tuple[str, ...] | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
        """(N, 3, 3) APTs in e; with ``targets`` (e.g. ["apt", "pgt"]) a dict of those outputs from one trunk
        evaluation ("pgt": (N, 3, 3, 3) in e·Å/V). ``total_charge`` only concerns the APT sum rule."""
        return _readouts(self, self.features(batch), batch, self.config.targets, self.config.sum_rule,
                         total_charge, targets)

    def forward_pgt(self, batch: Batch) -> torch.Tensor:
        """(N, 3, 3, 3) PGTs G[i, ξ, η, ζ] = ∂α_ξη/∂r_iζ in e·Å/V (Σ_i G_i = 0 per frame with the sum rule)."""
        return self(batch, targets=("pgt",))["pgt"]


class Head(torch.nn.Module):
    """One readout head of a :class:`HeadsNetwork`: its own linear readout(s), de-normalisation and sum rule."""

    def __init__(self, irreps_in: o3.Irreps, config: ModelConfig):
        super().__init__()
        self.sum_rule = config.sum_rule
        self.targets = list(config.targets)
        _init_readout(self, irreps_in, config)

    def forward(self, h: torch.Tensor, batch: Batch, total_charge: torch.Tensor | float = 0.0,
                targets: list[str] | tuple[str, ...] | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
        """(N, 3, 3) APTs in e from the trunk's features ``h`` (a dict with ``targets``, as
        :meth:`APTNetwork.forward`)."""
        return _readouts(self, h, batch, self.targets, self.sum_rule, total_charge, targets)


class HeadsNetwork(Trunk):
    """A "heads" committee: one shared :class:`Trunk` and ``n_heads`` independent readout heads. Costs one
    trunk evaluation per frame however many heads (the readouts are per-atom linear maps)."""

    def __init__(self, config: ModelConfig, n_heads: int):
        super().__init__(config)
        self.heads = torch.nn.ModuleList(Head(self.layers[-1].irreps_out, config) for _ in range(n_heads))

    def forward(self, batch: Batch, total_charge: torch.Tensor | float = 0.0,
                targets: list[str] | tuple[str, ...] | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
        """(n_heads, N, 3, 3) APTs in e, one per head, from one trunk evaluation; with ``targets`` a dict of
        (n_heads, …) stacks ("pgt": (n_heads, N, 3, 3, 3) in e·Å/V)."""
        h = self.features(batch)
        outs = [head(h, batch, total_charge, targets) for head in self.heads]
        if targets is None:
            return torch.stack(outs)
        return {t: torch.stack([o[t] for o in outs]) for t in outs[0]}

    def members(self) -> list["HeadMember"]:
        """One :class:`HeadMember` view per head (what a committee's ``members`` list holds)."""
        return [HeadMember(self, k) for k in range(len(self.heads))]


class HeadMember(torch.nn.Module):
    """Member ``index`` of a :class:`HeadsNetwork` seen as a single network (``config``, ``forward``,
    ``descriptors`` like :class:`APTNetwork`); its parameters are the shared network's. Calling members one
    by one recomputes the trunk each time: use ``network.forward`` for all heads at once."""

    def __init__(self, network: HeadsNetwork, index: int):
        super().__init__()
        self.network, self.index, self.config = network, index, network.config

    def forward(self, batch: Batch, total_charge: torch.Tensor | float = 0.0,
                targets: list[str] | tuple[str, ...] | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
        """(N, 3, 3) APTs in e of this head (a dict with ``targets``, as :meth:`APTNetwork.forward`)."""
        return self.network.heads[self.index](self.network.features(batch), batch, total_charge, targets)

    def forward_pgt(self, batch: Batch) -> torch.Tensor:
        """(N, 3, 3, 3) PGTs in e·Å/V of this head."""
        return self(batch, targets=("pgt",))["pgt"]

    def descriptors(self, batch: Batch) -> torch.Tensor:
        """The shared trunk's (N, C) invariant descriptors."""
        return self.network.descriptors(batch)


def run_committee(members: list[APTNetwork] | list[HeadMember], batch: Batch,
                  total_charge: torch.Tensor | float = 0.0,
                  targets: list[str] | tuple[str, ...] | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
    """(n_members, N, 3, 3) APTs in e of a committee of either kind, in member order; every distinct network
    runs once (a :class:`HeadsNetwork` gives all its heads from one trunk evaluation). With ``targets``: a dict
    of such (n_members, …) stacks, one per target."""
    shared: dict = {}
    out = []
    for m in members:
        if isinstance(m, HeadMember):
            if id(m.network) not in shared:
                shared[id(m.network)] = m.network(batch, total_charge, targets)
            res = shared[id(m.network)]
            out.append(res[m.index] if targets is None else {t: v[m.index] for t, v in res.items()})
        else:
            out.append(m(batch, total_charge, targets))
    if targets is None:
        return torch.stack(out)
    return {t: torch.stack([o[t] for o in out]) for t in out[0]}
