"""Tests for vdrm.mm.xarray: behaviour against a dict model, node accounting, memory."""

from __future__ import annotations

import gc
import tracemalloc
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdrm.errors import InvalidArgument
from vdrm.mm.xarray import XA_NODE_BYTES, XArray, count_holes


def test_store_load_erase_typed():
    """Typed store/load/erase behave like xa_store/xa_load/xa_erase, with None for holes."""
    xa = XArray("q")
    assert xa.load(5) is None and len(xa) == 0
    assert xa.store(5, 100) is None
    assert xa.store(5, 101) == 100
    assert xa.load(5) == 101 and xa.load(4) is None and len(xa) == 1
    assert xa.erase(5) == 101
    assert xa.erase(5) is None and len(xa) == 0 and xa.nr_nodes == 0


def test_store_none_erases_and_untyped_holds_objects():
    """Untyped arrays hold any object; storing None erases as xa_store(NULL) does."""
    xa = XArray()
    marker = object()
    xa.store(1 << 40, marker)
    assert xa.load(1 << 40) is marker and len(xa) == 1
    assert xa.store(1 << 40, None) is marker
    assert len(xa) == 0 and xa.nr_nodes == 0


@pytest.mark.parametrize("value", [-1, -5, "x", 1.0])
def test_typed_refuses_what_is_not_a_non_negative_int(value):
    """XArray('q') only stores non-negative ints."""
    with pytest.raises(InvalidArgument):
        XArray("q").store(0, value)


@pytest.mark.parametrize("index", [-1, 1 << 64])
def test_index_must_be_an_unsigned_long(index):
    """Indices outside [0, 2**64) are refused."""
    with pytest.raises(InvalidArgument):
        XArray("q").store(index, 1)


def test_bad_typecode_is_refused():
    """Only None and 'q' are supported typecodes."""
    with pytest.raises(InvalidArgument):
        XArray("i")


def test_store_range_and_load_range_with_holes():
    """Bulk stores cross node boundaries and load_range reports holes as -1."""
    xa = XArray("q")
    xa.store_range(60, array("q", range(1000, 1010)))
    xa.store(75, 7)
    got = xa.load_range(58, 20)
    assert got.tolist() == [-1, -1] + list(range(1000, 1010)) + [-1] * 5 + [7, -1, -1]
    assert len(xa) == 11 and xa.nr_nodes == 2
    assert xa.count_range(0, 70) == 10 and xa.count_range(70, 1000) == 1
    assert xa.any_present(75, 76) and not xa.any_present(70, 75)
    assert list(xa.items(65, 80)) == [(65, 1005), (66, 1006), (67, 1007), (68, 1008), (69, 1009), (75, 7)]
    assert xa.values(0, 62).tolist() == [1000, 1001]


def test_store_range_overwrites_without_double_counting():
    """Overwriting present entries keeps len() equal to the number of distinct indices."""
    xa = XArray("q")
    xa.store_range(0, [1, 2, 3])
    xa.store_range(1, [20, 30, 40])
    assert len(xa) == 4 and xa.load_range(0, 4).tolist() == [1, 20, 30, 40]


def test_store_range_refuses_negative_values_and_stores_nothing():
    """A negative value in a bulk store is refused before anything is written."""
    xa = XArray("q")
    with pytest.raises(InvalidArgument):
        xa.store_range(0, [1, -1, 2])
    assert len(xa) == 0 and xa.nr_nodes == 0
    # a long range goes through the array-operation narrowing, which must see the sign too
    for bad in (-1, -(1 << 40), -(1 << 63)):
        with pytest.raises(InvalidArgument):
            xa.store_range(0, array("q", range(100, 612)) + array("q", [bad]))
        assert len(xa) == 0 and xa.nr_nodes == 0 and xa.load_range(0, 1).tolist() == [-1]
    xa.store(5000, 1 << 40)  # widened: the same refusal on the other path
    with pytest.raises(InvalidArgument):
        xa.store_range(0, array("q", range(100, 612)) + array("q", [-1]))
    assert len(xa) == 1


def test_untyped_ranges():
    """Untyped load_range returns None for holes and store_range may erase with None."""
    xa = XArray()
    xa.store_range(62, ["a", "b", None, "d"])
    assert xa.load_range(61, 6) == [None, "a", "b", None, "d", None]
    assert len(xa) == 3
    xa.store_range(62, [None, None])
    assert len(xa) == 1 and list(xa.items()) == [(65, "d")]


def test_items_is_ascending_over_a_sparse_spread():
    """items() walks present entries in index order whatever the store order."""
    xa = XArray("q")
    for index in (1 << 33, 5, 1 << 20, 64):
        xa.store(index, index + 1)
    assert [i for i, _ in xa.items()] == [5, 64, 1 << 20, 1 << 33]
    assert [i for i, _ in xa.items(6, 1 << 21)] == [64, 1 << 20]


