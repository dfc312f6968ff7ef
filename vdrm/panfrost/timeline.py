"""The device timeline: timed events on the virtual clock, clock steps and ground truth.

A scenario (or a test) schedules actions at device-clock times; :meth:`Timeline.advance`
moves the virtual clock by one *step*, running every due action at its own time in order
and bringing the job timeline along. The ground truth (:meth:`Timeline.truth`) describes
one client over the last step: per engine the busy time, its delta and the utilisation a
parser computes from two fdinfo samples taken at the step's ends (``delta / step``; it
can exceed 1, since the kernel adds a job's time when the job completes), and memory per
category in bytes, exactly as the fdinfo lines count it.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Callable

from vdrm.drm.fdinfo import memory_stats
from vdrm.errors import InvalidArgument
from vdrm.panfrost.job import FDINFO_ENGINES

KTIME_MAX = (1 << 63) - 1  # include/linux/ktime.h: ktime_t is a signed 64-bit count of ns

if TYPE_CHECKING:
    from vdrm.drm.device import DrmDevice
    from vdrm.drm.file import DrmFile
    from vdrm.panfrost.job import Scheduler


class Timeline:
    """Timed actions and clock steps for one device."""

    def __init__(self, dev: "DrmDevice", sched: "Scheduler"):
        self.dev = dev
        self.sched = sched
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        now = dev.clock.now_ns()
        self._last_step: tuple[int, int, dict[int, list[int]]] = (now, now, {})

    def schedule(self, at_ns: int, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at_ns``."""
        self._seq += 1
        heapq.heappush(self._events, (at_ns, self._seq, action))

    def pending(self) -> int:
        return len(self._events)

    def advance(self, delta_ns: int) -> int:
        """Move the virtual clock forward by ``delta_ns``, running due events in order."""
        clock = self.dev.clock
        if not clock.virtual:
            raise InvalidArgument("the clock is real: time cannot be advanced (mount with --clock virtual)")
        if delta_ns < 0:
            raise InvalidArgument(f"the virtual clock cannot go backwards ({delta_ns} ns)")
        start = clock.now_ns()
        target = start + delta_ns
        if target > KTIME_MAX:
            raise InvalidArgument(f"the virtual clock cannot pass KTIME_MAX ({KTIME_MAX} ns, ktime_t is s64)")
        before = self._usage_snapshot()
        self._run_due(target)
        clock.set(target)
        self.sched.update()
        self._last_step = (start, target, before)
        return target

    def run_due(self) -> None:
        """Run the events due at the clock's current time."""
        self._run_due(self.dev.clock.now_ns())

    def _run_due(self, until_ns: int) -> None:
        clock = self.dev.clock
        while self._events and self._events[0][0] <= until_ns:
            at, _, action = heapq.heappop(self._events)
            if at > clock.now_ns():
                clock.set(at)
            self.sched.update()
            action()
        self.sched.update()

    def _usage_snapshot(self) -> dict[int, list[int]]:
        self.sched.update()
        return {cid: list(f.driver_priv.usage.elapsed_ns) for cid, f in self.dev.files.items()}

    def truth(self, file: "DrmFile") -> dict[str, Any]:
        """The ground truth for ``file`` over the last clock step (JSON-ready)."""
        self.sched.update()
        start, end, before = self._last_step
        step = end - start
        usage = file.driver_priv.usage
        drv = self.dev.driver
        engines = {}
        for slot, engine in enumerate(FDINFO_ENGINES):
            prev = before.get(file.client_id, usage.elapsed_ns)[slot]
            delta = usage.elapsed_ns[slot] - prev
            engines[engine] = {"busy_ns": usage.elapsed_ns[slot], "delta_ns": delta,
                               "utilisation": (delta / step) if step else None,
                               "cycles": usage.cycles[slot], "maxfreq_hz": drv.max_freq_hz[slot],
                               "curfreq_hz": drv.cur_freq_hz[slot]}
        # the same revision the fdinfo text is rendered in: a parser of that text computes these
        stats = memory_stats(file, drv.kernel, use_rss=drv.fdinfo_revision != "docs")
        return {
            "drm-client-id": file.client_id,
            "drm-driver": drv.name,
            "minor": file.minor,
            "pid": file.pid,
            "comm": file.comm,
            "clock": {"now_ns": self.dev.clock.now_ns(), "step_start_ns": start, "step_end_ns": end,
                      "step_ns": step},
            "profiling": bool(drv.profiling),
            "engines": engines,
            "memory": {"total": stats.total, "shared": stats.shared, "resident": stats.resident,
                       "purgeable": stats.purgeable, "active": stats.active},
        }
