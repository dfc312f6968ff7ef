"""Tests for vdrm.mm.page_alloc: placement, determinism, ENOMEM, NOWAIT, shrinkers, flags."""

from __future__ import annotations

import dataclasses
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdrm.errors import InvalidArgument, KernelBug, OutOfMemory
from vdrm.mm.page_alloc import (
    PAGE_SIZE,
    PG_accessed,
    PG_allocated,
    PG_dirty,
    PG_unevictable,
    Gfp,
    PageAllocator,
    any_negative,
    is_contiguous,
    kmalloc_size,
    page_align,
    pfn_range,
)


def runs(pfns) -> list[int]:
    """Lengths of the physically contiguous runs of ``pfns``, in order."""
    lengths: list[int] = []
    prev = None
    for pfn in pfns:
        if prev is not None and pfn == prev + 1:
            lengths[-1] += 1
        else:
            lengths.append(1)
        prev = pfn
    return lengths


def free_frames(pa: PageAllocator) -> int:
    return sum(1 for pfn in range(pa.total_pages) if pa.page_flags(pfn) == 0)


# -- placement ------------------------------------------------------------------------


def test_fresh_allocator_gives_one_contiguous_run_without_fragmentation():
    """512 pages on a fresh allocator at fragmentation 0 are one physical run."""
    pa = PageAllocator(4096)
    pfns = pa.alloc_pages(512)
    assert isinstance(pfns, array) and pfns.typecode == "q"
    assert runs(pfns) == [512]
    assert pa.free_pages == 4096 - 512


def test_full_fragmentation_scatters_every_page():
    """At fragmentation 1.0 no two pages of an allocation are adjacent (512 runs)."""
    pa = PageAllocator(8192, fragmentation=1.0)
    for _ in range(3):
        assert runs(pa.alloc_pages(512)) == [1] * 512


def test_middle_fragmentation_gives_mixed_run_lengths():
    """At fragmentation 0.5 an allocation has both single pages and longer runs."""
    pa = PageAllocator(8192, fragmentation=0.5, seed=3)
    lengths = runs(pa.alloc_pages(512))
    assert 1 < len(lengths) < 512
    assert min(lengths) == 1 and max(lengths) > 2


def test_frames_left_behind_are_reused_by_the_next_allocation():
    """Holes left by a fragmented allocation are taken back first: memory stays dense."""
    pa = PageAllocator(1 << 16, fragmentation=1.0)
    first = pa.alloc_pages(512)
    second = pa.alloc_pages(512)
    assert sorted(first + second) == list(range(1024))


def test_same_seed_same_calls_same_pfns():
    """Two allocators with the same seed and calls hand out identical pfns."""
    def script(seed: int) -> list[list[int]]:
        pa = PageAllocator(1 << 14, fragmentation=0.5, seed=seed)
        out = [pa.alloc_pages(300).tolist(), pa.alloc_pages(77).tolist()]
        pa.release(out[0][::3])
        out.append(pa.alloc_pages(200).tolist())
        return out

    assert script(7) == script(7)
    assert script(7) != script(8)


def test_released_pages_are_reused_first():
    """First-fit from the lowest free frame: released frames come back on the next allocation."""
    pa = PageAllocator(4096)
    a = pa.alloc_pages(100)
    pa.alloc_pages(100)
    pa.release(a[10:20])
    assert pa.alloc_pages(10).tolist() == list(range(10, 20))


def test_holes_split_an_allocation_at_fragmentation_zero():
    """A freed hole is filled first, so the allocation spans the hole and fresh memory."""
    pa = PageAllocator(4096)
    a = pa.alloc_pages(64)
    pa.alloc_pages(64)
    pa.release(a[:8])
    assert runs(pa.alloc_pages(16)) == [8, 8]


# -- failures -------------------------------------------------------------------------


def test_out_of_memory_is_all_or_nothing():
    """Asking for more than is free raises OutOfMemory and changes no frame."""
    pa = PageAllocator(1000)
    pa.alloc_pages(900)
    before = bytes(pa.page_flags(p) for p in range(1000))
    with pytest.raises(OutOfMemory, match="101 pages wanted, 100 of 1000 free"):
        pa.alloc_pages(101)
    assert bytes(pa.page_flags(p) for p in range(1000)) == before
    assert pa.free_pages == 100
    assert pa.stats().failures == 1 and pa.stats().allocations == 1


