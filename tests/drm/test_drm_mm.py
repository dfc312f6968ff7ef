"""Tests for vdrm.drm.drm_mm: BEST/LOW/HIGH placement, hole recency, merging, invariants."""

from __future__ import annotations

import random
from collections import namedtuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdrm.drm.drm_mm import DrmMm, DrmMmNode, InsertMode
from vdrm.errors import KernelBug, NoSpace


# -- a brute-force reference model, written from the rules rather than from drm_mm.py ------

RefNode = namedtuple("RefNode", "start size color")


class ReferenceMm:
    """A slow, obviously-correct model of drm_mm: nodes in a plain list, holes recomputed.

    Hole recency is a stamp per (start, end) gap, given when the gap is created or changes
    (the kernel re-inserts a hole into its size tree then); equal-size holes are tried
    newest stamp first.
    """

    def __init__(self, start, size, color_adjust=None):
        self.start, self.end = start, start + size
        self.color_adjust = color_adjust
        self.nodes = []  # (start, size, color), unordered
        self.clock = 0
        self.stamps = {(self.start, self.end): self._tick()}

    def _tick(self):
        self.clock += 1
        return self.clock

    def gaps(self):
        """Every (start, end) gap between nodes, in address order, empty ones left out."""
        out, pos = [], self.start
        for s, n, _ in sorted(self.nodes):
            if s > pos:
                out.append((pos, s))
            pos = s + n
        if pos < self.end:
            out.append((pos, self.end))
        return out

    def node_ending_at(self, addr):
        for s, n, c in self.nodes:
            if s + n == addr:
                return RefNode(s, n, c)
        return None

    def fit(self, gap, size, alignment, color, mode):
        """Start the node would get in ``gap``, or None: adjust, fit, align, fit again."""
        lo, hi = gap
        if self.color_adjust is not None:
            lo, hi = self.color_adjust(self.node_ending_at(gap[0]), color, lo, hi)
        if hi - lo < size:
            return None
        if mode == InsertMode.HIGH:
            start = hi - size
            if alignment > 1:
                start = (start // alignment) * alignment
        else:
            start = lo
            if alignment > 1:
                start = -(-start // alignment) * alignment
        if start < lo or start + size > hi:
            return None
        return start

    def visiting_order(self, size, mode):
        gaps = [g for g in self.gaps() if g[1] - g[0] >= size]
        if mode == InsertMode.BEST:
            return sorted(gaps, key=lambda g: (g[1] - g[0], -self.stamps[g]))
        if mode == InsertMode.LOW:
            return gaps
        return gaps[::-1]

    def insert(self, size, alignment, color, mode):
        """Place a node as the rules say; return its start, or None for ENOSPC."""
        if size == 0:
            return None
        for gap in self.visiting_order(size, mode):
            start = self.fit(gap, size, alignment, color, mode)
            if start is None:
                continue
            del self.stamps[gap]
            if start > gap[0]:
                self.stamps[(gap[0], start)] = self._tick()
            if start + size < gap[1]:
                self.stamps[(start + size, gap[1])] = self._tick()
            self.nodes.append((start, size, color))
            return start
        return None

    def remove(self, start):
        (node,) = [n for n in self.nodes if n[0] == start]
        self.nodes.remove(node)
        end = node[0] + node[1]
        before = max((s + n for s, n, _ in self.nodes if s + n <= start), default=self.start)
        after = min((s for s, _, _ in self.nodes if s >= end), default=self.end)
        self.stamps.pop((before, start), None)
        self.stamps.pop((end, after), None)
        self.stamps[(before, after)] = self._tick()


def check_invariants(mm: DrmMm) -> None:
    """Assert the structural invariants of ``mm`` by brute force."""
    nodes = list(mm.nodes())
    holes = list(mm.holes())
    assert len(nodes) == len(mm)
    pieces = sorted([(n.start, n.end, "node") for n in nodes] + [(s, e, "hole") for s, e in holes])
    pos = mm.start
    for i, (s, e, kind) in enumerate(pieces):
        assert s == pos, f"gap or overlap at {pos:#x}: {pieces}"
        assert e > s, f"empty {kind} at {s:#x}"
        if kind == "hole" and i + 1 < len(pieces):
            assert pieces[i + 1][2] == "node", "two holes touch"
        pos = e
    assert pos == mm.end
    assert mm.largest_hole() == max((e - s for s, e in holes), default=0)
    for n in nodes:
        assert mm.find(n.start) is n and mm.find(n.end - 1) is n
    for s, e in holes:
        assert mm.find(s) is None and mm.find(e - 1) is None


# -- unit tests -----------------------------------------------------------------------------


def fill(mm: DrmMm, sizes: list[int]) -> list[DrmMmNode]:
    return [mm.insert_node(size) for size in sizes]


def test_first_node_at_range_start():
    """A fresh allocator places the first node at the start of its range."""
    mm = DrmMm(0x2000, 0x1000)
    node = mm.insert_node(4)
    assert (node.start, node.size, node.color) == (0x2000, 4, 0)
    assert list(mm.holes()) == [(0x2004, 0x3000)]


def test_size_zero_is_nospace():
    """A zero-sized request fails fast with ENOSPC, as in the kernel."""
    with pytest.raises(NoSpace):
        DrmMm(0, 100).insert_node(0)


def test_larger_than_largest_hole_is_nospace():
    """A request bigger than the largest hole fails with ENOSPC and changes nothing."""
    mm = DrmMm(0, 100)
    a, _ = fill(mm, [50, 10])
    mm.remove_node(a)
    with pytest.raises(NoSpace):
        mm.insert_node(51)
    assert len(mm) == 1 and mm.largest_hole() == 50


def test_full_range_is_nospace():
    """Once the range is fully allocated every request fails with ENOSPC."""
    mm = DrmMm(10, 20)
    mm.insert_node(20)
    assert mm.largest_hole() == 0
    with pytest.raises(NoSpace):
        mm.insert_node(1)


def test_alignment_that_fits_nowhere_is_nospace():
    """A request that fits by size but in no hole once aligned fails with ENOSPC."""
    mm = DrmMm(1, 10)  # [1, 11): aligned to 8, only 8 is possible, and 8 + 4 > 11
    with pytest.raises(NoSpace):
        mm.insert_node(4, alignment=8)
    assert mm.insert_node(3, alignment=8).start == 8


def test_best_picks_smallest_fitting_hole():
    """BEST puts a node in the smallest hole that can hold it, not the first or lowest."""
    mm = DrmMm(0, 100)
    a, _, c, _, e, _ = fill(mm, [10, 1, 5, 1, 7, 76])
    for node in (a, c, e):
        mm.remove_node(node)
    assert [h[1] - h[0] for h in mm.holes()] == [10, 5, 7]
    assert mm.insert_node(6).start == e.start
    assert mm.insert_node(5).start == c.start
    assert mm.insert_node(2).start == a.start


def test_best_skips_hole_that_fails_alignment():
    """BEST moves on to a bigger hole when the smallest one cannot hold the aligned node."""
    mm = DrmMm(0, 64)
    _, b, _, d, _ = fill(mm, [1, 5, 2, 16, 40])  # b = [1, 6), d = [8, 24)
    mm.remove_node(b)
    mm.remove_node(d)
    assert mm.insert_node(4, alignment=4).start == 8  # [1, 6) cannot fit an aligned 4


def test_equal_holes_newest_first():
    """Among equal-size holes BEST takes the one created last."""
    mm = DrmMm(0, 10)
    nodes = fill(mm, [1] * 10)
    for i in (2, 6, 4):
        mm.remove_node(nodes[i])
    assert [mm.insert_node(1).start for _ in range(3)] == [4, 6, 2]


def test_upper_remainder_newer_than_lower():
    """When alignment splits a hole in two, the part above the node is the newer hole."""
    mm = DrmMm(0, 34)
    mm.insert_node(10)
    node = mm.insert_node(4, alignment=20)
    assert node.start == 20
    assert list(mm.holes()) == [(10, 20), (24, 34)]  # both of size 10
    assert mm.insert_node(1).start == 24


def test_merged_hole_becomes_newest():
    """A hole that grows when a neighbour is removed is re-added and becomes the newest."""
    mm = DrmMm(0, 100)
    a, b, _, d, _, f, _, _ = fill(mm, [3, 3, 3, 6, 3, 6, 3, 73])
    mm.remove_node(b)  # [3, 6), size 3, oldest
    mm.remove_node(d)  # [9, 15), size 6
    mm.remove_node(f)  # [18, 24), size 6
    mm.remove_node(a)  # merges with [3, 6) into [0, 6): size 6, newest
    assert list(mm.holes()) == [(0, 6), (9, 15), (18, 24)]
    assert [mm.insert_node(6).start for _ in range(3)] == [0, 18, 9]


def test_grown_hole_becomes_newest():
    """A hole that grows because the node after it is removed becomes the newest hole."""
    mm = DrmMm(0, 100)
    _, b, c, _, e, _ = fill(mm, [2, 2, 2, 2, 4, 88])
    mm.remove_node(b)  # [2, 4), size 2, oldest
    mm.remove_node(e)  # [8, 12), size 4
    mm.remove_node(c)  # [2, 4) grows into [2, 6), size 4, newest
    assert list(mm.holes()) == [(2, 6), (8, 12)]
    assert [mm.insert_node(4).start for _ in range(2)] == [2, 8]


def test_remove_merges_both_sides():
    """Removing a node between two holes leaves one hole covering all three ranges."""
    mm = DrmMm(0, 30)
    a, b, c = fill(mm, [10, 10, 10])
    mm.remove_node(a)
    mm.remove_node(c)
    assert list(mm.holes()) == [(0, 10), (20, 30)]
    mm.remove_node(b)
    assert list(mm.holes()) == [(0, 30)] and len(mm) == 0
    check_invariants(mm)


def test_power_of_two_and_other_alignments():
    """Starts round up to the alignment, whether or not it is a power of two."""
    mm = DrmMm(0, 100)
    assert mm.insert_node(1).start == 0
    assert mm.insert_node(3, alignment=3).start == 3
    assert mm.insert_node(5, alignment=5).start == 10  # smallest hole [1, 3) is too small
    assert mm.insert_node(2, alignment=8).start == 8  # in the 4-unit hole [6, 10)
    assert list(mm.holes()) == [(1, 3), (6, 8), (15, 100)]
    assert mm.insert_node(1, alignment=1).start == 6  # alignment 1 means none; newest hole


def test_color_adjust_sees_hole_and_preceding_node():
    """color_adjust gets the node before the hole (None at the range start) and narrows it."""
    calls = []

    def adjust(node, color, start, end):
        calls.append((node, color, start, end))
        if node is not None and node.color != color:
            start += 1  # keep a guard page between different colors
        return start, end

    mm = DrmMm(0, 100, color_adjust=adjust)
    a = mm.insert_node(10, color=1)
    assert calls == [(None, 1, 0, 100)]
    b = mm.insert_node(10, color=2)
    assert calls[-1] == (a, 2, 10, 100) and b.start == 11
    c = mm.insert_node(1, color=2)
    assert c.start == 21  # same color as b: no guard
    assert list(mm.holes()) == [(10, 11), (22, 100)]


def test_color_adjust_can_empty_a_hole():
    """A hole that color_adjust shrinks below the request is skipped for a bigger one."""

    def adjust(node, color, start, end):
        return (start + 2, end) if color else (start, end)

    mm = DrmMm(0, 20, color_adjust=adjust)
    _, b, _ = fill(mm, [2, 3, 15])
    mm.remove_node(b)
    with pytest.raises(NoSpace):
        mm.insert_node(2, color=1)
    assert mm.insert_node(1, color=1).start == 4


def test_low_and_high_modes():
    """LOW takes the lowest hole that fits, HIGH the highest, placing the node at its top."""
    mm = DrmMm(0, 100)
    nodes = fill(mm, [10] * 10)
    for i in (1, 5, 7):
        mm.remove_node(nodes[i])
    mm.remove_node(nodes[6])  # [50, 80) now one hole of 30
    assert mm.insert_node(4, mode=InsertMode.LOW).start == 10
    assert mm.insert_node(4, mode=InsertMode.HIGH, alignment=8).start == 72
    assert mm.insert_node(4, mode=InsertMode.HIGH).start == 76  # top hole [76, 80)
    assert mm.insert_node(4, mode=InsertMode.HIGH).start == 68
    check_invariants(mm)


def test_find():
    """find returns the node containing an address and None in holes and outside the range."""
    mm = DrmMm(100, 50)
    a, b = fill(mm, [10, 5])
    mm.remove_node(a)
    assert mm.find(110) is b and mm.find(114) is b
    assert mm.find(115) is None and mm.find(100) is None
    assert mm.find(99) is None and mm.find(150) is None


def test_remove_stale_or_foreign_node_is_kernel_bug():
    """Removing a node twice, or one from another allocator, is a KernelBug."""
    mm, other = DrmMm(0, 10), DrmMm(0, 10)
    node = mm.insert_node(3)
    twin = other.insert_node(3)
    with pytest.raises(KernelBug):
        mm.remove_node(twin)
    mm.remove_node(node)
    with pytest.raises(KernelBug):
        mm.remove_node(node)


def test_nodes_snapshot_allows_removal_while_iterating():
    """nodes() can be iterated while removing every node, leaving one hole."""
    mm = DrmMm(0, 64)
    fill(mm, [4] * 16)
    for node in mm.nodes():
        mm.remove_node(node)
    assert len(mm) == 0 and list(mm.holes()) == [(0, 64)]


def test_ten_thousand_nodes_stay_consistent():
    """With 10,000 nodes, random frees and refills keep the allocator consistent."""
    rng = random.Random(7)
    mm = DrmMm(0, 1 << 24)
    nodes = [
        mm.insert_node(rng.randint(1, 64), alignment=rng.choice([0, 4, 16])) for _ in range(10_000)
    ]
    rng.shuffle(nodes)
    for node in nodes[:5_000]:
        mm.remove_node(node)
    for _ in range(5_000):
        mm.insert_node(rng.randint(1, 64))
    assert len(mm) == 10_000
    check_invariants(mm)


# -- property tests against the reference model ---------------------------------------------


def boundary_adjust(node, color, start, end):
    """A scaled-down Panfrost-style adjust: color-0 nodes avoid every multiple of 64."""
    if color:
        return start, end
    if start % 64 == 0:
        start += 1
    if end % 64 == 0:
        end -= 1
    next_seg = -(-start // 64) * 64
    if next_seg - start <= 4:
        start = next_seg + 1
    return start, min(end, -(-start // 64) * 64 - 1)


def neighbour_adjust(node, color, start, end):
    """An i915-style adjust: a guard unit after a node of another color."""
    if node is not None and node.color != color:
        start += 1
    return start, end


def run_against_model(start, size, adjust, ops):
    """Apply ``ops`` to a DrmMm and to the reference model; assert they agree at every step."""
    mm = DrmMm(start, size, color_adjust=adjust)
    ref = ReferenceMm(start, size, color_adjust=adjust)
    live: list[tuple[DrmMmNode, int]] = []
    for op in ops:
        if op[0] == "insert":
            _, n, alignment, color, mode = op
            expected = ref.insert(n, alignment, color, mode)
            try:
                node = mm.insert_node(n, alignment=alignment, color=color, mode=mode)
            except NoSpace:
                assert expected is None
            else:
                assert node.start == expected
                assert (node.size, node.color) == (n, color)
                assert alignment <= 1 or node.start % alignment == 0
                live.append((node, alignment))
        elif live:
            node, _ = live.pop(op[1] % len(live))
            mm.remove_node(node)
            ref.remove(node.start)
        assert list(mm.holes()) == ref.gaps()
    check_invariants(mm)


removes = st.tuples(st.just("remove"), st.integers(0, 1_000))

# Broad: any size up to 40, any alignment (powers of two or not), both colors, all modes.
broad_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("insert"),
            st.integers(0, 40),
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 8, 16, 24]),
            st.integers(0, 1),
            st.sampled_from([InsertMode.BEST, InsertMode.LOW, InsertMode.HIGH]),
        ),
        removes,
    ),
    max_size=60,
)

