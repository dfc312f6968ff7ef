"""Tests for vdrm.drm.gem_shmem: dense objects (6.16+), sparse objects (RFC v2 + v3 TODOs)."""

from __future__ import annotations

import re

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vdrm.drm import gem_shmem
from vdrm.drm.device import DrmDevice, Driver
from vdrm.drm.gem_shmem import NUM_FAULT_PAGES, ShmemObject, format_pointer
from vdrm.errors import AccessDenied, BadAddress, Exists, InvalidArgument, KernelBug, OutOfMemory
from vdrm.kernel.clock import VirtualClock
from vdrm.kernel.printk import KERN_DEBUG, KernelLog
from vdrm.mm.page_alloc import PAGE_SIZE, PG_allocated, Gfp, PageAllocator
from vdrm.mm.xarray import XA_NODE_BYTES, XArray

SZ_2M = 2 << 20


def make_dev(total_pages: int = 4096, **kwargs) -> DrmDevice:
    clock = VirtualClock()
    log = KernelLog(clock, console_level=KERN_DEBUG)
    return DrmDevice(Driver(), pages=PageAllocator(total_pages, **kwargs), clock=clock, log=log)


@pytest.fixture(autouse=True)
def strict_leaks(monkeypatch):
    monkeypatch.setattr(ShmemObject, "strict", True)


@pytest.fixture
def dev() -> DrmDevice:
    return make_dev()


def free_pages(dev: DrmDevice) -> int:
    return dev.pages.free_pages


# -- creation -------------------------------------------------------------------------


def test_create_page_aligns_and_makes_an_mmap_offset(dev):
    """A new object is PAGE_ALIGNed, has an mmap offset at once, no pages, and is recorded."""
    obj = ShmemObject(dev, 10_000)
    assert obj.size == 3 * PAGE_SIZE and obj.npages == 3
    assert obj.mmap_offset >= 1 << 32
    assert obj.pages is None and not obj.is_populated() and obj.resident_size == 0
    assert list(dev.iter_objects()) == [obj]
    assert obj.kernel_bookkeeping_bytes() == 0


@pytest.mark.parametrize("size", [0, -4096, 1.5])
def test_create_refuses_bad_sizes(dev, size):
    """Zero, negative and non-integer sizes are InvalidArgument."""
    with pytest.raises(InvalidArgument):
        ShmemObject(dev, size)


# -- dense: pages, pins, vmap ------------------------------------------------------------


def test_get_put_pages_allocates_on_first_and_releases_on_last(dev):
    """Pages exist while the use count is positive and go back to the allocator at 0."""
    obj = ShmemObject(dev, 8 * PAGE_SIZE)
    start = free_pages(dev)
    obj.get_pages()
    obj.get_pages()
    assert obj.pages_use_count == 2 and len(obj.pages) == 8 and free_pages(dev) == start - 8
    assert obj.resident_size == obj.size
    obj.put_pages()
    assert obj.pages is not None
    obj.put_pages()
    assert obj.pages is None and free_pages(dev) == start and obj.resident_size == 0


def test_put_pages_without_get_is_a_kernel_bug(dev):
    """An unbalanced put raises KernelBug and changes nothing."""
    obj = ShmemObject(dev, PAGE_SIZE)
    with pytest.raises(KernelBug, match="pages_use_count 0"):
        obj.put_pages()
    assert obj.pages_use_count == 0


def test_get_pages_out_of_memory_leaves_no_pages_and_logs(dev):
    """ENOMEM from the allocator propagates, the count stays 0 and drm_dbg logs it."""
    obj = ShmemObject(dev, 5000 * PAGE_SIZE)
    with pytest.raises(OutOfMemory):
        obj.get_pages()
    assert obj.pages is None and obj.pages_use_count == 0
    assert "Failed to get pages (-12)" in dev.log.text()


def test_pin_holds_one_use_reference(dev):
    """Pins nest on one use reference; the last unpin drops it."""
    obj = ShmemObject(dev, 4 * PAGE_SIZE)
    obj.pin()
    obj.pin()
    assert (obj.pages_pin_count, obj.pages_use_count) == (2, 1)
    obj.unpin()
    obj.unpin()
    assert (obj.pages_pin_count, obj.pages_use_count, obj.pages) == (0, 0, None)
    with pytest.raises(KernelBug, match="unpin"):
        obj.unpin()


