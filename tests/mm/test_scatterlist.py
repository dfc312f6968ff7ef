"""Tests for vdrm.mm.scatterlist against the kernel's rules (reference section 1).

The harness rows of ``tools/testing/scatterlist/main.c`` are replayed with the harness's
mechanics (page for pfn p has pfn p+1; append rows call append twice). The rows held back
from the reference copy (9, 10, 18-22) are derived here from rules 1.3 and marked so.
"""

from __future__ import annotations

from array import array

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vdrm.errors import InvalidArgument
from vdrm.mm.page_alloc import PAGE_SIZE
from vdrm.mm.scatterlist import (
    SG_CHAIN,
    SG_END,
    SG_MAX_SINGLE_ALLOC,
    UINT_MAX,
    SgAppendTable,
    dma_map_sgtable,
    page_runs,
    segment_npages,
    sg_alloc_append_table_from_pages,
    sg_alloc_table,
    sg_alloc_table_from_pages,
    sg_alloc_table_from_pages_segment,
    sg_alloc_table_from_xarray,
    sg_alloc_table_from_xarray_segment,
    sg_free_table,
)
from vdrm.mm.xarray import XArray

P = PAGE_SIZE
SGMAX = UINT_MAX
EINVAL = -22

# (id, alloc_ret, num_pages, pfn, pfn_app, size, max_seg, expected nents)
KERNEL_TABLE = [
    ("row1", EINVAL, 1, [0], None, P, 0, 1),
    ("row2", 0, 1, [0], None, P, P + 1, 1),
    ("row3", 0, 1, [0], None, P, SGMAX, 1),
    ("row4", 0, 1, [0], None, 1, SGMAX, 1),
    ("row5", 0, 2, [0, 1], None, 2 * P, SGMAX, 1),
    ("row6", 0, 2, [1, 0], None, 2 * P, SGMAX, 2),
    ("row7", 0, 3, [0, 1, 2], None, 3 * P, SGMAX, 1),
    ("row8", 0, 3, [0, 1, 2], None, 3 * P, SGMAX, 1),
    # derived, rule 3: pfn 3 is next_pfn of the entry {0,1,2}; all three pages are absorbed
    # (max_segment allows it), so no new entry is added.
    ("row9-derived", 0, 3, [0, 1, 2], [3, 4, 5], 3 * P, SGMAX, 1),
    # derived, rules 3+5: pfn 4 is not next_pfn (3), so {4,5,6} starts a new entry.
    ("row10-derived", 0, 3, [0, 1, 2], [4, 5, 6], 3 * P, SGMAX, 2),
    ("row11", 0, 3, [0, 2, 1], None, 3 * P, SGMAX, 3),
    ("row12", 0, 3, [0, 1, 3], None, 3 * P, SGMAX, 2),
    ("row13", 0, 3, [1, 2, 4], None, 3 * P, SGMAX, 2),
    ("row14", 0, 3, [1, 3, 4], None, 3 * P, SGMAX, 2),
    ("row15", 0, 4, [0, 1, 3, 4], None, 4 * P, SGMAX, 2),
    ("row16", 0, 5, [0, 1, 3, 4, 5], None, 5 * P, SGMAX, 2),
    ("row17", 0, 5, [0, 1, 3, 4, 6], None, 5 * P, SGMAX, 3),
    # derived, rule 5: five contiguous pages under UINT_MAX are one entry.
    ("row18-derived", 0, 5, [0, 1, 2, 3, 4], None, 5 * P, SGMAX, 1),
    # derived, rule 3: {5..9} continues {0..4} and is absorbed whole.
    ("row19-derived", 0, 5, [0, 1, 2, 3, 4], [5, 6, 7, 8, 9], 5 * P, SGMAX, 1),
    # derived, rule 5: max_segment PAGE_SIZE cuts every page: 10 entries.
    ("row20-derived", 0, 10, list(range(10)), None, 10 * P, P, 10),
    # derived, rule 5: pieces of 2 pages: 10 / 2 = 5 entries.
    ("row21-derived", 0, 10, list(range(10)), None, 10 * P, 2 * P, 5),
    # derived, rule 5: pieces of 3 pages: 3+3+3+1 = 4 entries.
    ("row22-derived", 0, 10, list(range(10)), None, 10 * P, 3 * P, 4),
    # derived, rules 3+5: first call 3+3+3+1 (4 entries); the second call's pfn 10 continues
    # the 1-page entry, which absorbs 10 and 11 (3 pages = max); 12..19 give 3+3+2: 7.
    ("append-maxseg-derived", 0, 10, list(range(10)), list(range(10, 20)), 10 * P, 3 * P, 7),
    # derived, rule 3: pfn 4 continues the entry {3}; 4,5,6 are absorbed: {0,1},{3..6}.
    ("append-continues-second-entry-derived", 0, 3, [0, 1, 3], [4, 5, 6], 3 * P, SGMAX, 2),
    # derived, rules 1+3+5: max 2 pages: {0,1},{2}; 3 is absorbed into {2} (now full); {4,5}.
    ("append-absorb-until-full-derived", 0, 3, [0, 1, 2], [3, 4, 5], 3 * P, 2 * P, 3),
    # derived, rule 1: PAGE_SIZE + 1 rounds down to PAGE_SIZE: 2 contiguous pages, 2 entries.
    ("maxseg-rounds-down-derived", 0, 2, [0, 1], None, 2 * P, P + 1, 2),
]


