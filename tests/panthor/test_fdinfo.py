"""Panthor fdinfo per dialect, byte for byte, and the sysfs profiling mask's semantics."""

from __future__ import annotations

import pytest

from vdrm.errors import InvalidArgument

from .conftest import make_device, ok


def _busy_client(kernel, profiling):
    dev = make_device(kernel=kernel, profiling=profiling)
    f = dev.open(128, pid=5, comm="vkcube")
    ok(dev, f, "VM_CREATE")
    ok(dev, f, "BO_CREATE size=1M")
    ok(dev, f, "VM_BIND vm_id=1 bo_handle=1 va=0x100000 size=1M")
    ok(dev, f, "GROUP_CREATE vm_id=1 queues=4096")
    ok(dev, f, "GROUP_SUBMIT group_handle=1 duration=7ms")
    dev.advance(10_000_000)
    return dev, f


HEAD = "pos:\t0\nflags:\t02400002\nmnt_id:\t0\nino:\t0\n"
GPU = "drm-maxfreq-panthor:\t1000000000 Hz\ndrm-curfreq-panthor:\t1000000000 Hz\n"
MEM_614 = "drm-total-memory:\t1 MiB\ndrm-shared-memory:\t0\ndrm-resident-memory:\t1 MiB\n"
MEM_611 = ("drm-total-memory:\t1 MiB\ndrm-shared-memory:\t0\ndrm-active-memory:\t0\n"
           "drm-resident-memory:\t1 MiB\ndrm-purgeable-memory:\t0\n")
INTERNAL = "panthor-resident-memory:\t304 KiB\npanthor-active-memory:\t0\n"  # 2 x 144K suspend, 4K syncobjs, 4K ring, 8K iface


@pytest.mark.parametrize("kernel,profiling,expected", [
    ((6, 10), 3, HEAD),
    ((6, 11), 0, HEAD + "drm-driver:\tpanthor\ndrm-client-id:\t1\n" + GPU + MEM_611),
    ((6, 13), 1, HEAD + "drm-driver:\tpanthor\ndrm-client-id:\t1\ndrm-cycles-panthor:\t7000000\n" + GPU + MEM_611),
    ((6, 14), 2, HEAD + "drm-driver:\tpanthor\ndrm-client-id:\t1\ndrm-engine-panthor:\t7000000 ns\n" + GPU + MEM_614),
    ((6, 15), 3, HEAD + "drm-driver:\tpanthor\ndrm-client-id:\t1\ndrm-engine-panthor:\t7000000 ns\n"
     "drm-cycles-panthor:\t7000000\n" + GPU + INTERNAL + MEM_614),
    ((6, 18), 0, HEAD + "drm-driver:\tpanthor\ndrm-client-id:\t1\n" + GPU + INTERNAL + MEM_614),
])
def test_fdinfo_per_dialect(kernel, profiling, expected) -> None:
    """Each kernel prints exactly its lines: none in 6.10, the mask's engine lines, 6.15's internal region."""
    dev, f = _busy_client(kernel, profiling)
    assert dev.fdinfo(f) == expected


def test_jobs_queued_while_profiling_was_off_never_count() -> None:
    """Turning the mask on after a job was queued does not make that job's time appear."""
    dev, f = _busy_client((6, 18), 0)
    dev.write_profiling("3\n")
    assert "drm-engine-panthor:\t0 ns\n" in dev.fdinfo(f)
    ok(dev, f, "GROUP_SUBMIT group_handle=1 duration=2ms")
    dev.advance(2_000_000)
    assert "drm-engine-panthor:\t2000000 ns\ndrm-cycles-panthor:\t2000000\n" in dev.fdinfo(f)


def test_engine_time_rounds_up_from_timestamp_ticks() -> None:
    """drm-engine-panthor is ticks * 1e9 / 24 MHz rounded up: 1 us of 24 MHz ticks is 1000 ns exactly,
    1001 ns of job time is 24 ticks, printed as 1000 ns."""
    dev, f = _busy_client((6, 18), 3)
    ok(dev, f, "GROUP_SUBMIT group_handle=1 duration=1001ns")
    dev.advance(1_000_000)
    assert "drm-engine-panthor:\t7001000 ns\n" in dev.fdinfo(f)


@pytest.mark.parametrize("text,mask", [("0\n", 0), ("1", 1), ("2\n", 2), ("3", 3), ("0x3\n", 3), ("03", 3)])
def test_profiling_is_a_mask(text, mask) -> None:
    """sysfs profiling takes kstrtou32 numbers of bits cycles (1) and timestamps (2) and shows the mask."""
    dev = make_device()
    dev.sysfs_attributes()["profiling"].store(text)
    assert dev.sysfs_attributes()["profiling"].show() == f"{mask}\n"


@pytest.mark.parametrize("text", ["4", "7", "-1", "on", "y", ""])
def test_profiling_refuses_other_bits_and_words(text) -> None:
    """Bits past 1 and kstrtobool words are EINVAL (Panthor is not Panfrost's 0/1 switch)."""
    dev = make_device()
    with pytest.raises(InvalidArgument):
        dev.write_profiling(text)
    assert dev.profiling == 0


def test_no_profiling_knob_before_6_11() -> None:
    """6.10 has no sysfs profiling attribute."""
    assert make_device(kernel=(6, 10)).sysfs_attributes() == {}


def test_readme_shows_panthors_release_table() -> None:
    """The README's Panthor dialect table is the one rendered from vdrm/panthor/releases.py."""
    from pathlib import Path

    from vdrm.panthor.releases import PANTHOR

    readme = Path(__file__).resolve().parents[2] / "README.md"
    assert PANTHOR.markdown() in readme.read_text()