# Narrow: a few tiny sizes and alignments in a small range, BEST only, so that equal-size
# holes, and hence the recency rules, decide most placements.
tie_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("insert"),
            st.sampled_from([1, 2, 3]),
            st.sampled_from([0, 0, 2, 3]),
            st.integers(0, 1),
            st.just(InsertMode.BEST),
        ),
        removes,
    ),
    min_size=10,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 70),
    size=st.integers(1, 200),
    adjust=st.sampled_from([None, boundary_adjust, neighbour_adjust]),
    ops=broad_ops,
)
def test_matches_reference_model(start, size, adjust, ops):
    """Any insert/remove sequence gives the reference model's exact addresses and ENOSPCs."""
    run_against_model(start, size, adjust, ops)


@settings(max_examples=500, deadline=None)
@given(
    size=st.integers(4, 40),
    adjust=st.sampled_from([None, neighbour_adjust]),
    ops=tie_ops,
)
def test_tie_breaking_matches_reference_model(size, adjust, ops):
    """With many equal-size holes, placements still match the model's recency order."""
    run_against_model(0, size, adjust, ops)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 200),
    adjust=st.sampled_from([None, boundary_adjust]),
    ops=broad_ops,
)
def test_best_never_leaves_a_smaller_hole_that_fits(size, adjust, ops):
    """After every BEST insertion, no strictly smaller hole could have held the node."""
    mm = DrmMm(0, size, color_adjust=adjust)
    ref = ReferenceMm(0, size, color_adjust=adjust)  # used only for its fit() arithmetic
    live = []
    for op in ops:
        if op[0] == "remove":
            if live:
                node = live.pop(op[1] % len(live))
                mm.remove_node(node)
            continue
        _, n, alignment, color, _ = op
        holes = list(mm.holes())
        ref.nodes = [(x.start, x.size, x.color) for x in mm.nodes()]
        try:
            node = mm.insert_node(n, alignment=alignment, color=color)
        except NoSpace:
            assert all(ref.fit(h, n, alignment, color, InsertMode.BEST) is None for h in holes if n)
            continue
        live.append(node)
        (chosen,) = [h for h in holes if h[0] <= node.start < h[1]]
        assert node.end <= chosen[1]
        for hole in holes:
            if hole[1] - hole[0] < chosen[1] - chosen[0]:
                assert ref.fit(hole, n, alignment, color, InsertMode.BEST) is None
        assert node.start == ref.fit(chosen, n, alignment, color, InsertMode.BEST)