def test_vmap_pins_and_returns_a_stable_address(dev):
    """vmap pins (6.16), returns the same non-zero address to every user, vunmap undoes it."""
    obj = ShmemObject(dev, 4 * PAGE_SIZE)
    vaddr = obj.vmap()
    assert vaddr and obj.vmap() == vaddr
    assert (obj.vmap_use_count, obj.pages_pin_count, obj.pages_use_count) == (2, 1, 1)
    other = ShmemObject(dev, PAGE_SIZE).vmap()
    assert other >= vaddr + obj.size + PAGE_SIZE  # distinct vmalloc ranges with a guard page
    obj.vunmap()
    obj.vunmap()
    assert (obj.vaddr, obj.vmap_use_count, obj.pages_pin_count, obj.pages) == (None, 0, 0, None)
    with pytest.raises(KernelBug, match="vunmap"):
        obj.vunmap()


def test_vmap_failure_logs_and_changes_nothing(dev):
    """A vmap that cannot get pages raises ENOMEM, logs the drm_dbg line, keeps counts at 0."""
    obj = ShmemObject(dev, 5000 * PAGE_SIZE)
    with pytest.raises(OutOfMemory):
        obj.vmap()
    assert (obj.vmap_use_count, obj.pages_pin_count, obj.vaddr) == (0, 0, None)
    assert "Failed to vmap pages, error -12" in dev.log.text()


# -- dense: sg tables ----------------------------------------------------------------------


def test_get_pages_sgt_is_cached_mapped_and_holds_a_reference(dev):
    """The cached table is DMA-mapped, built once, and keeps a use reference."""
    obj = ShmemObject(dev, SZ_2M)
    sgt = obj.get_pages_sgt()
    assert obj.get_pages_sgt() is sgt and obj.sgt is sgt
    assert sgt.dma_mapped and sgt.nents == 1 and sgt.dma_segments() == [(obj.pages[0] * PAGE_SIZE, SZ_2M)]
    assert obj.pages_use_count == 1
    with pytest.raises(KernelBug, match="held by the cached sgt"):
        obj.put_pages()
    assert obj.pages_use_count == 1 and obj.pages is not None


def test_get_sg_table_is_new_each_call_and_needs_pages(dev):
    """get_sg_table builds a fresh, unmapped table and refuses an object without pages."""
    obj = ShmemObject(dev, 3 * PAGE_SIZE)
    with pytest.raises(InvalidArgument, match="get_pages or pin"):
        obj.get_sg_table()
    obj.pin()
    first, second = obj.get_sg_table(), obj.get_sg_table()
    assert first is not second and not first.dma_mapped
    assert first.page_pfns() == obj.pages


# -- dense: madvise and purge ---------------------------------------------------------------


def test_madvise_returns_retained_until_purged(dev):
    """madvise stores any value while not purged and reports retained = madv >= 0."""
    obj = ShmemObject(dev, PAGE_SIZE)
    assert obj.madvise(1) and obj.madv == 1
    assert obj.madvise(0) and obj.madv == 0
    assert obj.madvise(7) and obj.madv == 7


def test_purgeable_needs_dontneed_sgt_no_pin_not_exported(dev):
    """is_purgeable is true only with madv > 0, a cached sgt, no pin, no export, not sparse."""
    obj = ShmemObject(dev, PAGE_SIZE)
    obj.madvise(1)
    assert not obj.is_purgeable()  # no sgt yet
    obj.get_pages_sgt()
    assert obj.is_purgeable()
    obj.pin()
    assert not obj.is_purgeable()
    obj.unpin()
    obj.exported = True
    assert not obj.is_purgeable()
    obj.exported = False
    obj.madvise(0)
    assert not obj.is_purgeable()


