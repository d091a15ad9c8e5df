"""The E(3)-equivariant message-passing network (e3nn) that maps a frame graph to per-atom APTs.

Architecture (NequIP-like, chosen for CPU speed):
species one-hot → linear embedding (scalars) → ``n_layers`` × [channel-wise ("uvu") tensor product of
neighbour features with spherical harmonics Y(r̂_ij), weighted per edge by a radial MLP of a Bessel basis
with a smooth polynomial cutoff; summed over neighbours; linear mixing + self-connection; gated
nonlinearity] → linear readout to 1x0e+1x1e+1x2e per atom → de-normalisation → 3×3 tensor P[ξ,ζ] in e →
optional acoustic sum rule Σ_i P_i = Q·I.

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
from aptnn.model.tensor import IRREPS_APT, apply_sum_rule, change_of_basis, to_cartesian


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

    def to_dict(self) -> dict:
        return asdict(self)

    def hidden_irreps(self) -> o3.Irreps:
        return o3.Irreps([(self.channels, (deg, p)) for deg in range(self.lmax + 1) for p in (1, -1)])


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
                 n_radial: int, radial_hidden: int, avg_neighbours: float, last: bool):
        super().__init__()
        wanted = {ir for _, ir in hidden}
        if last:  # the readout only needs 0e, 1e, 2e (and 0e gates)
            wanted = {o3.Irrep(ir) for ir in ("0e", "1e", "2e")}
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
        hidden = config.hidden_irreps()
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        self.embedding = torch.nn.Linear(len(config.species), config.channels, bias=False)
        self.radial_basis = RadialBasis(config.cutoff, config.n_radial, config.envelope_power)
        layers, irreps = [], o3.Irreps(f"{config.channels}x0e")
        for k in range(config.n_layers):
            layer = Interaction(irreps, self.irreps_sh, hidden, config.n_radial, config.radial_hidden,
                                config.avg_neighbours, last=k == config.n_layers - 1)
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
    """Give ``module`` a readout: ``readout`` (linear to 1x0e+1x1e+1x2e) and the de-normalisation buffers
    ``iso_mean`` (per species, e), ``component_scale`` (9, e) and ``q`` (change of basis)."""
    module.readout = o3.Linear(irreps_in, IRREPS_APT)
    iso = config.iso_mean or [0.0] * len(config.species)
    module.register_buffer("iso_mean", torch.tensor(iso, dtype=torch.get_default_dtype()))
    scale = torch.tensor(config.irrep_scale, dtype=torch.get_default_dtype())
    module.register_buffer("component_scale", scale.repeat_interleave(torch.tensor([1, 3, 5])))
    module.register_buffer("q", change_of_basis(torch.get_default_dtype()))


def _readout_irreducible(module: torch.nn.Module, h: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
    """(N, 9) irreducible APT components (0e | 1e | 2e) in e from hidden features ``h``, before the sum rule."""
    y = module.readout(h) * module.component_scale
    return torch.cat([y[:, :1] + module.iso_mean[species, None], y[:, 1:]], dim=1)


def _readout_apt(module: torch.nn.Module, h: torch.Tensor, batch: Batch, sum_rule: bool,
                 total_charge: torch.Tensor | float) -> torch.Tensor:
    """(N, 3, 3) APTs in e from hidden features: readout, de-normalisation, Cartesian tensor, sum rule."""
    p = to_cartesian(_readout_irreducible(module, h, batch.species), module.q)
    return apply_sum_rule(p, batch.frame, batch.n_frames, total_charge) if sum_rule else p


class APTNetwork(Trunk):
    """Frame graph → per-atom APTs P[i, ξ, ζ] = ∂M_ξ/∂r_iζ in e, shape (N, 3, 3). One committee member of a
    "full" committee (independent networks)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        _init_readout(self, self.layers[-1].irreps_out, config)

    def irreducible(self, batch: Batch) -> torch.Tensor:
        """(N, 9) irreducible components (0e | 1e | 2e) of the APTs, in e, before the sum rule."""
        return _readout_irreducible(self, self.features(batch), batch.species)

    def forward(self, batch: Batch, total_charge: torch.Tensor | float = 0.0) -> torch.Tensor:
        return _readout_apt(self, self.features(batch), batch, self.config.sum_rule, total_charge)


class Head(torch.nn.Module):
    """One readout head of a :class:`HeadsNetwork`: its own linear readout, de-normalisation and sum rule."""

    def __init__(self, irreps_in: o3.Irreps, config: ModelConfig):
        super().__init__()
        self.sum_rule = config.sum_rule
        _init_readout(self, irreps_in, config)

    def forward(self, h: torch.Tensor, batch: Batch, total_charge: torch.Tensor | float = 0.0) -> torch.Tensor:
        """(N, 3, 3) APTs in e from the trunk's features ``h``."""
        return _readout_apt(self, h, batch, self.sum_rule, total_charge)


class HeadsNetwork(Trunk):
    """A "heads" committee: one shared :class:`Trunk` and ``n_heads`` independent readout heads. Costs one
    trunk evaluation per frame however many heads (the readouts are per-atom linear maps)."""

    def __init__(self, config: ModelConfig, n_heads: int):
        super().__init__(config)
        self.heads = torch.nn.ModuleList(Head(self.layers[-1].irreps_out, config) for _ in range(n_heads))

    def forward(self, batch: Batch, total_charge: torch.Tensor | float = 0.0) -> torch.Tensor:
        """(n_heads, N, 3, 3) APTs in e, one per head, from one trunk evaluation."""
        h = self.features(batch)
        return torch.stack([head(h, batch, total_charge) for head in self.heads])

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

    def forward(self, batch: Batch, total_charge: torch.Tensor | float = 0.0) -> torch.Tensor:
        """(N, 3, 3) APTs in e of this head."""
        return self.network.heads[self.index](self.network.features(batch), batch, total_charge)

    def descriptors(self, batch: Batch) -> torch.Tensor:
        """The shared trunk's (N, C) invariant descriptors."""
        return self.network.descriptors(batch)


def run_committee(members: list[APTNetwork] | list[HeadMember], batch: Batch,
                  total_charge: torch.Tensor | float = 0.0) -> torch.Tensor:
    """(n_members, N, 3, 3) APTs in e of a committee of either kind, in member order; every distinct network
    runs once (a :class:`HeadsNetwork` gives all its heads from one trunk evaluation)."""
    shared: dict[int, torch.Tensor] = {}
    out = []
    for m in members:
        if isinstance(m, HeadMember):
            if id(m.network) not in shared:
                shared[id(m.network)] = m.network(batch, total_charge)
            out.append(shared[id(m.network)][m.index])
        else:
            out.append(m(batch, total_charge))
    return torch.stack(out)
