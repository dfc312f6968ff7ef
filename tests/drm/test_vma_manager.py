"""Tests for vdrm.drm.vma_manager: device-wide fake mmap offsets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdrm.drm.vma_manager import VmaOffsetManager
from vdrm.errors import KernelBug, NoSpace


def test_first_offset_is_4_gib():
    """The first range handed out starts at page 0x100000, byte offset 0x1_0000_0000."""
    offsets = VmaOffsetManager()
    pgoff = offsets.add(1)
    assert pgoff == 0x100000
    assert pgoff << 12 == 0x1_0000_0000


def test_ranges_follow_each_other():
    """Successive ranges in a fresh manager are packed back to back."""
    offsets = VmaOffsetManager()
    assert [offsets.add(n) for n in (3, 512, 1)] == [0x100000, 0x100003, 0x100203]
    assert len(offsets) == 3


def test_freed_range_is_reused_best_fit():
    """A freed range is reused by the next request it fits best, like drm_mm BEST."""
    offsets = VmaOffsetManager()
    a, b, c, _ = (offsets.add(n) for n in (4, 2, 4, 1))
    offsets.remove(a)
    offsets.remove(c)
    assert offsets.add(3) == c  # equal holes: the newest first
    assert offsets.add(4) == a
    offsets.remove(b)
    assert offsets.add(2) == b


def test_lookup():
    """lookup finds the range holding a page, and refuses spans that leave the range."""
    offsets = VmaOffsetManager()
    a = offsets.add(4)
    b = offsets.add(2)
    assert offsets.lookup(a) == a and offsets.lookup(a + 3) == a
    assert offsets.lookup(b + 1) == b
    assert offsets.lookup(a, npages=4) == a
    assert offsets.lookup(a + 2, npages=3) is None  # would spill into b
    assert offsets.lookup(b + 2) is None and offsets.lookup(a - 1) is None
    assert offsets.npages(a) == 4 and offsets.npages(b) == 2
    offsets.remove(a)
    assert offsets.lookup(a) is None


def test_remove_unknown_is_kernel_bug():
    """Removing an offset that was never handed out, or twice, is a KernelBug."""
    offsets = VmaOffsetManager()
    a = offsets.add(2)
    with pytest.raises(KernelBug):
        offsets.remove(a + 1)
    offsets.remove(a)
    with pytest.raises(KernelBug):
        offsets.remove(a)
    with pytest.raises(KernelBug):
        offsets.npages(a)


def test_full_is_nospace():
    """A manager with no room left answers ENOSPC, as does a zero-page request."""
    offsets = VmaOffsetManager(first_pgoff=0x100000, npages=8)
    with pytest.raises(NoSpace):
        offsets.add(0)
    offsets.add(8)
    with pytest.raises(NoSpace):
        offsets.add(1)


def test_default_space_size():
    """The default space holds exactly 0xFFFFF * 256 pages."""
    offsets = VmaOffsetManager()
    with pytest.raises(NoSpace):
        offsets.add(0xFFFFF * 256 + 1)
    assert offsets.add(0xFFFFF * 256) == 0x100000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(1, 40)),
            st.tuples(st.just("remove"), st.integers(0, 1_000)),
        ),
        max_size=80,
    )
)
def test_offsets_never_overlap(ops):
    """Across any add/remove sequence, ranges stay in the space, never overlap, and ENOSPC
    comes only when no hole is big enough."""
    first, npages = 0x100000, 200
    offsets = VmaOffsetManager(first_pgoff=first, npages=npages)
    live: dict[int, int] = {}
    for op in ops:
        if op[0] == "add":
            try:
                pgoff = offsets.add(op[1])
            except NoSpace:
                ends = [first] + [s + n for s, n in sorted(live.items())]
                starts = sorted(live) + [first + npages]
                assert all(b - a < op[1] for a, b in zip(ends, starts)), "a hole was big enough"
                continue
            live[pgoff] = op[1]
        elif live:
            pgoff = sorted(live)[op[1] % len(live)]
            offsets.remove(pgoff)
            del live[pgoff]
        ranges = sorted(live.items())
        for (s0, n0), (s1, _) in zip(ranges, ranges[1:]):
            assert s0 + n0 <= s1
        for s, n in ranges:
            assert first <= s and s + n <= first + npages
            assert offsets.lookup(s) == s and offsets.lookup(s + n - 1) == s
            assert offsets.lookup(s, npages=n) == s