def test_purge_drops_pages_and_mmap_offset(dev):
    """Purge frees the sgt and pages, sets madv = -1 and frees the mmap offset."""
    obj = ShmemObject(dev, 16 * PAGE_SIZE)
    start = free_pages(dev)
    obj.get_pages_sgt()
    obj.madvise(1)
    obj.purge()
    assert (obj.sgt, obj.pages, obj.pages_use_count, obj.madv, obj.mmap_offset) == (None, None, 0, -1, 0)
    assert free_pages(dev) == start
    assert obj.madvise(0) is False and obj.madv == -1
    with pytest.raises(InvalidArgument, match="purged"):
        obj.mmap()


def test_purge_of_a_pinned_object_is_refused(dev):
    """Purging what is not purgeable is a kernel bug and changes nothing."""
    obj = ShmemObject(dev, PAGE_SIZE)
    obj.get_pages_sgt()
    obj.madvise(1)
    obj.pin()
    with pytest.raises(KernelBug, match="not purgeable"):
        obj.purge()
    assert obj.pages is not None and obj.madv == 1 and obj.mmap_offset


# -- dense: user mappings --------------------------------------------------------------------


def test_mmap_takes_references_and_faults_resolve(dev):
    """Each mmap holds a use and a GEM reference; faults return pfns; munmap undoes it."""
    obj = ShmemObject(dev, 4 * PAGE_SIZE)
    offset = obj.mmap()
    assert offset == obj.mmap_offset
    assert (obj.pages_use_count, obj.refcount, obj.mmap_count) == (1, 2, 1)
    assert obj.fault(3) == obj.pages[3]
    with pytest.raises(BadAddress, match="SIGBUS"):
        obj.fault(4)
    obj.vm_open()  # fork
    assert (obj.pages_use_count, obj.refcount, obj.mmap_count) == (2, 3, 2)
    obj.munmap()
    obj.munmap()
    assert (obj.pages_use_count, obj.refcount, obj.pages) == (0, 1, None)
    with pytest.raises(KernelBug, match="munmap"):
        obj.munmap()


def test_cow_mappings_are_einval(dev):
    """A private writable mapping is refused with EINVAL and takes no reference."""
    obj = ShmemObject(dev, PAGE_SIZE)
    with pytest.raises(InvalidArgument, match="COW"):
        obj.mmap(private_writable=True)
    assert obj.pages_use_count == 0 and obj.refcount == 1


def test_mapping_keeps_the_object_alive_after_the_last_handle(dev):
    """The mapping's GEM reference defers the free until munmap."""
    obj = ShmemObject(dev, 2 * PAGE_SIZE)
    start = free_pages(dev)
    obj.mmap()
    obj.put()
    assert not obj.freed and obj.pages is not None
    obj.munmap()
    assert obj.freed and free_pages(dev) == start and list(dev.iter_objects()) == []


def test_faults_after_purge_are_sigbus(dev):
    """A purged object's mapping faults with SIGBUS (BadAddress)."""
    obj = ShmemObject(dev, PAGE_SIZE)
    obj.get_pages_sgt()
    obj.mmap()
    obj.madvise(1)
    obj.purge()
    with pytest.raises(BadAddress):
        obj.fault(0)
    obj.munmap()


# -- free and leaks --------------------------------------------------------------------------


def test_free_returns_everything(dev):
    """The last put frees the sgt and the pages and the mmap offset."""
    start = free_pages(dev)
    obj = ShmemObject(dev, 64 * PAGE_SIZE)
    obj.get_pages_sgt()
    obj.put()
    assert obj.freed and free_pages(dev) == start and obj.sgt is None


def test_free_with_a_vmap_still_held_is_a_leak(dev):
    """In strict mode a leaked vmap raises KernelBug, after the pages were returned anyway."""
    start = free_pages(dev)
    obj = ShmemObject(dev, 4 * PAGE_SIZE)
    obj.vmap()
    with pytest.raises(KernelBug, match="vmap_use_count=1"):
        obj.put()
    assert free_pages(dev) == start