def run_harness_case(num_pages, pfn, pfn_app, size, max_seg):
    """main.c's mechanics: page for pfn p has pfn p + 1; returns the checked counters."""
    pages = [p + 1 for p in pfn]
    if pfn_app is None:
        sgt = sg_alloc_table_from_pages_segment(pages, 0, size, max_seg)
        return sgt.nents, sgt.orig_nents
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, pages, 0, size, max_seg, num_pages)
    sg_alloc_append_table_from_pages(append, [p + 1 for p in pfn_app], 0, size, max_seg, 0)
    return append.sgt.nents, append.sgt.orig_nents


@pytest.mark.parametrize("case", KERNEL_TABLE, ids=[row[0] for row in KERNEL_TABLE])
def test_kernel_harness_row(case):
    """Each harness row gives the kernel's return code and nents (== orig_nents)."""
    _, alloc_ret, num_pages, pfn, pfn_app, size, max_seg, expected = case
    assert len(pfn) == num_pages
    if alloc_ret == EINVAL:
        with pytest.raises(InvalidArgument, match="PAGE_SIZE"):
            run_harness_case(num_pages, pfn, pfn_app, size, max_seg)
        return
    assert run_harness_case(num_pages, pfn, pfn_app, size, max_seg) == (expected, expected)


def entries(sgt):
    return [(e.pfn, e.offset, e.length) for e in sgt]


def test_entry_contents_follow_the_filling_rule():
    """Entries carry the first page, the caller's offset on entry 0 and min(size, chunk) lengths."""
    assert entries(sg_alloc_table_from_pages([1], 0, 1)) == [(1, 0, 1)]
    assert entries(sg_alloc_table_from_pages([2, 1], 0, 2 * P)) == [(2, 0, P), (1, 0, P)]
    assert entries(sg_alloc_table_from_pages([1, 2, 4, 5, 6], 0, 5 * P)) == [(1, 0, 2 * P), (4, 0, 3 * P)]
    assert entries(sg_alloc_table_from_pages([5, 6], 100, 2 * P - 100)) == [(5, 100, 2 * P - 100)]


