"""Hostile SUBMITs: engines out of range, negative and endless durations, the 500 ms job timeout."""

from __future__ import annotations

import pytest

from vdrm.errors import InvalidArgument
from vdrm.fs import protocol
from vdrm.panfrost.gem import BO_NOEXEC
from vdrm.panfrost.job import JOB_TIMEOUT_NS

from .conftest import MiB, ioctl, make_device


@pytest.mark.parametrize("engine", [3, 4, 0xFFFFFFFF])
def test_submit_with_an_engine_out_of_range_is_einval(dev, render, engine):
    """SUBMIT engine=3 (or any number past the three job slots) is EINVAL, not an internal error."""
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    with pytest.raises(InvalidArgument, match="engine"):
        ioctl(render, "SUBMIT", bo_handles=[1], engine=engine)
    reply = protocol.handle(dev.ioctls, render, b"SUBMIT engine=3")
    assert reply.line.startswith(b"error EINVAL "), reply.line
    assert reply.exception is None


def test_a_negative_duration_is_refused_and_counters_never_go_down(dev, render):
    """duration=-5s is EINVAL; with profiling on, engine time and cycles stay non-negative."""
    dev.driver.profiling = True
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    with pytest.raises(InvalidArgument, match="negative"):
        ioctl(render, "SUBMIT", bo_handles=[1], duration=-5 * 10**9)
    dev.advance(10**9)
    text = dev.fdinfo(render)
    values = [line.split("\t")[1] for line in text.splitlines() if line.startswith(("drm-engine", "drm-cycles"))]
    assert values and not any(v.startswith("-") for v in values)


def test_an_endless_job_times_out_after_500ms_and_its_pages_come_back(dev):
    """A job of 2**63-1 ns times out at 500 ms with the kernel's log line; the closed client's pages are freed."""
    free = dev.pages.free_pages
    f = dev.open(128, pid=7)
    ioctl(f, "CREATE_BO", size=MiB, flags=BO_NOEXEC)
    ioctl(f, "SUBMIT", bo_handles=[1], engine=0, duration=(1 << 63) - 1)
    dev.release(f)
    assert dev.pages.free_pages == free - 256  # the running job still holds the BO
    dev.advance(JOB_TIMEOUT_NS - 1)
    assert dev.pages.free_pages == free - 256
    dev.advance(1)
    assert dev.pages.free_pages == free
    log = dev.log.read(0, 1 << 20).decode()
    assert "panfrost fde60000.gpu: gpu sched timeout, js=0, config=0x873" in log
    assert ", status=0x8, head=0x1, tail=0x1, sched_job=" in log
    sched = dev.driver.sched
    assert sched.jobs_timedout == 1 and sched.resets == 1
    # the fragment slot is free again for every client
    g = dev.open(128, pid=8)
    ioctl(g, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    job = ioctl(g, "SUBMIT", bo_handles=[1], engine=0, duration=10**6)
    assert job["state"] == "running"


def test_a_timed_out_job_adds_no_engine_time(dev, render):
    """Engine time accrues for jobs that complete, not for the one the reset killed."""
    dev.driver.profiling = True
    ioctl(render, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    ioctl(render, "SUBMIT", bo_handles=[1], engine=1, duration=10**6)
    ioctl(render, "SUBMIT", bo_handles=[1], engine=1, duration=10**10)
    dev.advance(2 * 10**9)
    usage = render.driver_priv.usage
    assert usage.elapsed_ns[1] == 10**6
    assert ioctl(render, "WAIT_BO", handle=1) == {}


def test_job_timeout_can_be_disabled_per_device():
    """job_timeout_ns=0 (a scenario's job_timeout = "0s") lets an hour-long job run."""
    dev = make_device(job_timeout_ns=0)
    f = dev.open(128)
    ioctl(f, "CREATE_BO", size=4096, flags=BO_NOEXEC)
    ioctl(f, "SUBMIT", bo_handles=[1], duration=3600 * 10**9)
    dev.advance(10**9)
    assert f.handles.lookup(1).is_active()