def test_free_with_leaks_logs_a_warning_when_not_strict(dev, monkeypatch):
    """Outside strict mode a leak is a WARNING in the kernel log and the pages still go back."""
    monkeypatch.setattr(ShmemObject, "strict", False)
    start = free_pages(dev)
    obj = ShmemObject(dev, 4 * PAGE_SIZE)
    obj.pin()
    obj.get_pages()
    obj.put()
    assert free_pages(dev) == start
    assert re.search(r"WARNING: drm_gem_shmem_free: object freed with pages_use_count=1, pages_pin_count=1", dev.log.text())


def test_one_unbalanced_get_pages_is_absorbed_at_free(dev):
    """Like the kernel's final put_pages, free drops one outstanding use reference silently."""
    start = free_pages(dev)
    obj = ShmemObject(dev, 4 * PAGE_SIZE)
    obj.get_pages()
    obj.put()
    assert free_pages(dev) == start and "WARNING" not in dev.log.text()


def test_mark_on_put_flags_reach_the_allocator(dev):
    """pages_mark_dirty/accessed_on_put mark every page before it is released."""
    obj = ShmemObject(dev, 4 * PAGE_SIZE)
    obj.pages_mark_dirty_on_put = True
    obj.get_pages()
    obj.put_pages()
    obj.pages_mark_accessed_on_put = True
    obj.get_pages()
    obj.put_pages()
    stats = dev.pages.stats()
    assert (stats.released, stats.released_dirty, stats.released_accessed) == (8, 8, 4)


# -- reports ---------------------------------------------------------------------------------


def test_print_info_616_and_615(dev):
    """print_info prints the 6.16 lines with tab indent; 6.15 has no pages_pin_count line."""
    obj = ShmemObject(dev, PAGE_SIZE)
    assert obj.print_info(2) == (
        "\t\tpages_pin_count=0\n\t\tpages_use_count=0\n\t\tvmap_use_count=0\n\t\tvaddr=0000000000000000\n"
    )
    obj.vmap()
    lines = obj.print_info(1, version=(6, 15)).splitlines()
    assert lines[:2] == ["\tpages_use_count=1", "\tvmap_use_count=1"]
    assert re.fullmatch(r"\tvaddr=00000000[0-9a-f]{8}", lines[2])
    assert obj.print_info(0, hashed=False).endswith(f"vaddr={obj.vaddr:016x}\n")
    obj.vunmap()
    obj.imported = True
    assert obj.print_info(1) == ""


def test_format_pointer():
    """%p: NULL is 16 zeros, others hash to 8 hex digits behind 8 zeros."""
    assert format_pointer(None) == "0" * 16
    assert re.fullmatch(r"00000000[0-9a-f]{8}", format_pointer(0xFFFF800080000000))


def test_dense_bookkeeping_covers_the_whole_object(dev):
    """Dense: 8 bytes per page of the object once pages exist, plus the sg table."""
    obj = ShmemObject(dev, SZ_2M)
    obj.get_pages_sgt()
    assert obj.kernel_bookkeeping_bytes() == 4096 + 16 + 32


# -- sparse ------------------------------------------------------------------------------------


def test_sparse_object_starts_empty(dev):
    """A sparse object has an empty page xarray, no use count, costs nothing yet."""
    obj = ShmemObject.create_sparse(dev, 1 << 32)
    assert obj.sparse and isinstance(obj.pages, XArray) and obj.xapages is obj.pages
    assert not obj.is_populated() and obj.resident_size == 0 and obj.pages_use_count == 0
    assert obj.kernel_bookkeeping_bytes() == 0 and list(obj.sparse_sgts()) == []
    with pytest.raises(InvalidArgument):
        ShmemObject(dev, PAGE_SIZE).xapages


def test_sparse_populate_builds_a_mapped_table_per_range(dev):
    """get_sparse_pages_sgt populates 512 pages and returns the range's DMA-mapped table."""
    obj = ShmemObject.create_sparse(dev, 64 * SZ_2M)
    start = free_pages(dev)
    sgt = obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 3 * NUM_FAULT_PAGES, Gfp.KERNEL)
    assert sgt.dma_mapped and sgt.nents == 1 and sgt.size == SZ_2M
    assert obj.pages_use_count == 1 and obj.resident_size == SZ_2M and obj.is_populated()
    assert free_pages(dev) == start - NUM_FAULT_PAGES
    assert obj.sparse_sgt(3) is sgt and obj.sparse_sgt(2) is None
    assert sgt.page_pfns() == obj.pages.load_range(3 * NUM_FAULT_PAGES, NUM_FAULT_PAGES)


