"""fdinfo text per kernel version, against the kernel docs' examples (reference 4)."""

from __future__ import annotations

import pytest

from vdrm.errors import InvalidArgument

from vdrm.drm.fdinfo import format_size, header
from vdrm.panfrost.gem import BO_HEAP, BO_NOEXEC, MADV_DONTNEED
from vdrm.panfrost.device import KERNEL_VERSIONS

from .conftest import MiB, ioctl, make_device

HEAP = BO_HEAP | BO_NOEXEC


@pytest.mark.parametrize("value, new, old", [
    (0, "0", "0"), (1536, "1536", "1 KiB"), (4096, "4 KiB", "4 KiB"), (2 * MiB, "2 MiB", "2 MiB"),
    (2 * MiB + 4096, "2052 KiB", "2 MiB"), (3 << 30, "3072 MiB", "3072 MiB"),
    (3 * MiB + 1, "3145729", "3 MiB"),
])
def test_print_size_in_both_eras(value, new, old):
    """6.7+ divides only exact multiples of 1024; 6.5-6.6 truncates (reference 4.3 examples)."""
    assert format_size(value, (6, 7)) == new
    assert format_size(value, (6, 6)) == old


def test_header_lines():
    """The generic header is fs/proc/fd.c's: flags in octal with a leading 0."""
    assert header(pos=0, flags=0o2400002, mnt_id=27, ino=531) == "pos:\t0\nflags:\t02400002\nmnt_id:\t27\nino:\t531\n"


def test_kernel_6_6_prints_no_drm_lines():
    """Before 6.7 Panfrost has no show_fdinfo: only the generic header appears."""
    dev = make_device(kernel=(6, 6))
    f = dev.open(128)
    assert dev.fdinfo(f, ino=5) == "pos:\t0\nflags:\t02400002\nmnt_id:\t0\nino:\t5\n"


def test_profiling_off_current_kernel_fresh_client():
    """6.14+: a client without BOs shows freqs, total and shared only."""
    dev = make_device(kernel=(6, 18))
    f = dev.open(128)
    assert dev.fdinfo(f, mnt_id=27, ino=531) == (
        "pos:\t0\nflags:\t02400002\nmnt_id:\t27\nino:\t531\n"
        "drm-driver:\tpanfrost\ndrm-client-id:\t1\n"
        "drm-maxfreq-fragment:\t800000000 Hz\ndrm-curfreq-fragment:\t800000000 Hz\n"
        "drm-maxfreq-vertex-tiler:\t800000000 Hz\ndrm-curfreq-vertex-tiler:\t800000000 Hz\n"
        "drm-total-memory:\t0\ndrm-shared-memory:\t0\n"
    )


def test_6_13_always_prints_active_resident_purgeable():
    """6.7-6.13: active always, resident/purgeable as soon as any BO exists."""
    dev = make_device(kernel=(6, 13))
    f = dev.open(128)
    assert dev.fdinfo(f).endswith("drm-total-memory:\t0\ndrm-shared-memory:\t0\ndrm-active-memory:\t0\n")
    ioctl(f, "CREATE_BO", size=2 * MiB, flags=HEAP)
    assert dev.fdinfo(f).endswith(
        "drm-total-memory:\t2 MiB\ndrm-shared-memory:\t0\ndrm-active-memory:\t0\n"
        "drm-resident-memory:\t0\ndrm-purgeable-memory:\t0\n")


def test_6_14_optional_lines_follow_reported_state():
    """6.14+: resident appears once something is backed, purgeable once DONTNEED, active while busy."""
    dev = make_device(kernel=(6, 14))
    f = dev.open(128)
    ioctl(f, "CREATE_BO", size=2 * MiB, flags=HEAP)
    assert dev.fdinfo(f).endswith("drm-total-memory:\t2 MiB\ndrm-shared-memory:\t0\n")
    ioctl(f, "FAULT", addr=0x2000000)
    assert dev.fdinfo(f).endswith("drm-shared-memory:\t0\ndrm-resident-memory:\t2 MiB\n")
    ioctl(f, "CREATE_BO", size=128 << 10, flags=BO_NOEXEC)
    ioctl(f, "MADVISE", handle=2, madv=MADV_DONTNEED)
    ioctl(f, "SUBMIT", bo_handles=[1], duration=10**6)
    assert dev.fdinfo(f).endswith(
        "drm-total-memory:\t2176 KiB\ndrm-shared-memory:\t0\ndrm-active-memory:\t2 MiB\n"
        "drm-resident-memory:\t2176 KiB\ndrm-purgeable-memory:\t128 KiB\n")


def test_engine_lines_only_while_profiling():
    """Engine and cycle lines appear only with profiling on, and count profiled jobs' time."""
    dev = make_device(kernel=(6, 18))
    f = dev.open(128)
    ioctl(f, "SUBMIT", duration=3_000_000)  # not profiled: profiling was off at start
    dev.clock.advance(3_000_000)
    dev.write_profiling("1")
    ioctl(f, "SUBMIT", duration=2_000_000, requirements=1)
    dev.clock.advance(2_000_000)
    text = dev.fdinfo(f)
    assert "drm-engine-fragment:\t2000000 ns\ndrm-cycles-fragment:\t1600000\n" in text
    assert "drm-engine-vertex-tiler:\t0 ns\ndrm-cycles-vertex-tiler:\t0\n" in text
    dev.write_profiling("0")
    assert "drm-engine" not in dev.fdinfo(f)


def test_6_7_prints_engine_lines_unconditionally():
    """The first Panfrost fdinfo (6.7) printed engine lines whatever the profiling state."""
    dev = make_device(kernel=(6, 7))
    assert "drm-engine-fragment:\t0 ns\n" in dev.fdinfo(dev.open(128))


def test_shared_memory_and_export_rule():
    """A BO with handles in two files is shared in both; total counts it in each file."""
    dev = make_device()
    a, b = dev.open(128), dev.open(128)
    ioctl(a, "CREATE_BO", size=4 * MiB, flags=BO_NOEXEC)
    ioctl(b, "GEM_OPEN", name=ioctl(a, "GEM_FLINK", handle=1)["name"])
    for f in (a, b):
        text = dev.fdinfo(f)
        assert "drm-total-memory:\t4 MiB\ndrm-shared-memory:\t4 MiB\n" in text


def test_client_name_from_6_13():
    """drm-client-name follows drm-client-id from 6.13 on; 6.12 has no SET_CLIENT_NAME (EINVAL)."""
    dev = make_device(kernel=(6, 12))
    f = dev.open(128)
    with pytest.raises(InvalidArgument, match="does not exist in this kernel release"):
        ioctl(f, "SET_CLIENT_NAME", name="weston")
    assert "drm-client-name" not in dev.fdinfo(f)
    dev = make_device(kernel=(6, 13))
    f = dev.open(128)
    ioctl(f, "SET_CLIENT_NAME", name="weston")
    assert "drm-client-id:\t1\ndrm-client-name:\tweston\n" in dev.fdinfo(f)


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_every_version_renders_and_ends_with_newline(version):
    """Every emulated version renders a well-formed fdinfo under 4 KiB."""
    dev = make_device(kernel=version, profiling=True)
    f = dev.open(128)
    ioctl(f, "CREATE_BO", size=8 * MiB, flags=HEAP)
    ioctl(f, "FAULT", addr=0x2000000)
    text = dev.fdinfo(f)
    assert text.endswith("\n") and len(text) < 4096
    for line in text.splitlines():
        key, sep, value = line.partition(":\t")
        assert sep and key and " " not in key and value
