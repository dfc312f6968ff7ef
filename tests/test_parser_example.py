"""An example regression test for an fdinfo parser, written the way a parser author would with vdrm.

The parser under test is ``tests/tools/fdinfo_top.py`` (swap in your own tool's command
line in ``tests/tools/under_vdrm.py``). Each test mounts a scenario with ``mount.py --run``,
lets the parser sample ``/proc/*/fdinfo`` twice across one step of the virtual clock, and
compares what it reports with vdrm's ground truth (``truth.json``) for that same step.
"""

from __future__ import annotations

import pytest

from tests.tools.under_vdrm import sample_and_truth


def test_client_id_past_u32_is_kept_whole() -> None:
    """The parser reports drm-client-id 4294967301 (not 5, as a u32 would) with the true usage and memory."""
    report, [truth] = sample_and_truth("bug-client-id-past-u32.toml", step="1s")
    [client] = report["clients"]
    assert client["client_id"] == truth["drm-client-id"] == 4294967301
    assert client["engines"]["fragment"]["utilisation"] == pytest.approx(truth["engines"]["fragment"]["utilisation"])
    assert client["memory"]["memory"]["resident"] == truth["memory"]["resident"]


@pytest.mark.parametrize("warm_up,step", [("900ms", "100ms"), ("960ms", "80ms")])
def test_utilisation_matches_the_ground_truth(warm_up: str, step: str) -> None:
    """Over an ordinary step the parser's fragment utilisation equals truth.json's."""
    report, [truth] = sample_and_truth("bug-engine-time-backwards.toml", warm_up=warm_up, step=step)
    [client] = report["clients"]
    assert client["engines"]["fragment"]["utilisation"] == pytest.approx(truth["engines"]["fragment"]["utilisation"])


def test_engine_time_going_backwards_reads_as_idle_not_negative() -> None:
    """Across the step where fragment time drops by 50 ms (truth: -50 %) the parser reports 0 %, never negative."""
    report, [truth] = sample_and_truth("bug-engine-time-backwards.toml", warm_up="980ms", step="20ms")
    assert truth["engines"]["fragment"]["delta_ns"] < 0
    [client] = report["clients"]
    assert client["engines"]["fragment"]["utilisation"] == 0.0