def test_already_populated_range_returns_its_table_or_eexist(dev):
    """A fully populated range is a success returning the same table; exist_ok=False gives EEXIST."""
    obj = ShmemObject.create_sparse(dev, 4 * SZ_2M)
    sgt = obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 0)
    free = free_pages(dev)
    assert obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 0) is sgt
    with pytest.raises(Exists, match="already populated"):
        obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 0, exist_ok=False)
    assert free_pages(dev) == free and obj.pages_use_count == 1


def test_partly_populated_range_is_completed_without_loss_or_doubling():
    """TODO (1): only the missing pages are allocated; present ones are kept in place."""
    dev = make_dev(fragmentation=0.5, seed=2)
    obj = ShmemObject.create_sparse(dev, 64 * PAGE_SIZE, granularity_npages=16)
    assert obj.populate_range(20, 5) == 5
    kept = obj.pages.load_range(20, 5)
    free = free_pages(dev)
    sgt = obj.get_sparse_pages_sgt(16, 16, Gfp.KERNEL, exist_ok=False)  # partial: no EEXIST
    assert free_pages(dev) == free - 11
    assert obj.pages.load_range(20, 5) == kept
    assert sgt.page_pfns() == obj.pages.load_range(16, 16)
    assert len(obj.pages) == 16 and obj.resident_size == 16 * PAGE_SIZE
    pfns = obj.pages.values()
    assert len(set(pfns)) == 16 and all(dev.pages.page_flags(p) & PG_allocated for p in pfns)


def test_populated_range_without_table_gets_one(dev):
    """A range filled by populate_range gets its table on request, with no new pages."""
    obj = ShmemObject.create_sparse(dev, 32 * PAGE_SIZE, granularity_npages=8)
    obj.populate_range(8, 8)
    free = free_pages(dev)
    assert obj.sparse_sgt(1) is None
    sgt = obj.get_sparse_pages_sgt(8, 8)
    assert obj.sparse_sgt(1) is sgt and free_pages(dev) == free


def test_failed_allocation_leaves_the_object_unchanged():
    """A NOWAIT allocation below the watermark fails and nothing of the range stays."""
    dev = make_dev(total_pages=1024, low_watermark_pages=600)
    obj = ShmemObject.create_sparse(dev, 64 * PAGE_SIZE, granularity_npages=32)
    obj.populate_range(0, 3)
    before = (obj.pages.load_range(0, 64), obj.pages_use_count)
    dev.pages.alloc_pages(free_pages(dev) - 620)  # leave 20 free pages above the watermark
    with pytest.raises(OutOfMemory, match="GFP_NOWAIT"):
        obj.get_sparse_pages_sgt(32, 0, Gfp.NOWAIT)
    assert (obj.pages.load_range(0, 64), obj.pages_use_count) == before
    assert obj.sparse_sgt(0) is None and free_pages(dev) == 620


def test_failure_after_allocation_releases_only_the_new_pages(dev, monkeypatch):
    """If building the table fails, the pages this call added go back; older ones stay."""
    obj = ShmemObject.create_sparse(dev, 16 * PAGE_SIZE, granularity_npages=8)
    obj.populate_range(1, 2)
    kept = obj.pages.load_range(0, 8)
    free = free_pages(dev)

    def broken(*args, **kwargs):
        raise OutOfMemory("injected: no memory to map the sg table")

    monkeypatch.setattr(gem_shmem, "dma_map_sgtable", broken)
    with pytest.raises(OutOfMemory, match="injected"):
        obj.get_sparse_pages_sgt(8, 0)
    assert obj.pages.load_range(0, 8) == kept and free_pages(dev) == free
    assert obj.pages_use_count == 1
    fresh = ShmemObject.create_sparse(dev, 8 * PAGE_SIZE, granularity_npages=8)
    with pytest.raises(OutOfMemory):
        fresh.get_sparse_pages_sgt(8, 0)
    assert not fresh.is_populated() and fresh.pages_use_count == 0 and free_pages(dev) == free


