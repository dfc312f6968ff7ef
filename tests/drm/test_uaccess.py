"""Tests for vdrm.drm.uaccess: copy_from_user / copy_to_user / strncpy_from_user over fake memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdrm.drm.uaccess import (FakeUserMemory, UserMemory, copy_from_user, copy_to_user,
                              strncpy_from_user)
from vdrm.errors import BadAddress


def test_fake_memory_is_a_user_memory():
    """FakeUserMemory satisfies the UserMemory protocol the bridge implements."""
    assert isinstance(FakeUserMemory(), UserMemory)


def test_accesses_that_touch_an_unmapped_byte_fault_whole():
    """A read or write crossing a region's end is EFAULT and writes nothing."""
    mem = FakeUserMemory()
    addr = mem.map(0x1000, 16)
    assert copy_from_user(mem, addr, 16) == bytes(16)
    with pytest.raises(BadAddress):
        copy_from_user(mem, addr + 8, 16)
    with pytest.raises(BadAddress):
        copy_to_user(mem, addr + 8, b"x" * 16)
    assert mem.peek(addr, 16) == bytes(16)


def test_zero_length_accesses_never_fault():
    """copy_from_user(NULL, 0) and an empty copy_to_user succeed whatever the address."""
    mem = FakeUserMemory()
    assert copy_from_user(mem, 0, 0) == b""
    copy_to_user(mem, 0xdead, b"")
    assert mem.reads == mem.writes == 0


def test_read_only_regions_refuse_writes():
    """A region mapped without write permission faults on copy_to_user."""
    mem = FakeUserMemory()
    addr = mem.alloc(b"abc", writable=False)
    with pytest.raises(BadAddress):
        copy_to_user(mem, addr, b"x")
    assert copy_from_user(mem, addr, 3) == b"abc"


@given(st.binary(max_size=80).filter(lambda b: b"\0" not in b), st.integers(min_value=0, max_value=100),
       st.booleans(), st.integers(min_value=1, max_value=120))
def test_strncpy_stops_at_the_nul_the_limit_or_a_hole(body, room, terminated, limit):
    """strncpy_from_user returns the string before its NUL (or limit bytes), and faults only on a
    hole it reaches first, even when the string ends right before the hole."""
    data = body + (b"\0" if terminated else b"")
    mem = FakeUserMemory()
    size = max(len(data) + room, 1)
    addr = mem.map(0x4000, size, data=data)
    image = data + bytes(size - len(data))  # the mapping: data, then zero bytes
    expected: bytes | None = image[:limit]
    for i in range(limit):  # the reference walk, one byte at a time
        if i >= size:
            expected = None
            break
        if image[i] == 0:
            expected = image[:i]
            break
    if expected is None:
        with pytest.raises(BadAddress):
            strncpy_from_user(mem, addr, limit)
    else:
        assert strncpy_from_user(mem, addr, limit) == expected


def test_regions_may_not_overlap():
    """Mapping over an existing region is a test bug, refused."""
    mem = FakeUserMemory()
    mem.map(0x1000, 0x1000)
    with pytest.raises(ValueError):
        mem.map(0x1800, 0x1000)
