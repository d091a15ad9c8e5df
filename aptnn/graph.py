"""Frames → graph: periodic neighbour lists (vesin, O(N)) and batching of frames into one graph.

Edge e = (i → j) carries the vector r_ij = r_j − r_i + S_e · cell (Å), with integer shifts S_e, so that
positions may be unwrapped, any (triclinic) cell works and cells smaller than twice the cutoff are handled
(an atom may see several images of the same neighbour, and its own images).
Edge vectors are formed in float64 and only then cast to the model's dtype, so large unwrapped coordinates
lose no precision.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from vesin import NeighborList

from aptnn.errors import InputError


@dataclass
class FrameGraph:
    """Neighbour graph of one frame (numpy, float64 vectors)."""

    species: np.ndarray   # (N,) int64, index into the model's species list
    senders: np.ndarray   # (E,) int64, centre atom i
    receivers: np.ndarray  # (E,) int64, neighbour atom j
    vectors: np.ndarray   # (E, 3) float64, r_j − r_i + S·cell in Å


@dataclass
class Batch:
    """Several frames concatenated into one graph (torch tensors on the model's device)."""

    species: torch.Tensor   # (N,) long
    senders: torch.Tensor   # (E,) long
    receivers: torch.Tensor  # (E,) long
    vectors: torch.Tensor   # (E, 3) model dtype, Å
    frame: torch.Tensor     # (N,) long, frame index of each atom
    n_frames: int

    def to(self, device=None, dtype=None) -> "Batch":
        return Batch(self.species.to(device), self.senders.to(device), self.receivers.to(device),
                     self.vectors.to(device=device, dtype=dtype), self.frame.to(device), self.n_frames)


def species_indices(atoms: Atoms, species: list[int], source: str | None = None,
                    frame: int | None = None) -> np.ndarray:
    """Map atomic numbers to indices into ``species``; unknown elements are an :class:`InputError`."""
    lookup = np.full(max(max(species), int(atoms.numbers.max())) + 1, -1, dtype=np.int64)
    lookup[np.asarray(species)] = np.arange(len(species))
    idx = lookup[atoms.numbers]
    if (idx < 0).any():
        from ase.data import chemical_symbols

        unknown = sorted({chemical_symbols[z] for z in atoms.numbers[idx < 0]})
        known = [chemical_symbols[z] for z in species]
        raise InputError(f"element(s) {unknown} unknown to the model (it knows {known})", source, frame)
    return idx


MAX_DENSITY = 1.0          # atoms/Å³: five times diamond's; denser cells are wrong units or a wrong cell
MIN_DISTANCE = 0.1         # Å: closer atoms are the same atom twice (the APT is undefined there)
GEOMETRY_CHECK_CUTOFF = 1.0   # Å: neighbour-list cutoff of check_geometry (any value ≥ MIN_DISTANCE is exact)
NEIGHBOUR_BYTES = 64       # memory per neighbour pair of the list alone (indices, shifts, vectors)


def wrap_positions(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Positions (Å) moved into the cell along periodic directions, in float64: unwrapped coordinates far from
    the origin then lose no precision in the neighbour search (edge vectors are invariant)."""
    frac = positions @ np.linalg.inv(cell)
    frac[:, pbc] -= np.floor(frac[:, pbc])
    return frac @ cell


def check_neighbour_budget(atoms: Atoms, cutoff: float, source: str | None = None, frame: int | None = None) -> None:
    """Refuse a periodic frame whose neighbour list would be absurd (a cell in the wrong unit, a tiny cell):
    density above :data:`MAX_DENSITY` or more pairs than half the free memory holds. Names cell and pairs."""
    if not np.asarray(atoms.pbc).all():
        return
    volume = abs(float(np.linalg.det(atoms.cell.array)))
    density = len(atoms) / volume
    pairs = len(atoms) * density * 4.0 / 3.0 * np.pi * cutoff**3
    lengths = ", ".join(f"{x:.4g}" for x in atoms.cell.lengths())
    where = f"cell {lengths} Å ({len(atoms)} atoms in {volume:.4g} Å³)"
    if density > MAX_DENSITY:
        raise InputError(f"{where} has {density:.3g} atoms/Å³ (water 0.1, diamond 0.18): about {pairs:.3g} "
                         f"neighbour pairs within {cutoff:g} Å; is the cell or the length unit wrong?", source, frame)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if pairs * NEIGHBOUR_BYTES > free / 2:
        raise InputError(f"{where}: about {pairs:.3g} neighbour pairs within {cutoff:g} Å would need "
                         f"{pairs * NEIGHBOUR_BYTES / 2**30:.1f} GiB, more than half the free memory", source, frame)


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (both directions) within ``cutoff`` Å: (senders i, receivers j, vectors r_ij)."""
    positions = np.ascontiguousarray(atoms.get_positions(), dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        cell = np.ascontiguousarray(atoms.cell.array, dtype=np.float64)
        if not pbc.all():
            # vesin needs a full-rank box even along open directions: any non-periodic vector will do
            cell = atoms.cell.complete().array.astype(np.float64)
        positions = np.ascontiguousarray(wrap_positions(positions, cell, pbc))
    else:
        cell = np.zeros((3, 3))
    i, j, shifts = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=positions, box=cell, periodic=pbc if pbc.any() else False, quantities="ijS")
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    # S·cell written out: a (E×3)·(3×3) BLAS call would wake multi-threaded BLAS for no gain
    shifts = shifts.astype(np.float64)
    vectors = positions[j] - positions[i] + shifts[:, :1] * cell[0] + shifts[:, 1:2] * cell[1] + shifts[:, 2:] * cell[2]
    return i, j, vectors


def check_geometry(atoms: Atoms, source: str | None = None, frame: int | None = None) -> None:
    """The checks of :func:`frame_graph` that need no model, for frames whose APTs are interpolated rather than
    evaluated: an absurdly dense cell, and atoms closer than :data:`MIN_DISTANCE` Å."""
    check_neighbour_budget(atoms, MIN_DISTANCE, source, frame)
    # a 1 Å list holds few pairs (bonds) and its cell grid stays coarse: ~20× faster than one of 0.1 Å
    i, j, vectors = neighbour_list(atoms, GEOMETRY_CHECK_CUTOFF)
    lengths = np.linalg.norm(vectors, axis=1) if len(vectors) else np.zeros(0)
    if len(lengths) and lengths.min() < MIN_DISTANCE:
        k = int(np.argmin(lengths))
        raise InputError(f"atoms {i[k]} and {j[k]} are {lengths[k]:.3g} Å apart (closer than "
                         f"{MIN_DISTANCE} Å: the same atom twice?)", source, frame)


def frame_graph(atoms: Atoms, species: list[int], cutoff: float, source: str | None = None,
                frame: int | None = None) -> FrameGraph:
    """Graph of one frame for a model with the given species list and cutoff (Å)."""
    idx = species_indices(atoms, species, source, frame)
    check_neighbour_budget(atoms, cutoff, source, frame)
    i, j, vectors = neighbour_list(atoms, cutoff)
    if len(vectors):
        lengths = np.linalg.norm(vectors, axis=1)
        k = int(np.argmin(lengths))
        if lengths[k] < MIN_DISTANCE:
            raise InputError(f"atoms {i[k]} and {j[k]} are {lengths[k]:.3g} Å apart (closer than "
                             f"{MIN_DISTANCE} Å: the same atom twice?)", source, frame)
    return FrameGraph(idx, i, j, vectors)


def collate(graphs: list[FrameGraph], dtype: torch.dtype = torch.float32, device="cpu") -> Batch:
    """Concatenate frame graphs into one :class:`Batch`, offsetting atom indices."""
    offsets = np.cumsum([0] + [len(g.species) for g in graphs])
    species = np.concatenate([g.species for g in graphs])
    senders = np.concatenate([g.senders + o for g, o in zip(graphs, offsets)])
    receivers = np.concatenate([g.receivers + o for g, o in zip(graphs, offsets)])
    vectors = np.concatenate([g.vectors for g in graphs])
    frame = np.repeat(np.arange(len(graphs)), np.diff(offsets))
    return Batch(
        species=torch.from_numpy(species).to(device),
        senders=torch.from_numpy(senders).to(device),
        receivers=torch.from_numpy(receivers).to(device),
        vectors=torch.from_numpy(vectors).to(device=device, dtype=dtype),
        frame=torch.from_numpy(frame).to(device),
        n_frames=len(graphs),
    )