def test_nowait_fails_above_the_watermark_where_kernel_succeeds():
    """NOWAIT refuses an allocation that would dip below the low watermark; KERNEL does not."""
    pa = PageAllocator(6400)  # watermark 100 pages
    assert pa.low_watermark_pages == 100
    pa.alloc_pages(6250)
    with pytest.raises(OutOfMemory, match="GFP_NOWAIT"):
        pa.alloc_pages(51, Gfp.NOWAIT)
    assert len(pa.alloc_pages(50, Gfp.NOWAIT)) == 50
    assert len(pa.alloc_pages(100, Gfp.KERNEL)) == 100
    assert pa.free_pages == 0


def test_watermark_is_configurable():
    """A custom low watermark moves the point where NOWAIT starts failing."""
    pa = PageAllocator(1000, low_watermark_pages=500)
    assert len(pa.alloc_pages(500, Gfp.NOWAIT)) == 500
    with pytest.raises(OutOfMemory):
        pa.alloc_pages(1, Gfp.NOWAIT)


def test_kernel_allocation_calls_the_shrinker_and_succeeds():
    """A KERNEL allocation short of memory asks the shrinker for the missing pages."""
    pa = PageAllocator(1000)
    cache = pa.alloc_pages(600)
    pa.alloc_pages(300)
    wanted = []

    def shrinker(npages: int) -> int:
        wanted.append(npages)
        pa.release(cache)
        return len(cache)

    pa.register_shrinker(shrinker)
    assert len(pa.alloc_pages(400)) == 400
    assert wanted == [300]
    assert pa.stats().shrinker_calls == 1


def test_nowait_never_calls_shrinkers():
    """A NOWAIT allocation fails without calling any shrinker."""
    pa = PageAllocator(1000, low_watermark_pages=0)
    pa.alloc_pages(1000)
    pa.register_shrinker(lambda npages: pytest.fail("NOWAIT called a shrinker"))
    with pytest.raises(OutOfMemory):
        pa.alloc_pages(1, Gfp.NOWAIT)
    assert pa.stats().shrinker_calls == 0


def test_shrinker_that_frees_nothing_leads_to_enomem():
    """When every shrinker frees too little, the allocation raises OutOfMemory."""
    pa = PageAllocator(100)
    pa.alloc_pages(100)
    pa.register_shrinker(lambda npages: 0)
    pa.register_shrinker(lambda npages: 0)
    with pytest.raises(OutOfMemory, match="2 shrinker"):
        pa.alloc_pages(1)
    assert pa.stats().shrinker_calls == 2


def test_unregister_unknown_shrinker_is_a_bug():
    """Unregistering a shrinker that was never registered raises KernelBug."""
    with pytest.raises(KernelBug):
        PageAllocator(10).unregister_shrinker(lambda npages: 0)


def test_pressure_with_fragmentation_uses_every_free_frame():
    """Near full RAM a fragmented allocator still hands out the last free frames."""
    pa = PageAllocator(1024, fragmentation=1.0)
    pa.alloc_pages(1000)
    assert len(pa.alloc_pages(24)) == 24
    assert pa.free_pages == 0


@pytest.mark.parametrize("npages", [0, -1, 1.5])
def test_bad_page_counts_are_refused(npages):
    """A non-positive or non-integer page count is InvalidArgument."""
    with pytest.raises(InvalidArgument):
        PageAllocator(10).alloc_pages(npages)


@pytest.mark.parametrize(
    "kwargs", [dict(total_pages=0), dict(total_pages=10, fragmentation=1.5), dict(total_pages=10, low_watermark_pages=11)]
)
def test_bad_allocator_settings_are_refused(kwargs):
    """Impossible allocator settings are InvalidArgument."""
    with pytest.raises(InvalidArgument):
        PageAllocator(**kwargs)


# -- release --------------------------------------------------------------------------


def test_double_free_is_a_kernel_bug_and_frees_nothing():
    """Releasing a free frame raises KernelBug and leaves the other frames allocated."""
    pa = PageAllocator(100)
    pfns = pa.alloc_pages(10)
    pa.release(pfns[:5])
    with pytest.raises(KernelBug, match="not allocated"):
        pa.release(pfns)
    assert pa.free_pages == 95
    assert all(pa.is_allocated(p) for p in pfns[5:])


