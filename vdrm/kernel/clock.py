"""The device clock: real (``CLOCK_MONOTONIC``) or virtual (advanced only when told).

Everything that depends on time (job progress, engine busy time, fence state, WAIT_BO
deadlines, kernel log timestamps) reads one :class:`Clock`. Engine state is computed from
``now_ns()`` lazily, so nothing needs timers: with the virtual clock, a parser's two
samples see exact deltas, and a scenario is byte-for-byte reproducible.
"""

from __future__ import annotations

import time

from vdrm.errors import InvalidArgument


class Clock:
    """A source of nanoseconds that never goes backwards."""

    virtual = False

    def now_ns(self) -> int:
        raise NotImplementedError


class MonotonicClock(Clock):
    """The host's ``CLOCK_MONOTONIC``, the clock WAIT_BO deadlines are written in."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


class VirtualClock(Clock):
    """A clock that moves only through :meth:`advance` / :meth:`set`."""

    virtual = True

    def __init__(self, start_ns: int = 0):
        if start_ns < 0:
            raise InvalidArgument(f"clock start {start_ns} ns is negative")
        self._now = start_ns
        self.last_step_ns = 0  # size of the most recent advance (ground-truth window)

    def now_ns(self) -> int:
        return self._now

    def advance(self, delta_ns: int) -> int:
        """Move time forward by ``delta_ns`` (>= 0) and return the new time."""
        if delta_ns < 0:
            raise InvalidArgument(f"the virtual clock cannot go backwards ({delta_ns} ns)")
        self._now += delta_ns
        self.last_step_ns = delta_ns
        return self._now

    def set(self, now_ns: int) -> int:
        """Jump to ``now_ns`` (not earlier than now) and return it."""
        return self.advance(now_ns - self._now)
