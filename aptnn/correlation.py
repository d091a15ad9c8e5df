"""Streaming FFT correlation of dM/dt series: exact lag sums over arbitrarily long series in bounded memory.

For series a(t), b(t) (vectors, e·Å/fs) the accumulator collects, for lags τ = 0…L,
    S_ab(τ) = Σ_t a(t)·b(t+τ)    and the pair counts n(τ),
chunk by chunk: each chunk is correlated together with the last L frames of the previous chunk, and the pairs
that lie entirely in that tail (already counted) are subtracted, so the sums equal those of one FFT over the
whole series. Pairs are booked to the time block of their later frame, which gives block averages for error
bars; each block remembers its trajectory (file), so :meth:`CorrelationAccumulator.correlation_parts` can split
the pooled correlation into per-file shares (for per-file prefactors). Cost O(N log chunk), memory O(chunk + L).
"""
from __future__ import annotations

import numpy as np
from scipy import fft


def lag_sums(a: np.ndarray, b: np.ndarray | None, max_lag: int) -> np.ndarray:
    """Σ_t a(t)·b(t+τ) (+ the same with a and b swapped if ``b`` is given) for τ = 0…max_lag.

    ``a``, ``b``: (n, 3). With ``b`` None the autocorrelation sum of ``a``. Zero-padded FFT, O(n log n).
    """
    n = len(a)
    out = np.zeros(max_lag + 1)
    if n == 0:
        return out
    size = fft.next_fast_len(n + max_lag + 1, real=True)
    fa = fft.rfft(a, size, axis=0)
    if b is None:
        power = (fa.conj() * fa).real.sum(axis=1)
    else:
        fb = fft.rfft(b, size, axis=0)
        power = 2 * (fa.conj() * fb).real.sum(axis=1)
    corr = fft.irfft(power, size)[: min(max_lag + 1, n)]
    out[: len(corr)] = corr
    return out


def pair_counts(n: int, max_lag: int) -> np.ndarray:
    """Number of pairs (t, t+τ) in a series of n frames for τ = 0…max_lag."""
    return np.clip(n - np.arange(max_lag + 1), 0, None).astype(np.float64)


class CorrelationAccumulator:
    """Accumulate auto- and cross-correlation lag sums of several vector series, block by block.

    ``pairs``: list of (i, j) series indices; (i, i) is an autocorrelation, (i, j) with i ≠ j the symmetrised
    cross term ⟨a_i(0)·a_j(t)⟩ + ⟨a_j(0)·a_i(t)⟩. Call :meth:`start_trajectory` for each independent series
    (file), :meth:`add` with consecutive chunks, :meth:`new_block` to start the next error-bar block.
    ``block_trajectory[k]`` is the trajectory index (0, 1, …) of block k.
    """

    def __init__(self, pairs: list[tuple[int, int]], max_lag: int):
        self.pairs = list(pairs)
        self.max_lag = max_lag
        self.blocks_sums: list[np.ndarray] = []   # per block: (n_pairs, L+1)
        self.blocks_counts: list[np.ndarray] = []  # per block: (L+1,)
        self.block_trajectory: list[int] = []
        self._tail: np.ndarray | None = None
        self._trajectory = -1

    def start_trajectory(self) -> None:
        self._tail = None
        self._trajectory += 1
        self.new_block()

    def new_block(self) -> None:
        self.blocks_sums.append(np.zeros((len(self.pairs), self.max_lag + 1)))
        self.blocks_counts.append(np.zeros(self.max_lag + 1))
        self.block_trajectory.append(max(self._trajectory, 0))

    def _sums(self, x: np.ndarray) -> np.ndarray:
        return np.stack([lag_sums(x[:, i], None if i == j else x[:, j], self.max_lag) for i, j in self.pairs])

    def add(self, chunk: np.ndarray) -> None:
        """Add consecutive frames ``chunk`` (n, n_series, 3) of the current trajectory to the current block."""
        if not self.blocks_sums:
            self.start_trajectory()
        tail = self._tail if self._tail is not None else chunk[:0]
        joined = np.concatenate([tail, chunk]) if len(tail) else chunk
        sums = self._sums(joined)
        counts = pair_counts(len(joined), self.max_lag)
        if len(tail):
            sums -= self._sums(tail)
            counts -= pair_counts(len(tail), self.max_lag)
        self.blocks_sums[-1] += sums
        self.blocks_counts[-1] += counts
        self._tail = joined[-self.max_lag:] if self.max_lag else joined[:0]

    def correlation(self, biased: bool = False, blocks: bool = False) -> np.ndarray:
        """Correlation functions (n_pairs, L+1) in (e·Å/fs)², or per block (n_blocks, n_pairs, L+1).

        Unbiased: divide each lag by its pair count; biased: by the number of frames (lag 0 count).
        """
        sums = np.stack(self.blocks_sums)
        counts = np.stack(self.blocks_counts)
        if not blocks:
            sums, counts = sums.sum(0, keepdims=True), counts.sum(0, keepdims=True)
        norm = np.repeat(counts[:, :1], counts.shape[1], axis=1) if biased else counts
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(norm[:, None, :] > 0, sums / norm[:, None, :], 0.0)
        return corr if blocks else corr[0]

    def correlation_parts(self, biased: bool = False) -> np.ndarray:
        """Per-trajectory shares (n_trajectories, n_pairs, L+1) of :meth:`correlation`, in (e·Å/fs)².

        Share f is trajectory f's lag sums divided by the pooled normalisation (all pair counts, or all frames
        if ``biased``), so the shares add up to ``correlation(biased)``: each trajectory enters with weight
        n_f(τ)/Σ n(τ), its pair-count weight.
        """
        sums = np.stack(self.blocks_sums)
        counts = np.stack(self.blocks_counts).sum(0)
        traj = np.asarray(self.block_trajectory)
        parts = np.zeros((traj.max() + 1,) + sums.shape[1:])
        np.add.at(parts, traj, sums)
        norm = np.full_like(counts, counts[0]) if biased else counts
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0, parts / norm, 0.0)