def test_duplicate_pfn_in_one_release_is_a_kernel_bug():
    """The same pfn twice in one release is a double free."""
    pa = PageAllocator(100)
    pfns = pa.alloc_pages(10)
    with pytest.raises(KernelBug, match="twice"):
        pa.release([pfns[0], pfns[3], pfns[0]])
    assert pa.free_pages == 90


@pytest.mark.parametrize("pfn", [-1, 100, 1 << 40])
def test_release_of_unknown_pfn_is_a_kernel_bug(pfn):
    """A pfn outside RAM cannot be released."""
    pa = PageAllocator(100)
    pa.alloc_pages(100)
    with pytest.raises(KernelBug, match="outside RAM"):
        pa.release([3, pfn])
    assert pa.free_pages == 0


def test_release_of_nothing_is_a_no_op():
    """An empty release changes nothing."""
    pa = PageAllocator(10)
    pa.release([])
    assert pa.free_pages == 10


# -- flags ----------------------------------------------------------------------------


def test_page_flags_set_clear_and_release_clears_them():
    """Flags can be set on allocated frames, are counted at release, and are gone after it."""
    pa = PageAllocator(100)
    pfns = pa.alloc_pages(4)
    pa.set_page_flags(pfns[0], PG_dirty | PG_unevictable)
    pa.mark_pages(pfns[1:3], PG_accessed)
    pa.clear_page_flags(pfns[0], PG_unevictable)
    assert pa.page_flags(pfns[0]) == PG_allocated | PG_dirty
    assert pa.page_flags(pfns[1]) == PG_allocated | PG_accessed
    pa.release(pfns)
    stats = pa.stats()
    assert (stats.released, stats.released_dirty, stats.released_accessed) == (4, 1, 2)
    assert all(pa.page_flags(p) == 0 for p in pfns)


def test_flags_on_a_free_frame_are_a_kernel_bug():
    """Setting flags on a free frame raises KernelBug."""
    pa = PageAllocator(10)
    with pytest.raises(KernelBug):
        pa.set_page_flags(3, PG_dirty)
    with pytest.raises(KernelBug):
        pa.mark_pages([3], PG_dirty)


def test_allocated_bit_is_not_a_caller_flag():
    """PG_allocated belongs to the allocator: callers may not set or clear it."""
    pa = PageAllocator(10)
    pfn = pa.alloc_pages(1)[0]
    with pytest.raises(InvalidArgument):
        pa.clear_page_flags(pfn, PG_allocated)