@pytest.mark.parametrize(
    "n_pages,page_offset,match",
    [(NUM_FAULT_PAGES, 1, "granule"), (256, 0, "granule"), (NUM_FAULT_PAGES, 8 * NUM_FAULT_PAGES, "beyond"), (0, 0, "bad")],
)
def test_sparse_range_checks(dev, n_pages, page_offset, match):
    """Ranges must be one aligned granule inside the object."""
    obj = ShmemObject.create_sparse(dev, 8 * SZ_2M)
    with pytest.raises(InvalidArgument, match=match):
        obj.get_sparse_pages_sgt(n_pages, page_offset)


def test_last_granule_may_be_short(dev):
    """An object whose size is not a multiple of the granule has a shorter last range."""
    obj = ShmemObject.create_sparse(dev, 20 * PAGE_SIZE, granularity_npages=16)
    assert obj.get_sparse_pages_sgt(4, 16).size == 4 * PAGE_SIZE


def test_dense_object_refuses_sparse_calls(dev):
    """Sparse population of a dense object is InvalidArgument."""
    obj = ShmemObject(dev, SZ_2M)
    with pytest.raises(InvalidArgument, match="dense"):
        obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 0)
    with pytest.raises(InvalidArgument):
        obj.sparse_sgt(0)
    assert list(obj.sparse_sgts()) == []


def test_range_tables_live_in_a_sparse_store(dev):
    """TODO (2): tables are keyed by range index; cost follows populated ranges, not size."""
    small = ShmemObject.create_sparse(make_dev(total_pages=8192), 4 * SZ_2M)
    huge = ShmemObject.create_sparse(make_dev(total_pages=8192), 1 << 32)
    for obj in (small, huge):
        obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 0)
        obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 3 * NUM_FAULT_PAGES)
    assert [i for i, _ in huge.sparse_sgts()] == [0, 3]
    assert huge.kernel_bookkeeping_bytes() == small.kernel_bookkeeping_bytes()
    # 16 leaves + interior nodes (0..2047 -> 1 root) + 1 sgt-store node + 2 one-entry tables
    assert huge.kernel_bookkeeping_bytes() == (16 + 1 + 1) * XA_NODE_BYTES + 2 * (16 + 32)


def test_partial_sparse_objects_refuse_kernel_and_user_mappings(dev):
    """TODO (3): before every page is populated vmap/mmap are EACCES, pin and sg getters EINVAL."""
    obj = ShmemObject.create_sparse(dev, 2 * SZ_2M)
    obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 0)
    with pytest.raises(AccessDenied, match="vmap of a sparse object"):
        obj.vmap()
    with pytest.raises(AccessDenied, match="mmap of a sparse object"):
        obj.mmap()
    for call in (obj.pin, obj.get_pages, obj.get_sg_table, obj.get_pages_sgt):
        with pytest.raises(InvalidArgument, match="sparse object needs every page"):
            call()
    assert (obj.pages_use_count, obj.pages_pin_count, obj.vmap_use_count, obj.mmap_count) == (1, 0, 0, 0)


def test_fully_populated_sparse_objects_behave_like_dense_ones(dev):
    """TODO (3): once every page is present, vmap, mmap and the sg getters work."""
    obj = ShmemObject.create_sparse(dev, 2 * SZ_2M)
    for block in range(2):
        obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, block * NUM_FAULT_PAGES)
    assert obj.vmap() and obj.pages_pin_count == 1 and obj.pages_use_count == 2
    obj.mmap()
    assert obj.fault(700) == obj.pages.load(700)
    sgt = obj.get_pages_sgt()
    assert sgt.page_pfns() == obj.pages.load_range(0, 2 * NUM_FAULT_PAGES)
    obj.madvise(1)
    assert not obj.is_purgeable()  # sparse objects are never purgeable (v3)
    obj.munmap()
    obj.vunmap()
    start = free_pages(dev) + 2 * NUM_FAULT_PAGES
    obj.put()
    assert obj.freed and free_pages(dev) == start


