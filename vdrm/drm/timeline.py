"""The machine's timeline: timed events on the virtual clock, clock steps, the last step.

A scenario (or a test) schedules actions at clock times; :meth:`Timeline.advance` moves
the virtual clock by one *step*, running every due action at its own time in order and
bringing every attached GPU's job timeline along (``GpuDevice.update``). One timeline
serves all GPUs of a machine, since they share one clock.

Before a step it records every client's engine busy time (``GpuDevice.engine_busy_ns``),
so the ground truth (``GpuDevice.truth``, one per driver) can give the delta a parser
computes from two fdinfo samples taken at the step's ends. Nothing here knows a driver.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from vdrm.errors import InvalidArgument

KTIME_MAX = (1 << 63) - 1  # include/linux/ktime.h: ktime_t is a signed 64-bit count of ns

if TYPE_CHECKING:
    from vdrm.drm.file import DrmFile
    from vdrm.kernel.clock import Clock


class Attached(Protocol):
    """What the timeline needs of a GPU: bring it to now, and its clients' busy times."""

    def update(self) -> None: ...

    def busy_snapshot(self) -> dict[int, list[int]]: ...


@dataclass(frozen=True)
class Step:
    """The last clock step: its ends and each client's engine busy ns before it."""

    start_ns: int
    end_ns: int
    busy_before: dict[int, list[int]] = field(default_factory=dict)

    @property
    def step_ns(self) -> int:
        return self.end_ns - self.start_ns


class Timeline:
    """Timed actions and clock steps for every GPU on one clock."""

    def __init__(self, clock: "Clock"):
        self.clock = clock
        self.devices: list[Attached] = []
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        now = clock.now_ns()
        self.last_step = Step(now, now)

    def attach(self, device: Attached) -> None:
        self.devices.append(device)

    def schedule(self, at_ns: int, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at_ns``."""
        self._seq += 1
        heapq.heappush(self._events, (at_ns, self._seq, action))

    def pending(self) -> int:
        return len(self._events)

    def update(self) -> None:
        for device in self.devices:
            device.update()

    def advance(self, delta_ns: int) -> int:
        """Move the virtual clock forward by ``delta_ns``, running due events in order."""
        clock = self.clock
        if not clock.virtual:
            raise InvalidArgument("the clock is real: time cannot be advanced (mount with --clock virtual)")
        if delta_ns < 0:
            raise InvalidArgument(f"the virtual clock cannot go backwards ({delta_ns} ns)")
        start = clock.now_ns()
        target = start + delta_ns
        if target > KTIME_MAX:
            raise InvalidArgument(f"the virtual clock cannot pass KTIME_MAX ({KTIME_MAX} ns, ktime_t is s64)")
        before = self._busy_snapshot()
        self._run_due(target)
        clock.set(target)
        self.update()
        self.last_step = Step(start, target, before)
        return target

    def run_due(self) -> None:
        """Run the events due at the clock's current time."""
        self._run_due(self.clock.now_ns())

    def _run_due(self, until_ns: int) -> None:
        clock = self.clock
        while self._events and self._events[0][0] <= until_ns:
            at, _, action = heapq.heappop(self._events)
            if at > clock.now_ns():
                clock.set(at)
            self.update()
            action()
        self.update()

    def _busy_snapshot(self) -> dict[int, list[int]]:
        self.update()
        out: dict[int, list[int]] = {}
        for device in self.devices:
            out.update(device.busy_snapshot())
        return out

    def busy_before(self, file: "DrmFile", now: list[int]) -> list[int]:
        """``file``'s engine busy ns at the last step's start (``now`` if it opened since)."""
        return self.last_step.busy_before.get(file.client_id, now)
