"""Tests for vdrm.panfrost.gpu_va: where Panfrost puts BOs in a file's GPU VA space."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.drm.test_drm_mm import ReferenceMm, check_invariants
from vdrm.drm.drm_mm import InsertMode
from vdrm.errors import KernelBug, NoSpace
from vdrm.panfrost.gpu_va import (
    PANFROST_BO_NOEXEC,
    SZ_2M,
    SZ_4G,
    SZ_16M,
    SZ_32M,
    VA_END_PFN,
    VA_START_PFN,
    GpuVaSpace,
)

K4 = 4096
LAST_PFN = VA_END_PFN - 1  # the page just below 4 GiB
SPACE_NPAGES = VA_END_PFN - VA_START_PFN


def test_constants():
    """The space is pages [0x2000, 0x100000), i.e. VAs [32 MiB, 4 GiB)."""
    assert (VA_START_PFN, VA_END_PFN) == (0x2000, 0x100000)
    assert (VA_START_PFN << 12, VA_END_PFN << 12) == (SZ_32M, SZ_4G)
    assert (SZ_2M, SZ_16M, PANFROST_BO_NOEXEC) == (0x200000, 0x1000000, 1)


@pytest.mark.parametrize(
    ("size", "noexec"),
    [(K4, False), (K4, True), (3 * K4, True), (SZ_2M, False), (SZ_2M, True), (SZ_32M, False),
     (100 * SZ_2M, True)],
)
def test_first_bo_at_32_mib(size, noexec):
    """The first BO of a fresh file lands at VA 0x2000000 if its alignment divides 0x2000 pages."""
    va = GpuVaSpace()
    assert va.iova(va.insert(size, noexec=noexec)) == 0x2000000


@pytest.mark.parametrize(
    ("size", "iova"),
    [
        (3 * K4, 0x2001000),
        (100 * SZ_2M, 0xC800000),
        (SZ_16M + K4, 0x2002000),
        (SZ_4G // 8, 0x20000000),
    ],
)
def test_first_exec_bo_of_other_sizes(size, iova):
    """A first executable BO whose size does not divide 32 MiB starts at its next size multiple."""
    va = GpuVaSpace()
    assert va.iova(va.insert(size, noexec=False)) == iova


def test_exec_aligned_to_own_size_even_if_not_power_of_two():
    """An executable BO is aligned to its own page count, 5 pages included."""
    va = GpuVaSpace()
    va.insert(K4, noexec=False)  # page 0x2000
    node = va.insert(5 * K4, noexec=False)
    assert node.start == 0x2003  # 0x2001 rounded up to a multiple of 5
    assert va.iova(node) == 0x2003000
    node = va.insert(16 * K4, noexec=False)
    assert va.iova(node) == 0x2010000


def test_noexec_2m_or_more_aligned_to_2m():
    """A no-exec BO of 2 MiB or more starts on a 2 MiB boundary."""
    va = GpuVaSpace()
    va.insert(K4, noexec=True)
    assert va.iova(va.insert(SZ_2M, noexec=True)) == 0x2200000
    assert va.iova(va.insert(3 * SZ_2M // 2, noexec=True)) == 0x2400000


def test_small_noexec_unaligned():
    """A no-exec BO under 2 MiB takes the first free page of the best hole, unaligned."""
    va = GpuVaSpace()
    va.insert(K4, noexec=False)
    assert va.iova(va.insert(2 * K4, noexec=True)) == 0x2001000
    assert va.iova(va.insert(SZ_2M - K4, noexec=True)) == 0x2003000


def test_small_bo_fills_alignment_gap_best_fit():
    """A small BO goes into the gap an aligned BO left, the smallest hole that fits."""
    va = GpuVaSpace()
    va.insert(K4, noexec=False)
    assert va.iova(va.insert(SZ_2M, noexec=True)) == 0x2200000  # leaves [0x2001, 0x2200)
    assert va.iova(va.insert(K4, noexec=True)) == 0x2001000


def test_equal_holes_newest_first():
    """After closing BOs 2 and 4 of five 4 KiB BOs, the next two land at 4 then 2."""
    va = GpuVaSpace()
    nodes = [va.insert(K4, noexec=True) for _ in range(5)]
    va.remove(nodes[1])
    va.remove(nodes[3])
    assert [va.iova(va.insert(K4, noexec=False)) for _ in range(2)] == [0x2003000, 0x2001000]


def test_close_all_restores_fresh_space():
    """Closing every BO merges the holes back so the next BO lands at 0x2000000 again."""
    va = GpuVaSpace()
    sizes = [K4, SZ_2M, 5 * K4, SZ_16M]
    nodes = [va.insert(size, noexec=bool(i % 2)) for i, size in enumerate(sizes)]
    for node in nodes[::-1][1:] + nodes[-1:]:
        va.remove(node)
    assert len(va) == 0 and list(va.mm.holes()) == [(VA_START_PFN, VA_END_PFN)]
    assert va.iova(va.insert(K4, noexec=False)) == 0x2000000


def test_whole_space_noexec_only():
    """A no-exec BO can take all 4064 MiB, after which nothing fits; an exec one never can."""
    size = SPACE_NPAGES * K4
    with pytest.raises(NoSpace):
        GpuVaSpace().insert(size, noexec=False)  # aligned to its own size: starts past 0x2000
    va = GpuVaSpace()
    assert va.iova(va.insert(size, noexec=True)) == 0x2000000
    for noexec in (False, True):
        with pytest.raises(NoSpace):
            va.insert(K4, noexec=noexec)


def test_exec_never_on_last_page_below_4g():
    """The end clamp keeps an exec BO off the page below 4 GiB even where it is aligned to fit."""
    top = VA_END_PFN - 0x10000  # leave the top 256 MiB free, a multiple of 256 MiB
    va = GpuVaSpace()
    va.insert((top - VA_START_PFN) * K4, noexec=True)
    with pytest.raises(NoSpace):
        va.insert(0x10000 * K4, noexec=False)
    assert va.insert(0x10000 * K4, noexec=True).start == top


def test_last_page_only_noexec():
    """A hole made of the last page alone takes a no-exec BO but no exec BO."""
    va = GpuVaSpace()
    va.insert((LAST_PFN - VA_START_PFN) * K4, noexec=True)
    assert list(va.mm.holes()) == [(LAST_PFN, VA_END_PFN)]
    with pytest.raises(NoSpace):
        va.insert(K4, noexec=False)
    assert va.insert(K4, noexec=True).start == LAST_PFN


def test_exec_top_32m_hole():
    """In a hole over the top 32 MiB an exec BO may not take all 32 MiB but may take 16 MiB."""
    top = VA_END_PFN - 0x2000
    va = GpuVaSpace()
    va.insert((top - VA_START_PFN) * K4, noexec=True)
    with pytest.raises(NoSpace):
        va.insert(2 * SZ_16M, noexec=False)  # would need the last page
    assert va.iova(va.insert(SZ_16M, noexec=False)) == 0xFE000000
    with pytest.raises(NoSpace):
        va.insert(K4, noexec=False)  # what is left starts 16 MiB below 4 GiB
    assert va.iova(va.insert(SZ_16M, noexec=True)) == 0xFF000000


def test_exec_hole_within_16m_of_4g():
    """A hole starting 16 MiB or less below 4 GiB is useless to executable BOs, not to others."""
    va = GpuVaSpace()
    va.insert((VA_END_PFN - 0x1000 - VA_START_PFN) * K4, noexec=True)  # hole starts 16 MiB below
    with pytest.raises(NoSpace):
        va.insert(K4, noexec=False)
    assert va.iova(va.insert(K4, noexec=True)) == 0xFF000000


def test_exec_hole_just_over_16m_below_4g():
    """A hole starting one page more than 16 MiB below 4 GiB still takes an exec BO there."""
    va = GpuVaSpace()
    va.insert((VA_END_PFN - 0x1001 - VA_START_PFN) * K4, noexec=True)
    node = va.insert(K4, noexec=False)
    assert va.iova(node) == 0xFEFFF000
    with pytest.raises(NoSpace):
        va.insert(K4, noexec=False)


def test_find_pfn():
    """find_pfn returns the BO covering a page and None for free pages."""
    va = GpuVaSpace()
    a = va.insert(SZ_2M, noexec=True)
    b = va.insert(K4, noexec=False)
    assert va.find_pfn(0x2000) is a and va.find_pfn(0x21FF) is a
    assert va.find_pfn(0x2200) is b
    assert va.find_pfn(0x2201) is None and va.find_pfn(0x1FFF) is None
    assert list(va.nodes()) == [a, b]


@pytest.mark.parametrize("size", [0, -K4, K4 + 1])
def test_bad_size_is_kernel_bug(size):
    """A size that is not a positive page multiple never reaches the allocator."""
    with pytest.raises(KernelBug):
        GpuVaSpace().insert(size, noexec=True)


# -- property test against the drm_mm reference model ---------------------------------------

PFN_4G = SZ_4G // K4
PFN_16M = SZ_16M // K4


def reference_color_adjust(node, color, start, end):
    """Panfrost's rule as the kernel reference states it, for the model."""
    if color & PANFROST_BO_NOEXEC:
        return start, end
    if start % PFN_4G == 0:
        start += 1
    if end % PFN_4G == 0:
        end -= 1
    boundary = (start + PFN_4G - 1) // PFN_4G * PFN_4G
    if boundary - start <= PFN_16M:
        start = boundary + 1
    return start, min(end, (start + PFN_4G - 1) // PFN_4G * PFN_4G - 1)


def reference_alignment(npages, noexec):
    if not noexec:
        return npages
    return 512 if npages >= 512 else 0


bo_npages = st.sampled_from(
    [1, 2, 3, 5, 7, 16, 511, 512, 513, 768, 0x1000, 0x1001, 0x2000, 0x8000, 0x10000, 0x20000]
    + [0x3F000, 0x40000]  # 1 GiB-ish BOs fill the space, reaching the rules near 4 GiB
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("create"), bo_npages, st.booleans()),
            st.tuples(st.just("close"), st.integers(0, 1_000)),
        ),
        max_size=60,
    )
)
def test_create_close_sequences_match_kernel_rules(ops):
    """Any create/close sequence gives the model's addresses, alignments and ENOSPCs."""
    va = GpuVaSpace()
    ref = ReferenceMm(VA_START_PFN, SPACE_NPAGES, color_adjust=reference_color_adjust)
    live = []
    for op in ops:
        if op[0] == "create":
            _, npages, noexec = op
            color = PANFROST_BO_NOEXEC if noexec else 0
            alignment = reference_alignment(npages, noexec)
            expected = ref.insert(npages, alignment, color, InsertMode.BEST)
            try:
                node = va.insert(npages * K4, noexec=noexec)
            except NoSpace:
                assert expected is None
                continue
            assert node.start == expected and node.color == color
            if not noexec:
                assert node.start % npages == 0
                assert node.start < VA_END_PFN - PFN_16M and node.end <= LAST_PFN
                if npages & (npages - 1) == 0 and npages <= PFN_16M:
                    assert node.start // PFN_16M == (node.end - 1) // PFN_16M
            elif npages >= 512:
                assert node.start % 512 == 0
            live.append(node)
        elif live:
            node = live.pop(op[1] % len(live))
            va.remove(node)
            ref.remove(node.start)
        assert list(va.mm.holes()) == ref.gaps()
    check_invariants(va.mm)