def test_sparse_put_pages_releases_every_page_and_table(dev):
    """put_pages to 0 releases all pages and frees every range table."""
    obj = ShmemObject.create_sparse(dev, 8 * SZ_2M)
    start = free_pages(dev)
    tables = [obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, b * NUM_FAULT_PAGES) for b in (1, 5, 6)]
    obj.put_pages()
    assert free_pages(dev) == start and not obj.is_populated() and obj.pages_use_count == 0
    assert all(t.orig_nents == 0 for t in tables) and list(obj.sparse_sgts()) == []
    obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, 0)  # population starts over
    assert obj.pages_use_count == 1


def test_sparse_free_returns_everything_and_prints_info(dev):
    """Freeing a sparse object returns its pages; print_info works as for dense objects."""
    start = free_pages(dev)
    obj = ShmemObject.create_sparse(dev, 4 * SZ_2M)
    obj.get_sparse_pages_sgt(NUM_FAULT_PAGES, NUM_FAULT_PAGES)
    assert "pages_use_count=1\n" in obj.print_info()
    obj.put()
    assert free_pages(dev) == start


@pytest.mark.parametrize("granularity", [0, 3, 12])
def test_granularity_must_be_a_power_of_two(dev, granularity):
    """Sparse granules are a power of two pages, as v3's sparse_init requires."""
    with pytest.raises(InvalidArgument, match="power of two"):
        ShmemObject.create_sparse(dev, SZ_2M, granularity_npages=granularity)


# -- state machine -------------------------------------------------------------------------------

GRANULE = 8
RAM_PAGES = 256


