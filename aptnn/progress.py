"""Progress for long work: a tqdm bar on a terminal; in logs (stderr not a terminal) one plain line every
``APTNN_PROGRESS_SECONDS`` (default 30) seconds, so batch logs never fill with carriage returns.

Also the warning format of the command-line tools: ``aptnn: warning: <message>`` on one line, without the
Python source line, and third-party chatter that says nothing to the user (MDAnalysis guessing masses it
never uses) filtered.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

from tqdm.auto import tqdm

QUIET_THIRD_PARTY = (
    r"Guessed all Masses",            # MDAnalysis: masses are not used
    r"Failed to guess the mass",
    r"No mass column",
    r"Reader has no dt information",  # MDAnalysis: aptnn takes times from --timestep
)


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LineProgress:
    """The few methods of a tqdm bar that aptnn uses, printing a plain line every ``interval`` seconds."""

    def __init__(self, total: int | None, desc: str, unit: str, interval: float, stream=None, iterable=None):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.iterable = iterable
        self.stream = stream or sys.stderr
        self.n = 0
        self._start = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def _print(self, now: float) -> None:
        rate = self.n / max(now - self._start, 1e-9)
        text = f"{self.desc}: {self.n}"
        if self.total:
            left = (self.total - self.n) / rate if rate > 0 else float("inf")
            text += f"/{self.total} {self.unit}s ({100 * self.n / self.total:.0f} %), {rate:.3g} {self.unit}/s"
            text += f", ETA {_eta(left)}" if left != float("inf") else ""
        else:
            text += f" {self.unit}s, {rate:.3g} {self.unit}/s"
        print(text, file=self.stream, flush=True)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def set_postfix_str(self, text: str) -> None:  # tqdm compatibility; shown in the next line
        self.desc = self.desc.split(" [", 1)[0] + f" [{text}]"

    def set_postfix(self, **values) -> None:
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        if self.n and time.monotonic() - self._start >= self.interval:
            self._print(time.monotonic())


def progress_bar(total: int | None = None, desc: str = "", unit: str = "frame", disable: bool = False,
                 initial: int = 0, iterable=None):
    """A progress bar with total and ETA where ``total`` is known: tqdm on a terminal, else :class:`LineProgress`.
    With ``iterable`` it is iterated like ``tqdm(iterable)`` (total from ``len`` when not given)."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if disable:
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)
    bar = LineProgress(total, desc, unit, float(os.environ.get("APTNN_PROGRESS_SECONDS", 30)), iterable=iterable)
    bar.n = initial
    return bar


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"aptnn: warning: {message}\n"


def setup_warnings() -> None:
    """Command-line entry points: one-line warnings, third-party noise filtered."""
    warnings.formatwarning = _one_line
    for pattern in QUIET_THIRD_PARTY:
        warnings.filterwarnings("ignore", message=pattern)
