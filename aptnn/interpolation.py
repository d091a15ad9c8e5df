"""APTs every K steps: the network runs on every K-th step ("nodes"), the APTs in between are interpolated in time.

The APT changes on the time scale of molecular vibrations (an O–H stretch period is ≥ 9 fs) while MD steps are
0.25–1 fs, so evaluating the network at every step wastes most of its cost. Positions and velocities stay exact
at every step; only P_i(t) is interpolated, then the chosen estimator (:mod:`aptnn.estimators`) runs at every
step as before.

Interpolation: cubic Lagrange through four consecutive nodes, the interval's two ends and one node on either
side (one-sided at the ends of a run, lower order when a run has fewer than four nodes). Its error for a
harmonic modulation of period T is ~(3/128)(2πKΔt/T)⁴ of the modulation amplitude at mid-interval: 0.4 % of the
O–H-stretch part of the APT at KΔt = 1 fs. Nodes are the steps with step % K == 0 (so results do not depend on
where a run, a resumed run or a shard starts), plus the first step given when that is not one (a restarted
i-PI run) and the last step of a run (so no step is extrapolated). At K = 1 every step is a node and the APTs
are the network's, unchanged.

Units: whatever the APT arrays hold (e) is interpolated linearly in them; steps are integers (time = step × Δt).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable

import numpy as np

#: stream attribute ``apt_interpolation``: how APTs between nodes were obtained
INTERPOLATION = "lagrange-cubic"


def every_from(dt_fs: float, every: int | None = None, interval_fs: float | None = None) -> int:
    """K for frames ``dt_fs`` apart: ``every`` if given, else the largest K with K·Δt ≤ ``interval_fs``
    (at least 1); neither given: 1 (every step)."""
    if every is not None:
        return max(1, int(every))
    if interval_fs is None or not dt_fs or dt_fs <= 0:
        return 1
    return max(1, int(math.floor(interval_fs / dt_fs * (1 + 1e-9))))


def lagrange_weights(nodes: list[int], x: float) -> np.ndarray:
    """Weights w_j with f(x) ≈ Σ_j w_j f(nodes[j]) (Lagrange polynomial through all ``nodes``)."""
    t = np.asarray(nodes, dtype=float)
    w = np.ones(len(t))
    for j in range(len(t)):
        for m in range(len(t)):
            if m != j:
                w[j] *= (x - t[m]) / (t[j] - t[m])
    return w


def combine(weights: np.ndarray, values: list) -> Any:
    """Σ_j w_j values[j] for arrays, or elementwise for tuples of arrays (None stays None)."""
    first = values[0]
    if isinstance(first, tuple):
        return tuple(combine(weights, [v[k] for v in values]) for k in range(len(first)))
    if first is None:
        return None
    out = weights[0] * values[0]
    for w, v in zip(weights[1:], values[1:]):
        out = out + w * v
    return out


class APTInterpolator:
    """Steps in, in order; ``(step, payload, apt)`` out, in the same order, once the nodes they need are known.

    The producer asks :meth:`is_node` for every step and evaluates the network only there; it passes the APT
    (an array, or a tuple of arrays, e.g. bead APTs and the APT at the centroid) with :meth:`push`. Output lags
    the input by up to 2K steps (3K at the start of a run); :meth:`finish` evaluates the last step (through
    ``evaluate(payload)``) when it is no node and empties the queue.
    """

    def __init__(self, every: int):
        if every < 1:
            raise ValueError(f"APTs every {every} steps: K must be ≥ 1")
        self.every = every
        self.nodes: dict[int, Any] = {}
        self.pending: deque[tuple[int, Any]] = deque()
        self.last_step: int | None = None

    def is_node(self, step: int) -> bool:
        """Whether the network must run at ``step`` (the next step to be pushed)."""
        return step % self.every == 0 or self.last_step is None

    def push(self, step: int, payload: Any, apt: Any = None) -> list[tuple[int, Any, Any]]:
        """Add ``step`` (after the previous one) with ``apt`` when it is a node; returns the steps now ready."""
        if self.last_step is not None and step <= self.last_step:
            raise ValueError(f"step {step} after step {self.last_step}: steps must increase")
        node = self.is_node(step)
        if node and apt is None:
            raise ValueError(f"step {step} is a node: its APT is needed")
        self.last_step = step
        if node:
            self.nodes[step] = apt
        self.pending.append((step, payload))
        return self._ready(final=False)

    def finish(self, evaluate: Callable[[Any], Any] | None = None) -> list[tuple[int, Any, Any]]:
        """The run ended: the last step becomes a node (``evaluate(payload)`` → its APT) and every step is
        returned. Without ``evaluate`` the steps after the last node are extrapolated."""
        if self.pending and self.pending[-1][0] not in self.nodes and evaluate is not None:
            step, payload = self.pending[-1]
            self.nodes[step] = evaluate(payload)
        return self._ready(final=True)

    def _ready(self, final: bool) -> list[tuple[int, Any, Any]]:
        out = []
        steps = sorted(self.nodes)
        while self.pending:
            step, payload = self.pending[0]
            if step in self.nodes:
                apt = self.nodes[step]
            else:
                i = int(np.searchsorted(steps, step, side="right")) - 1  # steps[i] < step
                lo = max(i - 1, 0)
                hi = lo + 3
                if hi >= len(steps):
                    if not final:
                        break
                    hi, lo = len(steps) - 1, max(0, len(steps) - 4)
                stencil = steps[lo:hi + 1]
                apt = combine(lagrange_weights(stencil, step), [self.nodes[s] for s in stencil])
            out.append((step, payload, apt))
            self.pending.popleft()
        self._forget(steps)
        return out

    def _forget(self, steps: list[int]) -> None:
        """Drop nodes no pending or future step needs (all but the three before the next pending step: a
        final one-sided stencil reaches that far back)."""
        upto = self.pending[0][0] if self.pending else (self.last_step or 0) + 1
        before = [s for s in steps if s < upto]
        for s in before[:-3]:
            del self.nodes[s]

    def needed_from(self, first_output: int) -> int:
        """The first node step whose APT the rows from step ``first_output`` on need (a resumed run computes
        the nodes from there on, and rows only from ``first_output``): two nodes before its interval, which
        a one-sided stencil at the end of a run reaches."""
        return max(0, (first_output // self.every - 2) * self.every)


class NodeEvaluator:
    """The network side of every producer: steps → APTs at the nodes (batched) → APTs of every step.

    ``evaluate(payloads, first_step)`` returns the APTs of the payloads' geometries (one item per payload, in
    order; ``first_step``: the step of the first, for error messages), called with at most ``batch_size``
    payloads at once. :meth:`feed` takes ``(step, payload)`` pairs in step order and returns the
    ``(step, payload, apt)`` triples that are ready (all of them at K = 1, where every step is evaluated);
    :meth:`finish` returns the rest at the end of a run.
    """

    def __init__(self, every: int, evaluate: Callable[[list, int], list], batch_size: int = 1):
        self.every, self.evaluate, self.batch_size = every, evaluate, max(1, batch_size)
        self.interpolator = APTInterpolator(every) if every > 1 else None

    def _batched(self, items: list[tuple[int, Any]]) -> list:
        apts = []
        for k in range(0, len(items), self.batch_size):
            part = items[k:k + self.batch_size]
            apts += list(self.evaluate([p for _, p in part], part[0][0]))
        return apts

    def feed(self, items: list[tuple[int, Any]]) -> list[tuple[int, Any, Any]]:
        if self.interpolator is None:
            return [(s, p, a) for (s, p), a in zip(items, self._batched(items))]
        interp, first = self.interpolator, self.interpolator.last_step is None
        nodes = [(s, p) for j, (s, p) in enumerate(items) if s % self.every == 0 or (first and j == 0)]
        apts = dict(zip([s for s, _ in nodes], self._batched(nodes)))
        out = []
        for step, payload in items:
            out += interp.push(step, payload, apts.get(step))
        return out

    def finish(self) -> list[tuple[int, Any, Any]]:
        if self.interpolator is None:
            return []
        last = self.interpolator.pending[-1][0] if self.interpolator.pending else 0
        return self.interpolator.finish(lambda payload: self.evaluate([payload], last)[0])

    def needed_from(self, first_output: int) -> int:
        """The first step to give :meth:`feed` when rows are wanted from step ``first_output`` on."""
        return self.interpolator.needed_from(first_output) if self.interpolator else first_output