class ShmemLifecycle(RuleBasedStateMachine):
    """Objects created, populated, pinned, mapped, madvised, purged and freed in any order."""

    def __init__(self):
        super().__init__()
        self.dev = make_dev(total_pages=RAM_PAGES, fragmentation=0.5, seed=5, low_watermark_pages=16)
        self.start_free = self.dev.pages.free_pages
        self.objs: list[ShmemObject] = []
        self.held: dict[int, dict[str, int]] = {}  # references the test holds, per object

    def _pick(self, i: int) -> ShmemObject:
        return self.objs[i % len(self.objs)]

    def _holds(self, obj: ShmemObject) -> dict[str, int]:
        return self.held[id(obj)]

    @rule(npages=st.integers(1, 48))
    def create_dense(self, npages):
        obj = ShmemObject(self.dev, npages * PAGE_SIZE)
        self.objs.append(obj)
        self.held[id(obj)] = dict(pages=0, pin=0, vmap=0, mmap=0)

    @rule(ngranules=st.integers(1, 4), tail=st.integers(0, GRANULE - 1))
    def create_sparse(self, ngranules, tail):
        obj = ShmemObject.create_sparse(self.dev, (ngranules * GRANULE + tail) * PAGE_SIZE, granularity_npages=GRANULE)
        self.objs.append(obj)
        self.held[id(obj)] = dict(pages=0, pin=0, vmap=0, mmap=0)

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99), granule=st.integers(0, 5), nowait=st.booleans(), exist_ok=st.booleans())
    def populate(self, i, granule, nowait, exist_ok):
        obj = self._pick(i)
        first = granule * GRANULE
        if not obj.sparse or first >= obj.npages:
            with pytest.raises(InvalidArgument):
                obj.get_sparse_pages_sgt(GRANULE, first)
            return
        n_pages = min(GRANULE, obj.npages - first)
        full_before = obj.pages.count_range(first, first + n_pages) == n_pages
        try:
            sgt = obj.get_sparse_pages_sgt(n_pages, first, Gfp.NOWAIT if nowait else Gfp.KERNEL, exist_ok=exist_ok)
        except Exists:
            assert full_before and not exist_ok
            return
        except OutOfMemory:
            assert not full_before
            return
        assert sgt.page_pfns() == obj.pages.load_range(first, n_pages)

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99), first=st.integers(0, 40), n_pages=st.integers(1, 12))
    def populate_range(self, i, first, n_pages):
        obj = self._pick(i)
        if not obj.sparse or first + n_pages > obj.npages:
            with pytest.raises(InvalidArgument):
                obj.populate_range(first, n_pages)
            return
        try:
            obj.populate_range(first, n_pages)
        except OutOfMemory:
            pass

    def _try(self, obj, call, counter):
        try:
            call()
        except (OutOfMemory, AccessDenied, InvalidArgument):
            assert obj.sparse and not obj.is_fully_populated() or obj.npages > self.dev.pages.free_pages or obj.madv < 0
            return
        self._holds(obj)[counter] += 1

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99))
    def get_pages(self, i):
        obj = self._pick(i)
        self._try(obj, obj.get_pages, "pages")

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99))
    def pin(self, i):
        obj = self._pick(i)
        self._try(obj, obj.pin, "pin")

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99))
    def vmap(self, i):
        obj = self._pick(i)
        self._try(obj, obj.vmap, "vmap")

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99))
    def mmap(self, i):
        obj = self._pick(i)
        self._try(obj, obj.mmap, "mmap")

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99), what=st.sampled_from(["pages", "pin", "vmap", "mmap"]))
    def release_one(self, i, what):
        obj = self._pick(i)
        holds = self._holds(obj)
        call = dict(pages=obj.put_pages, pin=obj.unpin, vmap=obj.vunmap, mmap=obj.munmap)[what]
        if holds[what] == 0:
            if what == "pages" and obj.pages_use_count > obj._held_page_refs():
                return  # a population or sgt reference the test does not own
            with pytest.raises(KernelBug):
                call()
            return
        call()
        holds[what] -= 1

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99))
    def get_pages_sgt(self, i):
        obj = self._pick(i)
        try:
            obj.get_pages_sgt()
        except (OutOfMemory, InvalidArgument):
            assert obj.sgt is None

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99), madv=st.sampled_from([0, 1]))
    def madvise(self, i, madv):
        obj = self._pick(i)
        assert obj.madvise(madv) == (obj.madv >= 0)

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99))
    def purge(self, i):
        obj = self._pick(i)
        if obj.is_purgeable():
            obj.purge()
            assert obj.madv == -1 and obj.sgt is None
        else:
            with pytest.raises(KernelBug):
                obj.purge()

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 99))
    def free(self, i):
        self._free(self._pick(i))

    def _free(self, obj: ShmemObject) -> None:
        """Drop what the test holds, then the creator's reference: the object must go."""
        holds = self._holds(obj)
        for call, what in ((obj.munmap, "mmap"), (obj.vunmap, "vmap"), (obj.unpin, "pin"), (obj.put_pages, "pages")):
            for _ in range(holds[what]):
                call()
        obj.put()
        assert obj.freed
        self.objs.remove(obj)
        del self.held[id(obj)]

    @invariant()
    def books_balance(self):
        pa = self.dev.pages
        owned = []
        for obj in self.objs:
            assert min(obj.pages_use_count, obj.pages_pin_count, obj.vmap_use_count, obj.mmap_count) >= 0
            if obj.sparse:
                pfns = obj.pages.values().tolist()
                assert obj.resident_size == len(pfns) * PAGE_SIZE
                assert (obj.pages_use_count > 0) == bool(pfns)
            else:
                pfns = [] if obj.pages is None else obj.pages.tolist()
                assert obj.resident_size == len(pfns) * PAGE_SIZE == (obj.size if pfns else 0)
                assert (obj.pages_use_count > 0) == bool(pfns)
            assert obj.pages_use_count >= obj._held_page_refs()
            assert (obj.vaddr is not None) == (obj.vmap_use_count > 0)
            owned.extend(pfns)
        assert len(owned) == len(set(owned)), "a pfn is owned twice"
        assert all(pa.page_flags(p) & PG_allocated for p in owned)
        assert pa.free_pages == self.start_free - len(owned)

    def teardown(self):
        for obj in list(self.objs):
            self._free(obj)
        assert self.dev.pages.free_pages == self.start_free
        assert list(self.dev.iter_objects()) == []


ShmemLifecycle.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestShmemLifecycle = ShmemLifecycle.TestCase
