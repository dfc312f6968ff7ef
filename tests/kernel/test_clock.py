"""The device clock: virtual time moves only when told, and never backwards."""

from __future__ import annotations

import pytest

from vdrm.errors import InvalidArgument
from vdrm.kernel.clock import MonotonicClock, VirtualClock


def test_virtual_clock_moves_only_when_advanced():
    """A virtual clock reads the same until advanced, then moves by exactly the step."""
    clock = VirtualClock(5)
    assert clock.now_ns() == clock.now_ns() == 5
    assert clock.advance(10) == 15 and clock.last_step_ns == 10
    assert clock.set(20) == 20 and clock.last_step_ns == 5


def test_virtual_clock_refuses_to_go_backwards():
    """Negative steps, a set into the past and a negative start are EINVAL."""
    clock = VirtualClock(100)
    with pytest.raises(InvalidArgument):
        clock.advance(-1)
    with pytest.raises(InvalidArgument):
        clock.set(99)
    with pytest.raises(InvalidArgument):
        VirtualClock(-1)


def test_monotonic_clock_is_not_virtual_and_does_not_go_back():
    """The real clock follows CLOCK_MONOTONIC."""
    clock = MonotonicClock()
    a = clock.now_ns()
    assert not clock.virtual and clock.now_ns() >= a
