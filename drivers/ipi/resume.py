"""Continuing an existing stream file when aptnn-ipi (and i-PI) restart; lengths Å, times fs.

The first step a new connection receives (positions ``pos``, (B, N, 3) Å) is located in the stream:

* it equals the step that completed a stored row k (fingerprints ``/check``, :func:`frame_check`): i-PI
  restarted from a checkpoint at or behind the stream's end. Rows after k are dropped and the stream
  continues at that step, without gap or duplicate (``velocity`` also needs the positions of the step
  before, kept for the last ``queue_size + 2`` steps);
* it is the step after the stream's last step (extrapolated from the last two stored steps): i-PI ran on
  while only aptnn-ipi was restarted;
* anything else (the restart lies ahead of the stream: steps were lost; or another run) is refused.
"""
from __future__ import annotations

import numpy as np

from aptnn.drivers.ipi.processor import ClientError
from aptnn.estimators import canonical, minimum_image
from aptnn.io.stream import frame_check, read_info, read_state

CHUNK = 1 << 16


def tolerance(pos: np.ndarray) -> float:
    """Fingerprint tolerance (Å): positions that went through i-PI's restart text (default ``%16.8e``, 9
    digits) match; positions one MD step apart (≳ 10⁻³ Å) do not."""
    return 1e-6 + 2e-8 * float(np.abs(pos).max())


def find_row(check, n: int, fp: np.ndarray, tol: float) -> int | None:
    """The last row < ``n`` whose fingerprint equals ``fp`` within ``tol`` (searched from the end)."""
    for end in range(n, 0, -CHUNK):
        start = max(0, end - CHUNK)
        hit = np.nonzero(np.abs(check[start:end] - fp).max(axis=1) < tol)[0]
        if len(hit):
            return start + int(hit[-1])
    return None


def _stored_steps(state: dict) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """Positions and cells of the steps kept in the file's state (last two, and the velocity ring)."""
    out = {}
    for steps, pos, cells in (("ring_steps", "ring_positions", "ring_cells"), ("steps", "positions", "cell")):
        if steps in state:
            for k, s in enumerate(state[steps]):
                if np.isfinite(s):
                    c = state[cells][k]
                    out[int(s)] = (state[pos][k], c if np.abs(c).sum() else None)
    return out


def continue_stream(proc, pos: np.ndarray, cell: np.ndarray | None) -> None:
    """Open ``proc``'s existing stream, locate the first step ``pos`` in it, truncate what lies beyond, and
    set ``proc.step_offset`` and the estimator's history; a :class:`ClientError` when it cannot."""
    s, est = proc.settings, proc.estimator
    state = read_state(s.output)
    if "steps" not in state or np.isnan(state["steps"][-1]):
        raise ClientError(f"{s.output}: exists but holds no {s.engine} client state to continue; use --overwrite")
    if state["positions"].shape[1:] != pos.shape:
        raise ClientError(f"{s.output}: stored beads/atoms {state['positions'].shape[1:3]} differ from {s.engine}'s "
                          f"{pos.shape[:2]}; use --overwrite or another output")
    info = read_info(s.output)
    if info.estimator is not None and canonical(info.estimator, "increment", s.nbeads) != proc.label:
        raise ClientError(f"{s.output}: written with the {info.estimator!r} estimator, not {proc.label!r}; use "
                          "--estimator accordingly, --overwrite or another output")
    proc._open(cell)
    w = proc.writer
    n, last = w.n_frames, int(state["steps"][-1])
    stored = _stored_steps(state)
    fp, tol = frame_check(pos), tolerance(pos)
    k = find_row(w.file["check"], n, fp, tol)
    times = w.file["time"]
    end_step = proc.row_step(float(times[n - 1])) if n else None
    if k is not None:
        step = proc.row_step(float(times[k]))
    elif last in stored and np.abs(frame_check(stored[last][0]) - fp).max() < tol and \
            (end_step == last if n else last <= 1):
        step = last  # the last step again, before any row of it (start of a run)
    else:
        _continue_after(proc, pos, state, stored, n, last, end_step)
        return
    with proc.protect():
        if k is not None and k + 1 < n:
            w.truncate(k + 1)
    proc.step_offset = step
    est.history = []
    if est.base == "velocity" and step > 0:
        if step - 1 not in stored:
            kept = sorted(stored)
            raise ClientError(f"{s.output}: {s.engine} restarts at stream step {step}, but the velocity estimator "
                              f"needs the positions of step {step - 1}, and the stream keeps only steps "
                              f"{kept[0]}–{kept[-1]} (the last --queue + 2): restart {s.engine} from a later "
                              "restart file, use --estimator increment, or --overwrite")
        r, c = stored[step - 1]
        est.history = [(step - 1, r, np.zeros(r.shape + (3,)), c)]
    proc.ring_last = step - 1


def _continue_after(proc, pos, state, stored, n: int, last: int, end_step: int | None) -> None:
    """The first step is not in the stream: accept it only as the step right after the last one."""
    s, est = proc.settings, proc.estimator
    steps = [int(x) for x in state["steps"] if np.isfinite(x)]
    cell = state["cell"][-1] if np.abs(state["cell"][-1]).sum() else None
    r1 = state["positions"][-1]
    jump = float(np.abs(minimum_image(pos - r1, cell)).max())
    if len(steps) == 2:
        r0 = state["positions"][0]
        stride = float(np.abs(minimum_image(r1 - r0, cell)).max())
        off = float(np.abs(minimum_image(pos - (2 * r1 - r0), cell)).max())
        follows = off < 0.5 * stride
        found = f"{off:.3g} Å off the extrapolated next step (one step moves atoms up to {stride:.3g} Å)"
    else:
        follows, found = jump < 0.1, f"{jump:.3g} Å from step {last}"
    rows = f"{n} rows (steps up to {end_step})" if n else "no rows"
    if not follows or not ((end_step == last) if n else last <= 1):
        raise ClientError(f"{s.output}: cannot continue: {s.engine}'s first positions match none of the stream's "
                          f"{rows} and do not follow its last step {last} ({found}): the restart lies ahead of "
                          "the stream (steps lost, e.g. the client was killed with a full queue) or belongs to "
                          f"another run. Restart {s.engine} from a restart file at or before step {last}, or use "
                          "--overwrite or another output")
    for k, step in enumerate(state["steps"]):
        if np.isfinite(step):
            c = state["cell"][k] if np.abs(state["cell"][k]).sum() else None
            est.history.append((int(step), state["positions"][k], state["apt"][k], c))
    proc.step_offset = last + 1
    proc.ring_last = last