def test_clear_drops_everything():
    """clear() leaves an empty array with no nodes."""
    xa = XArray("q")
    xa.store_range(0, range(300))
    xa.clear()
    assert len(xa) == 0 and xa.nr_nodes == 0 and not xa


def test_count_holes():
    """count_holes counts -1 entries only, including next to large values."""
    assert count_holes(array("q", [-1, (1 << 56) - 1, -1, 0, (1 << 63) - 1, -1])) == 3


@pytest.mark.parametrize(
    "indices,nodes",
    [
        ([], 0),
        ([0], 0),  # a lone entry at index 0 lives in xa_head
        ([1], 1),
        (range(64), 1),
        ([100], 2),
        (range(512), 9),  # 8 leaves + root
        ([64 * 64 * 5], 3),
    ],
)
def test_kernel_bytes_counts_xa_nodes(indices, nodes):
    """kernel_bytes is 576 bytes per xa_node the kernel's radix tree would allocate."""
    xa = XArray("q")
    for index in indices:
        xa.store(index, 1)
    assert xa.kernel_bytes() == nodes * XA_NODE_BYTES


def _traced(build, copies: int = 1):
    """Bytes still held per object after building ``copies`` objects with ``build``."""
    keep = [None] * copies
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(copies):
            keep[i] = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    return keep[0], (after - before) / copies


def test_empty_xarray_cost_does_not_depend_on_the_index_range():
    """An XArray has no size: an empty one is well under 1 KiB and one entry costs the same at
    index 2**20-1 as at 2**30-1 (and at 2**10-1 up to the one cached dict-key int)."""
    _, empty_bytes = _traced(lambda: XArray("q"), copies=200)
    assert empty_bytes < 256
    _, low_bytes = _traced(lambda: _one_entry((1 << 10) - 1), copies=200)
    _, mid_bytes = _traced(lambda: _one_entry((1 << 20) - 1), copies=200)
    _, high_bytes = _traced(lambda: _one_entry((1 << 30) - 1), copies=200)
    assert abs(mid_bytes - high_bytes) <= 1
    assert 0 <= mid_bytes - low_bytes <= 32  # node keys below 257 are Python's cached ints


def _one_entry(index: int) -> XArray:
    xa = XArray("q")
    xa.store(index, 7)
    return xa


def test_memory_per_entry_when_populated_in_blocks():
    """Populated in 512-entry blocks, the typed store costs at most 16 bytes per entry."""
    block = array("q", range(512))

    def build():
        xa = XArray("q")
        for n in range(64):
            xa.store_range(n * 4096 + 512, block)
        return xa

    xa, used = _traced(build)
    assert len(xa) == 64 * 512
    assert used / len(xa) <= 16


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("store"), st.integers(0, 600), st.integers(0, 1 << 50)),
            st.tuples(st.just("erase"), st.integers(0, 600), st.just(0)),
            st.tuples(st.just("range"), st.integers(0, 600), st.integers(1, 150)),
        ),
        max_size=40,
    )
)
def test_behaves_like_a_dict(ops):
    """Any sequence of stores, erases and bulk stores matches a dict model."""
    xa = XArray("q")
    model: dict[int, int] = {}
    for op, index, arg in ops:
        if op == "store":
            assert xa.store(index, arg) == model.get(index)
            model[index] = arg
        elif op == "erase":
            assert xa.erase(index) == model.pop(index, None)
        else:
            values = array("q", range(index * 3, index * 3 + arg))
            xa.store_range(index, values)
            model.update(zip(range(index, index + arg), values))
        assert len(xa) == len(model)
        assert list(xa.items()) == sorted(model.items())
        assert xa.nr_nodes == len({i >> 6 for i in model})
    assert xa.load_range(0, 800).tolist() == [model.get(i, -1) for i in range(800)]
    assert xa.count_range(100, 400) == sum(1 for i in model if 100 <= i < 400)
    assert xa.any_present(0, 800) == bool(model)
    ordered = sorted(model.items())
    assert xa.values().tolist() == [v for _, v in ordered]
    assert xa.values(37, 500).tolist() == [v for i, v in ordered if 37 <= i < 500]


def test_values_past_2_31_widen_every_node_and_nothing_changes():
    from array import array as _array

    from vdrm.mm.xarray import NARROW_MAX, XArray

    xa = XArray("q")
    xa.store_range(0, _array("q", range(100, 300)))
    xa.store(500, 7)
    assert xa.load_range(0, 200) == _array("q", range(100, 300))
    xa.store_range(1000, _array("q", [NARROW_MAX, NARROW_MAX + 1, 1 << 40]))
    xa.store(2000, (1 << 33) + 5)
    assert xa.load(1001) == NARROW_MAX + 1 and xa.load(1002) == 1 << 40 and xa.load(2000) == (1 << 33) + 5
    assert xa.load_range(0, 200) == _array("q", range(100, 300)) and xa.load(500) == 7
    assert len(xa) == 200 + 1 + 3 + 1 and xa.count_range(990, 1010) == 3
    assert xa.erase(1002) == 1 << 40 and xa.load(1002) is None