def test_stats_is_a_frozen_snapshot():
    """stats() returns an immutable snapshot that does not follow later calls."""
    pa = PageAllocator(50)
    snap = pa.stats()
    pa.alloc_pages(5)
    assert (snap.free, snap.allocated, pa.stats().allocated) == (50, 0, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.free = 1  # type: ignore[misc]


# -- helpers --------------------------------------------------------------------------


@pytest.mark.parametrize("first,npages", [(0, 1), (7, 512), (1 << 40, 3), (5, 5000)])
def test_pfn_range_matches_range(first, npages):
    """pfn_range equals array('q', range(...))."""
    assert pfn_range(first, npages) == array("q", range(first, first + npages))


def test_any_negative_and_is_contiguous():
    """any_negative spots a negative value; is_contiguous accepts only exact runs."""
    assert not any_negative(array("q", [0, 1 << 62]))
    assert any_negative(array("q", [5, -1, 7]))
    assert is_contiguous(array("q", [4, 5, 6])) and is_contiguous(array("q"))
    assert not is_contiguous(array("q", [4, 6, 6])) and not is_contiguous(array("q", [4, 5, 7]))


def test_size_rounding_helpers():
    """PAGE_ALIGN and kmalloc slab classes round up as the kernel does."""
    assert (page_align(1), page_align(PAGE_SIZE), page_align(PAGE_SIZE + 1)) == (PAGE_SIZE, PAGE_SIZE, 2 * PAGE_SIZE)
    assert [kmalloc_size(n) for n in (16, 17, 96, 97, 4096, 9000)] == [16, 32, 96, 128, 4096, 12288]


# -- properties -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    fragmentation=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    ops=st.lists(st.tuples(st.booleans(), st.integers(1, 90), st.integers(0, 1 << 16)), max_size=25),
)
def test_alloc_release_sequences_keep_the_books(fragmentation, ops):
    """Any alloc/release sequence: no frame owned twice, free count exact, all-or-nothing."""
    pa = PageAllocator(512, fragmentation=fragmentation, seed=11)
    owned: list[array] = []
    for is_alloc, npages, pick in ops:
        if is_alloc:
            free_before = pa.free_pages
            try:
                owned.append(pa.alloc_pages(npages))
            except OutOfMemory:
                assert npages > free_before and pa.free_pages == free_before
        elif owned:
            pa.release(owned.pop(pick % len(owned)))
        flat = [p for block in owned for p in block]
        assert len(flat) == len(set(flat))
        assert pa.free_pages == 512 - len(flat) == free_frames(pa)
    for block in owned:
        pa.release(block)
    assert pa.free_pages == 512


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(0, 2**32), st.lists(st.integers(1, 700), min_size=1, max_size=6))
def test_alloc_runs_are_the_runs_of_the_pfns_and_the_same_pfns_as_alloc_pages(fragmentation, seed, sizes):
    from vdrm.mm.scatterlist import page_runs

    plain = PageAllocator(4096, seed=seed, fragmentation=fragmentation)
    with_runs = PageAllocator(4096, seed=seed, fragmentation=fragmentation)
    for npages in sizes:
        pfns = plain.alloc_pages(npages)
        same, firsts, lengths = with_runs.alloc_runs(npages)
        assert same == pfns
        want_firsts, want_lengths = page_runs(pfns)
        assert firsts == want_firsts and lengths.tolist() == want_lengths.tolist() and lengths.typecode == "I"
        if npages % 3 == 0:  # holes for the next allocations to reuse
            plain.release(pfns[::2])
            with_runs.release(same[::2])


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), fragmentation=st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.99, 1.0]),
       ops=st.lists(st.tuples(st.booleans(), st.integers(1, 1500)), min_size=1, max_size=40))
def test_the_vectorised_search_takes_the_frames_the_byte_search_takes(seed, fragmentation, ops):
    """numpy's placement is the byte-string one's, frame for frame and run for run, through
    allocations, releases (holes to refill) and pressure at the end of RAM."""
    fast = PageAllocator(8192, seed=seed, fragmentation=fragmentation, low_watermark_pages=0)
    ref = PageAllocator(8192, seed=seed, fragmentation=fragmentation, low_watermark_pages=0)
    ref.vectorised = False
    held: list[array] = []
    for release, npages in ops:
        if release and held:
            pfns = held.pop(npages % len(held))
            fast.release(pfns)
            ref.release(pfns)
            continue
        if npages > ref.free_pages:
            continue
        got, want = fast.alloc_runs(npages), ref.alloc_runs(npages)
        assert got[0] == want[0] and got[1] == want[1] and got[2] == want[2]
        held.append(want[0])
        assert fast._mem_map == ref._mem_map and fast._lowest_free == ref._lowest_free


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**16), fragmentation=st.sampled_from([0.0, 0.3, 1.0]),
       npages=st.integers(256, 3000), mistake=st.sampled_from([None, "twice", "free", "outside", "negative"]),
       where=st.integers(0, 10**6), dirty=st.integers(0, 50))
def test_a_big_release_in_numpy_is_the_byte_release(seed, fragmentation, npages, mistake, where, dirty):
    """Releases of 256 frames or more go through numpy: the same frames freed, the same
    counters, and for every mistake the same error (naming the same first bad pfn), with
    nothing freed."""
    results = []
    for vectorised in (True, False):
        pa = PageAllocator(8192, seed=seed, fragmentation=fragmentation)
        pa.vectorised = vectorised
        pfns = pa.alloc_pages(npages)
        pa.mark_pages(pfns[:dirty], PG_dirty)
        bad = array("q", pfns)
        at = where % npages
        if mistake == "twice":
            bad[at] = bad[(at + 1) % npages]
        elif mistake == "free":
            pa.release(pfns[at:at + 1])
        elif mistake == "outside":
            bad[at] = 8192 + at
        elif mistake == "negative":
            bad[at] = -1
        try:
            pa.release(bad)
            error = None
        except KernelBug as e:
            error = str(e)
        results.append((error, bytes(pa._mem_map), pa.stats(), pa._lowest_free))
    assert results[0] == results[1]
    assert (results[0][0] is None) == (mistake is None)