def test_size_wraps_like_an_unsigned_long():
    """Once size is used up it wraps: the next entry is 0 (or short) and later ones are full."""
    assert [e.length for e in sg_alloc_table_from_pages([1, 3, 5], 0, P)] == [P, 0, P]
    assert [e.length for e in sg_alloc_table_from_pages([1, 3, 5], 0, P + P // 2)] == [P, P // 2, P]
    assert [e.length for e in sg_alloc_table_from_pages([1, 3, 5], 0, 0)] == [0, P, P]


def test_rfc_v2_single_page_absorption_bug_is_not_reproduced():
    """Appending {3,4,5} after {0,1,2} absorbs all three pages (RFC v2 would absorb one: 2 entries)."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [0, 1, 2], 0, 3 * P, SGMAX, 3)
    sg_alloc_append_table_from_pages(append, [3, 4, 5], 0, 3 * P, SGMAX, 0)
    assert entries(append.sgt) == [(0, 0, 6 * P)]
    assert append.prv.is_last


def test_absorption_stops_at_max_segment():
    """prv grows page by page only while its length stays within max_segment."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [10], 0, P, 4 * P, 10)
    sg_alloc_append_table_from_pages(append, list(range(11, 17)), 0, 6 * P, 4 * P, 0)
    assert entries(append.sgt) == [(10, 0, 4 * P), (14, 0, 3 * P)]


def test_continuing_with_an_offset_is_einval():
    """A non-zero offset when a previous entry exists is refused and changes nothing."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [0, 1], 0, 2 * P, SGMAX, 2)
    with pytest.raises(InvalidArgument, match="offset"):
        sg_alloc_append_table_from_pages(append, [2, 3], 8, 2 * P, SGMAX, 0)
    assert entries(append.sgt) == [(0, 0, 2 * P)] and not append.prv.is_last


def test_left_pages_reserves_slots_for_later_appends():
    """The first call allocates room for left_pages more entries; the second fills it."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [0, 2], 0, 2 * P, SGMAX, 3)
    assert append.sgt.chunks == [5] and append.total_nents == 5 and append.sgt.nents == 2
    assert not any(e.is_last for e in append.sgt)
    sg_alloc_append_table_from_pages(append, [4, 6, 8], 0, 3 * P, SGMAX, 0)
    assert append.sgt.chunks == [5] and append.total_nents == 5 and append.sgt.nents == 5
    assert [e.is_last for e in append.sgt] == [False] * 4 + [True]


# -- chunk layout ---------------------------------------------------------------------

CHUNK_CASES = [(127, [127]), (128, [128]), (129, [128, 2]), (200, [128, 73]), (255, [128, 128]), (256, [128, 128, 2])]


@pytest.mark.parametrize("nents,chunks", CHUNK_CASES)
def test_chunk_layout_from_scattered_pages(nents, chunks):
    """One page per entry: the chunks and total_nents of reference 1.3."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, list(range(0, 2 * nents, 2)), 0, nents * P, SGMAX, 0)
    assert append.sgt.chunks == chunks
    assert append.total_nents == append.sgt.nents == append.sgt.orig_nents == nents


@pytest.mark.parametrize("nents,chunks", CHUNK_CASES)
def test_chunk_layout_of_plain_tables(nents, chunks):
    """sg_alloc_table lays out chunks the same way, END on the last entry only."""
    sgt = sg_alloc_table(nents)
    assert sgt.chunks == chunks and sgt.nents == sgt.orig_nents == nents
    flags = [e.flags for e in sgt]
    assert flags[-1] == SG_END and not any(flags[:-1])


def test_chain_links_sit_at_the_end_of_every_full_chunk():
    """Every chunk but the last gives its last slot to a chain link; entries fill the rest."""
    sgt = sg_alloc_table_from_pages(list(range(0, 600, 2)), 0, 300 * P)
    slots = list(sgt.slots())
    links = [(chunk, slot) for chunk, slot, content in slots if content is not None and content.flags & SG_CHAIN]
    assert links == [(0, 127), (1, 127)]
    assert [content.pfn for _, _, content in slots if content is not None and not content.is_chain] == list(range(0, 600, 2))


def test_170_slot_chunks():
    """With 24-byte entries (no DMA length) a chunk holds 170 slots and costs one page."""
    sgt = sg_alloc_table_from_pages(list(range(0, 342, 2)), 0, 171 * P, max_single_alloc=170)
    assert sgt.chunks == [170, 2]
    assert sgt.kernel_bytes() == 16 + 4096 + 64  # struct + page + kmalloc(2 * 24) -> 64
    assert sg_alloc_table(170, max_single_alloc=170).chunks == [170]


def test_kernel_bytes():
    """The kernel's cost: 16-byte sg_table, whole pages for full chunks, kmalloc for the rest."""
    assert sg_alloc_table_from_pages(list(range(512)), 0, 512 * P).kernel_bytes() == 16 + 32
    assert sg_alloc_table_from_pages(list(range(0, 1024, 2)), 0, 512 * P).kernel_bytes() == 16 + 4 * 4096 + 128
    assert sg_alloc_table(3).kernel_bytes() == 16 + 96


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_sg_alloc_table_refuses_zero_entries(bad):
    """sg_alloc_table(0) is -EINVAL."""
    with pytest.raises(InvalidArgument):
        sg_alloc_table(bad)


def test_plain_table_set_page_then_dma_map():
    """Entries of a plain table can be set and then DMA-mapped; unset ones refuse mapping."""
    sgt = sg_alloc_table(2)
    sgt.set_page(0, 7, P - 16, offset=16)
    with pytest.raises(InvalidArgument, match="entry 1 has no page"):
        dma_map_sgtable(sgt)
    sgt.set_page(1, 9, P)
    sgt.set_page(1, 9, P // 2)  # set again: the size follows the new length
    dma_map_sgtable(sgt)
    assert sgt.dma_segments() == [(7 * P + 16, P - 16), (9 * P, P // 2)]
    assert sgt.size == P - 16 + P // 2


# -- max_segment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "max_segment,npages", [(P, 1), (P + 1, 1), (2 * P - 1, 1), (3 * P, 3), (SGMAX, 0xFFFFF)]
)
def test_max_segment_rounds_down_to_whole_pages(max_segment, npages):
    """max_segment is rounded down to a multiple of PAGE_SIZE (UINT_MAX -> 0xFFFFF000)."""
    assert segment_npages(max_segment) == npages


@pytest.mark.parametrize("max_segment", [0, P - 1, -P, SGMAX + 1])
def test_max_segment_below_a_page_is_einval(max_segment):
    """A max_segment that rounds to 0 (or is not an unsigned int) is -EINVAL."""
    with pytest.raises(InvalidArgument):
        sg_alloc_table_from_pages_segment([1, 2], 0, 2 * P, max_segment)


def test_uint_max_segments_cut_a_4gib_run():
    """1 Mi contiguous pages under UINT_MAX: one 0xFFFFF000-byte entry plus one page."""
    sgt = sg_alloc_table_from_pages(array("q", range(1 << 20)), 0, 1 << 32)
    assert entries(sgt) == [(0, 0, 0xFFFFF000), (0xFFFFF, 0, P)]


# -- inputs the kernel mishandles (reference 1.8) ---------------------------------------


def test_append_after_left_pages_zero_is_refused_and_changes_nothing():
    """New entries after a call with left_pages=0 are refused (kernel: NULL dereference)."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [0, 1], 0, 2 * P, SGMAX, 0)
    with pytest.raises(InvalidArgument, match="left_pages=0"):
        sg_alloc_append_table_from_pages(append, [2, 9], 0, 2 * P, SGMAX, 0)
    assert entries(append.sgt) == [(0, 0, 2 * P)] and append.total_nents == 1


def test_append_after_left_pages_zero_that_only_merges_is_allowed():
    """When every new page merges into the END-marked entry the kernel is fine, and so is vdrm."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [0, 1], 0, 2 * P, SGMAX, 0)
    sg_alloc_append_table_from_pages(append, [2, 3], 0, 2 * P, SGMAX, 0)
    assert entries(append.sgt) == [(0, 0, 4 * P)] and append.prv.is_last


def test_left_pages_lower_than_what_follows_is_refused():
    """A new chunk chained after a short chunk (broken left_pages promise) is refused."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [0, 2], 0, 2 * P, SGMAX, 1)
    assert append.sgt.chunks == [3]
    with pytest.raises(InvalidArgument, match="short chunk"):
        sg_alloc_append_table_from_pages(append, [4, 6, 8], 0, 3 * P, SGMAX, 0)
    assert append.sgt.chunks == [3] and append.sgt.nents == 2 and append.prv.length == P


def test_left_pages_promise_kept_within_a_full_chunk_is_fine():
    """Under-promising is harmless when the chunk was already full size (128 slots)."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, list(range(0, 254, 2)), 0, 127 * P, SGMAX, 1)
    assert append.sgt.chunks == [128]
    sg_alloc_append_table_from_pages(append, [1001, 1003, 1005], 0, 3 * P, SGMAX, 0)
    assert append.sgt.nents == 130 and append.sgt.chunks == [128, 3] and append.total_nents == 130


def test_repassing_the_page_a_mid_page_entry_ends_in_is_refused():
    """An entry ending inside a page must not absorb that page again (+4096 bytes never passed)."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, [10], 0, 100, SGMAX, 1)
    with pytest.raises(InvalidArgument, match="ends inside pfn 0xa"):
        sg_alloc_append_table_from_pages(append, [10], 0, P, SGMAX, 0)
    assert entries(append.sgt) == [(10, 0, 100)]


@pytest.mark.parametrize(
    "pages,offset,match",
    [([], 0, "n_pages is 0"), ([1], P, "offset"), ([1], -1, "offset"), ([1, -3], 0, "non-negative"), (["x"], 0, "pfns")],
)
def test_bad_inputs_are_refused(pages, offset, match):
    """Empty page lists, offsets outside the first page and bad pfns are InvalidArgument."""
    with pytest.raises(InvalidArgument, match=match):
        sg_alloc_table_from_pages_segment(pages, offset, P, SGMAX)


def test_size_must_be_an_unsigned_long():
    """A negative or 65-bit size is refused."""
    for size in (-1, 1 << 64):
        with pytest.raises(InvalidArgument, match="size"):
            sg_alloc_table_from_pages([1], 0, size)


# -- xarray builder (RFC v2 1/6) ------------------------------------------------------------


def test_table_from_xarray_uses_absolute_indices():
    """Pages come from xa[idx .. idx+n_pages-1], not from index 0."""
    xa = XArray("q")
    xa.store_range(1000, array("q", [50, 51, 52, 90, 91]))
    sgt = sg_alloc_table_from_xarray(xa, 1000, 5, 0, 5 * P)
    assert entries(sgt) == [(50, 0, 3 * P), (90, 0, 2 * P)]
    sgt = sg_alloc_table_from_xarray_segment(xa, 1001, 2, 0, 2 * P, P)
    assert entries(sgt) == [(51, 0, P), (52, 0, P)]


def test_hole_in_the_xarray_range_is_einval_not_a_crash():
    """A hole inside the range is reported with its index."""
    xa = XArray("q")
    xa.store_range(0, [5, 6])
    xa.store(3, 8)
    with pytest.raises(InvalidArgument, match="index 2"):
        sg_alloc_table_from_xarray(xa, 0, 4, 0, 4 * P)
    with pytest.raises(InvalidArgument):
        sg_alloc_table_from_xarray(xa, 0, 0, 0, 0)
    with pytest.raises(InvalidArgument):
        sg_alloc_table_from_xarray(XArray(), 0, 1, 0, P)


# -- DMA view, freeing ------------------------------------------------------------------------


def test_dma_map_without_iommu():
    """dma_address = phys, dma_length = length, nents unchanged; unmapped tables read zeros."""
    sgt = sg_alloc_table_from_pages([3, 4, 9], 512, 3 * P - 512)
    assert sgt.dma_segments() == [(0, 0), (0, 0)]
    dma_map_sgtable(sgt)
    assert sgt.nents == sgt.orig_nents == 2
    assert sgt.dma_segments() == [(3 * P + 512, 2 * P - 512), (9 * P, P)]
    assert [(e.dma_address, e.dma_length) for e in sgt.dma_entries()] == sgt.dma_segments()
    assert sgt.pfn_runs() == [(3, 2), (9, 1)]
    assert sgt.page_pfns().tolist() == [3, 4, 9]
    assert sgt.entry(0).phys == 3 * P + 512


def test_sg_free_table_is_idempotent():
    """Freeing releases every chunk; a second free is a no-op, as in the kernel."""
    sgt = sg_alloc_table_from_pages([3, 4, 9], 0, 3 * P)
    sg_free_table(sgt)
    sg_free_table(sgt)
    assert (sgt.nents, sgt.orig_nents, sgt.chunks, list(sgt), sgt.kernel_bytes(), sgt.size) == (0, 0, [], [], 0, 0)


def test_page_runs_paths():
    """Run detection agrees on contiguous, scattered, long-run and mixed inputs."""
    assert page_runs(array("q", range(5, 600))) == (array("q", [5]), array("q", [595]))
    assert page_runs(array("q", [9, 7, 5])) == (array("q", [9, 7, 5]), array("q", [1, 1, 1]))
    long_runs = array("q", list(range(100)) + list(range(200, 300)))
    assert page_runs(long_runs) == (array("q", [0, 200]), array("q", [100, 100]))
    assert page_runs(array("q", [1, 2, 4, 5, 7])) == (array("q", [1, 4, 7]), array("q", [2, 2, 1]))


# -- properties -------------------------------------------------------------------------------


def model_entries(pages, offset, size, max_segment):
    """Reference 1.3 rules 1, 5 and 6 applied page by page: [(pfn, offset, length)]."""
    max_seg = max_segment - max_segment % P
    pieces: list[list[int]] = []
    seg_len = 0
    for i, pfn in enumerate(pages):
        if i:
            seg_len += P
        if i == 0 or seg_len >= max_seg or pfn != pages[i - 1] + 1:
            pieces.append([pfn, 1])
            seg_len = 0
        else:
            pieces[-1][1] += 1
    out = []
    left = size
    for k, (pfn, npages) in enumerate(pieces):
        off = offset if k == 0 else 0
        chunk = npages * P - off
        out.append((pfn, off, min(left, chunk)))
        left = (left - chunk) % (1 << 64)
    return out


@st.composite
def pfn_lists(draw, max_runs=12):
    """Pfn lists made of runs with gaps that may go backwards (duplicates allowed)."""
    pages: list[int] = []
    cursor = draw(st.integers(0, 50))
    for _ in range(draw(st.integers(1, max_runs))):
        cursor = max(0, cursor + draw(st.integers(-4, 6)))
        length = draw(st.integers(1, 9))
        pages.extend(range(cursor, cursor + length))
        cursor += length
    return pages


max_segments = st.one_of(st.integers(1, 6).map(lambda n: n * P), st.integers(P, 7 * P), st.just(SGMAX))


@settings(max_examples=300, deadline=None)
@given(pages=pfn_lists(), max_segment=max_segments, offset=st.integers(0, P - 1), data=st.data())
def test_one_shot_tables_match_the_rules(pages, max_segment, offset, data):
    """Any pages, offset, size and max_segment: entries equal the page-by-page rule model."""
    full = len(pages) * P - offset
    size = data.draw(st.one_of(st.just(full), st.integers(0, full + P), st.integers(0, (1 << 64) - 1)))
    sgt = sg_alloc_table_from_pages_segment(pages, offset, size, max_segment)
    assert entries(sgt) == model_entries(pages, offset, size, max_segment)
    assert sgt.nents == sgt.orig_nents == len(list(sgt))
    assert sgt.size == sum(e.length for e in sgt)  # the kept sum, through the 64-bit wrap


@settings(max_examples=300, deadline=None)
@given(pages=pfn_lists(), max_segment=max_segments)
def test_one_shot_table_invariants(pages, max_segment):
    """Pages come back in order, no entry exceeds max_segment, adjacent entries could not merge."""
    sgt = sg_alloc_table_from_pages_segment(pages, 0, len(pages) * P, max_segment)
    max_pages = max_segment // P
    assert sgt.page_pfns().tolist() == pages
    runs = sgt.pfn_runs()
    assert all(npages <= max_pages for _, npages in runs)
    assert all(e.length <= max_pages * P for e in sgt)
    for (pfn, npages), (next_pfn, _) in zip(runs, runs[1:]):
        assert next_pfn != pfn + npages or npages == max_pages
    chunks = sgt.chunks
    assert all(c == SG_MAX_SINGLE_ALLOC for c in chunks[:-1])
    assert sum(chunks) - (len(chunks) - 1) == sgt.nents == len(runs)
    assert sgt.size == len(pages) * P


@settings(max_examples=300, deadline=None)
@given(pages=pfn_lists(), max_segment=max_segments, data=st.data())
def test_append_equals_one_shot(pages, max_segment, data):
    """Appending pages in several calls gives the same entries as one call over all of them."""
    assume(len(pages) >= 2)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(pages) - 1), max_size=3))))
    parts = [pages[a:b] for a, b in zip([0, *cuts], [*cuts, len(pages)])]
    append = SgAppendTable()
    remaining = len(pages)
    for part in parts:
        remaining -= len(part)
        sg_alloc_append_table_from_pages(append, part, 0, len(part) * P, max_segment, remaining)
    one_shot = sg_alloc_table_from_pages_segment(pages, 0, len(pages) * P, max_segment)
    assert entries(append.sgt) == entries(one_shot)
    assert append.sgt.nents == one_shot.nents
    assert append.sgt.size == one_shot.size == sum(e.length for e in one_shot)
    assert append.prv.is_last


@settings(max_examples=200, deadline=None)
@given(pages=pfn_lists(max_runs=20), max_single_alloc=st.integers(2, 9), data=st.data())
def test_chunks_with_kept_promises_are_well_formed(pages, max_single_alloc, data):
    """With honest left_pages, any append sequence chains only from full chunks."""
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(pages) - 1)), max_size=4))))
    parts = [p for p in (pages[a:b] for a, b in zip([0, *cuts], [*cuts, len(pages)])) if p]
    append = SgAppendTable(max_single_alloc)
    remaining = len(pages)
    for part in parts:
        remaining -= len(part)
        sg_alloc_append_table_from_pages(append, part, 0, len(part) * P, P, remaining, max_single_alloc=max_single_alloc)
    chunks = append.sgt.chunks
    assert all(c == max_single_alloc for c in chunks[:-1])
    assert append.total_nents == sum(chunks) - (len(chunks) - 1) >= append.sgt.nents == len(pages)
    used = [content for _, _, content in append.sgt.slots() if content is not None and not content.is_chain and content.pfn is not None]
    assert [e.pfn for e in used] == pages


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=300), st.integers(0, PAGE_SIZE - 1), st.integers(1, 64))
def test_dma_npages_counts_the_pages_of_every_dma_segment(gaps, offset, segment_pages):
    from vdrm.mm.scatterlist import dma_map_sgtable, sg_alloc_table_from_pages_segment

    pfns, pfn = [], 100
    for gap in gaps:
        pfn += 1 + gap
        pfns.append(pfn)
    size = max(1, len(pfns) * PAGE_SIZE - offset - (offset // 2))
    table = sg_alloc_table_from_pages_segment(pfns, offset, size, segment_pages * PAGE_SIZE)
    assert table.dma_npages() == 0
    dma_map_sgtable(table)
    want = sum((length + PAGE_SIZE - 1) // PAGE_SIZE for _, length in table.dma_segments())
    assert table.dma_npages() == want


def test_runs_given_by_the_allocator_build_the_same_table():
    from vdrm.mm.page_alloc import PageAllocator
    from vdrm.mm.scatterlist import UINT_MAX, sg_alloc_table_from_pages_segment

    pa = PageAllocator(8192, seed=3, fragmentation=0.3)
    pa.alloc_pages(7)
    pfns, firsts, lengths = pa.alloc_runs(512)
    a = sg_alloc_table_from_pages_segment(pfns, 0, 512 * PAGE_SIZE, UINT_MAX)
    b = sg_alloc_table_from_pages_segment(pfns, 0, 512 * PAGE_SIZE, UINT_MAX, runs=(firsts, lengths))
    assert [(e.pfn, e.offset, e.length) for e in a] == [(e.pfn, e.offset, e.length) for e in b]
    assert a.chunks == b.chunks and len(a) > 1
