"""The short soak-and-fuzz run (python -m vdrm.fuzz --lines 20000) through the real mount."""

from __future__ import annotations

import os

import pytest

from vdrm.fuzz import soak

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting and becoming other users needs root")


def test_a_short_soak_ends_clean() -> None:
    """20,000 fuzzed lines from root and two users with SIGKILLs and shared fds: no traceback, EIO, hang, leak or client left; RSS bounded."""
    figures = soak.soak(20_000, workers=12, kill_interval=0.25, seed=20)
    print(figures.report())
    assert figures.lines >= 20_000
    assert figures.tracebacks == 0, figures.errors
    assert figures.eio == 0 and figures.hangs == 0
    assert figures.pages_leaked == 0 and figures.clients_left == 0
    assert figures.kills > 0 and figures.open_refused > 0  # the storm and the permission model happened
    assert figures.rss_growth_kib <= 64 << 10
