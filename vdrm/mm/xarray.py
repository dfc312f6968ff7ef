"""A sparse index -> value store, after the kernel's xarray (``lib/xarray.c``).

Models ``struct xarray`` as the sparse shmem code uses it: the page store of a sparse GEM
object (index = page index in the object, value = pfn) and the per-range sg-table store.

Layout: leaf nodes of 64 slots (``XA_CHUNK_SIZE``), keyed by ``index >> 6`` in a dict.
``XArray('q')`` keeps non-negative ints in typed array nodes with -1 for a hole:
``array('i')`` (4 bytes per slot) while every value stored is below 2**31 (a pfn of the
first 8 TiB of RAM), ``array('q')`` (8 bytes) from the first larger value on, when every
node is widened; ranges still come and go as ``array('q')``. ``XArray()`` keeps arbitrary
objects in list nodes with ``None`` for a hole.

Invariants:

* there is no size: memory is proportional to the number of nodes that hold at least one
  entry, so an empty XArray costs the same whatever index range it will cover;
* a node exists only while one of its slots is present (the last erase drops it);
* ``len(xa)`` is the number of present entries;
* storing ``None`` erases, as ``xa_store(xa, i, NULL)`` does; the typed variant refuses
  negative values (-1 marks holes internally).

:meth:`XArray.kernel_bytes` is what the kernel's radix tree would spend for the same
entries: 576 bytes per ``xa_node`` (leaves plus the interior nodes above them); an array
holding only index 0 keeps it in ``xa_head`` and spends nothing.
"""

from __future__ import annotations

from array import array
from typing import Any, Iterable, Iterator, Sequence

import sys

from vdrm.errors import InvalidArgument
from vdrm.mm.page_alloc import any_negative

try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a dependency
    _np = None

_LITTLE = sys.byteorder == "little"

XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1
XA_NODE_BYTES = 576  # sizeof(struct xa_node) on 64-bit
XA_MAX_INDEX = (1 << 64) - 1  # indices are unsigned long

_HOLE_NODE = array("q", [-1]) * XA_CHUNK_SIZE
_NARROW_HOLE_NODE = array("i", [-1]) * XA_CHUNK_SIZE
NARROW_MAX = (1 << 31) - 1  # the largest value a narrow (array('i')) node holds


def _narrow(values: array) -> array | None:
    """An ``array('q')`` as ``array('i')`` (the low halves), or None unless every value lies
    in ``[0, NARROW_MAX]``; array operations, no Python object per value. So a narrowed
    range needs no separate check for negative values."""
    if _np is not None and len(values) >= 64:
        wide = _np.frombuffer(values, dtype=_np.int64)
        if _np.maximum.reduce(wide.view(_np.uint64)) > NARROW_MAX:  # a negative value is huge as unsigned
            return None
        out = array("i")
        out.frombytes(wide.astype(_np.int32).tobytes())
        return out
    if not _LITTLE:  # pragma: no cover - every supported host is little-endian
        return array("i", values) if not values or 0 <= min(values) <= max(values) <= NARROW_MAX else None
    halves = memoryview(values).cast("B").cast("i")
    if halves[1::2].tobytes().count(0) != 4 * len(values):
        return None
    low = halves[::2].tobytes()
    if low[3::4].translate(None, _BELOW_0X80):  # a sign bit: 2**31 or more
        return None
    out = array("i")
    out.frombytes(low)
    return out


_BELOW_0X80 = bytes(range(128))


def _wide(values: array) -> array:
    """Any typed node or range as ``array('q')``."""
    if values.typecode == "q":
        return values
    out = array("q")
    out.fromlist(values.tolist())
    return out


class XArray:
    """Sparse ``index -> value`` map; ``typecode='q'`` stores non-negative ints compactly."""

    __slots__ = ("_typed", "_nodes", "_count", "_widened")

    def __init__(self, typecode: str | None = None):
        if typecode not in (None, "q"):
            raise InvalidArgument(f"XArray typecode must be None or 'q', not {typecode!r}")
        self._typed = typecode == "q"
        self._nodes: dict[int, Any] = {}
        self._count = 0
        self._widened = False  # typed nodes are array('q'), not array('i')

    def _widen(self) -> None:
        """A value above NARROW_MAX is coming: every node becomes ``array('q')``."""
        self._widened = True
        for key, node in self._nodes.items():
            self._nodes[key] = _wide(node)

    @property
    def typecode(self) -> str | None:
        return "q" if self._typed else None

    # -- single entries ---------------------------------------------------------------

    def load(self, index: int) -> Any:
        """``xa_load``: the value at ``index``, or None for a hole."""
        node = self._nodes.get(index >> XA_CHUNK_SHIFT)
        if node is None:
            return None
        value = node[index & XA_CHUNK_MASK]
        if self._typed and value < 0:
            return None
        return value

    def store(self, index: int, value: Any) -> Any:
        """``xa_store``: put ``value`` at ``index`` and return the old value (None if a hole)."""
        if value is None:
            return self.erase(index)
        _check_index(index)
        if self._typed:
            if not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"XArray('q') stores non-negative ints, not {value!r}")
            if value > NARROW_MAX and not self._widened:
                self._widen()
        key = index >> XA_CHUNK_SHIFT
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = self._new_node()
        slot = index & XA_CHUNK_MASK
        old = node[slot]
        node[slot] = value
        if self._typed:
            if old < 0:
                self._count += 1
                return None
            return old
        if old is None:
            self._count += 1
        return old

    def erase(self, index: int) -> Any:
        """``xa_erase``: remove the entry at ``index`` and return it (None if it was a hole)."""
        key = index >> XA_CHUNK_SHIFT
        node = self._nodes.get(key)
        if node is None:
            return None
        slot = index & XA_CHUNK_MASK
        old = node[slot]
        if (old < 0) if self._typed else (old is None):
            return None
        hole = -1 if self._typed else None
        node[slot] = hole
        self._count -= 1
        if (count_holes(node) if self._typed else node.count(None)) == XA_CHUNK_SIZE:
            del self._nodes[key]
        return old

    # -- ranges -----------------------------------------------------------------------

    def store_range(self, first: int, values: Sequence[Any]) -> None:
        """Store ``values[i]`` at ``first + i`` for every i (slice copies, one per node)."""
        count = len(values)
        if count == 0:
            return
        _check_index(first)
        _check_index(first + count - 1)
        if not self._typed:
            self._store_range_objects(first, list(values))
            return
        if not isinstance(values, array) or values.typecode != "q":
            values = array("q", values)
        narrow = None if self._widened else _narrow(values)  # None also when a value is negative
        if narrow is not None:
            values = narrow
        elif any_negative(values):
            raise InvalidArgument("XArray('q') stores non-negative ints; store_range got a negative value")
        elif not self._widened:
            self._widen()
        nodes = self._nodes
        pos = 0
        index = first
        while pos < count:
            key = index >> XA_CHUNK_SHIFT
            slot = index & XA_CHUNK_MASK
            take = XA_CHUNK_SIZE - slot
            if take > count - pos:
                take = count - pos
            node = nodes.get(key)
            if take == XA_CHUNK_SIZE:  # the whole node is overwritten: replace it
                self._count += XA_CHUNK_SIZE if node is None else count_holes(node)
                nodes[key] = values[pos:pos + XA_CHUNK_SIZE]
            elif node is None:
                node = nodes[key] = self._new_node()
                node[slot:slot + take] = values[pos:pos + take]
                self._count += take
            else:
                self._count += count_holes(node[slot:slot + take])
                node[slot:slot + take] = values[pos:pos + take]
            pos += take
            index += take

    def _store_range_objects(self, first: int, values: list) -> None:
        nodes = self._nodes
        count = len(values)
        pos = 0
        index = first
        while pos < count:
            key = index >> XA_CHUNK_SHIFT
            slot = index & XA_CHUNK_MASK
            take = min(XA_CHUNK_SIZE - slot, count - pos)
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = [None] * XA_CHUNK_SIZE
            chunk = values[pos:pos + take]
            self._count += node[slot:slot + take].count(None) - chunk.count(None)
            node[slot:slot + take] = chunk
            if node.count(None) == XA_CHUNK_SIZE:
                del nodes[key]
            pos += take
            index += take

    def load_range(self, first: int, n: int) -> Any:
        """Values at ``first .. first+n-1``: an ``array('q')`` with -1 for holes (typed), or a
        list with None for holes (untyped)."""
        if n < 0:
            raise InvalidArgument(f"load_range of {n} entries")
        if self._typed:
            out: Any = array("q" if self._widened else "i")
            empty: Any = _HOLE_NODE if self._widened else _NARROW_HOLE_NODE
        else:
            out = []
            empty = [None] * XA_CHUNK_SIZE
        get = self._nodes.get
        index = first
        end = first + n
        while index < end:
            slot = index & XA_CHUNK_MASK
            take = XA_CHUNK_SIZE - slot
            if take > end - index:
                take = end - index
            node = get(index >> XA_CHUNK_SHIFT, empty)
            out += node if take == XA_CHUNK_SIZE else node[slot:slot + take]
            index += take
        return _wide(out) if self._typed else out

    def _node_keys(self, first: int, last: int | None) -> list[int]:
        """Keys of existing nodes overlapping ``[first, last)``, ascending."""
        if last is not None and last <= first:
            return []
        lo = first >> XA_CHUNK_SHIFT
        if last is None:
            return sorted(k for k in self._nodes if k >= lo)
        hi = (last - 1) >> XA_CHUNK_SHIFT
        if hi - lo < len(self._nodes):  # look the range's keys up (a set operation, in C)
            return sorted(self._nodes.keys() & range(lo, hi + 1))
        return sorted(k for k in self._nodes if lo <= k <= hi)

    def _spans(self, first: int, last: int | None,
               keys: list[int] | None = None) -> Iterator[tuple[int, Any, int, int]]:
        """(node base index, node, first slot, end slot) for the nodes inside ``[first, last)``
        (``keys``: their :meth:`_node_keys`, if the caller has them)."""
        for key in self._node_keys(first, last) if keys is None else keys:
            base = key << XA_CHUNK_SHIFT
            lo = max(first - base, 0)
            hi = XA_CHUNK_SIZE if last is None else min(last - base, XA_CHUNK_SIZE)
            yield base, self._nodes[key], lo, hi

    def items(self, first: int = 0, last: int | None = None) -> Iterator[tuple[int, Any]]:
        """Present ``(index, value)`` pairs with ``first <= index < last``, ascending."""
        typed = self._typed
        for base, node, lo, hi in self._spans(first, last):
            for slot in range(lo, hi):
                value = node[slot]
                if (value >= 0) if typed else (value is not None):
                    yield base + slot, value

    def values(self, first: int = 0, last: int | None = None) -> Any:
        """Present values in ``[first, last)`` in index order: ``array('q')`` (typed) or a list."""
        if self._typed:
            spans = [node if hi - lo == XA_CHUNK_SIZE else node[lo:hi] for _, node, lo, hi in self._spans(first, last)]
            if _np is not None and len(spans) > 1:
                # every node's bytes in one join, the holes dropped and the values widened by
                # numpy: freeing a 1 GiB heap (4,096 nodes) makes no Python int per page
                joined = _np.frombuffer(b"".join(spans), dtype=_np.int64 if self._widened else _np.int32)
                out = array("q")
                out.frombytes(joined[joined >= 0].astype(_np.int64, copy=False).tobytes())
                return out
            out: Any = array("q")
            for part in spans:
                part = _wide(part)
                if count_holes(part):
                    part = array("q", (v for v in part if v >= 0))
                out += part
            return out
        return [value for _, value in self.items(first, last)]

    def count_range(self, first: int, last: int) -> int:
        """Number of present entries with ``first <= index < last``."""
        keys = self._node_keys(first, last)
        if not keys:  # a fresh range (a heap fault's): no node to look at
            return 0
        if self._typed:
            return sum((hi - lo) - count_holes(node[lo:hi]) for _, node, lo, hi in self._spans(first, last, keys))
        return sum((hi - lo) - node[lo:hi].count(None) for _, node, lo, hi in self._spans(first, last, keys))

    def any_present(self, first: int, last: int) -> bool:
        """Whether any entry is present with ``first <= index < last``."""
        if self._typed:
            return any(count_holes(node[lo:hi]) != hi - lo for _, node, lo, hi in self._spans(first, last))
        return any(node[lo:hi].count(None) != hi - lo for _, node, lo, hi in self._spans(first, last))

    def clear(self) -> None:
        """``xa_destroy``: drop every entry and node."""
        self._nodes.clear()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __repr__(self) -> str:
        return f"XArray({self.typecode!r}, {self._count} entries in {len(self._nodes)} nodes)"

    # -- accounting -------------------------------------------------------------------

    @property
    def nr_nodes(self) -> int:
        """Leaf nodes currently allocated."""
        return len(self._nodes)

    def kernel_bytes(self) -> int:
        """Bytes of ``xa_node`` the kernel's xarray would hold for the present entries."""
        if not self._nodes:
            return 0
        keys = set(self._nodes)
        if keys == {0} and self._count == 1 and self.load(0) is not None:
            return 0  # a lone entry at index 0 lives in xa_head
        nodes = 0
        # leaves, then each interior level up to a single root
        while True:
            nodes += len(keys)
            if len(keys) == 1 and max(keys) == 0:
                break
            keys = {k >> XA_CHUNK_SHIFT for k in keys}
        return nodes * XA_NODE_BYTES

    def _new_node(self) -> Any:
        if not self._typed:
            return [None] * XA_CHUNK_SIZE
        return _HOLE_NODE[:] if self._widened else _NARROW_HOLE_NODE[:]


_HOLE_BYTES = {"q": b"\xff" * 8, "i": b"\xff" * 4}


def count_holes(values: array) -> int:
    """Number of -1 entries in an ``array('q')`` or ``array('i')`` whose other entries are
    non-negative.

    Counts the byte pattern of -1 in C: a non-negative value's top byte is below 0x80, so
    the pattern can only match exactly at a -1 entry.
    """
    return values.tobytes().count(_HOLE_BYTES[values.typecode])


def _check_index(index: int) -> None:
    if not isinstance(index, int) or not 0 <= index <= XA_MAX_INDEX:
        raise InvalidArgument(f"xarray index {index!r} is not an unsigned long")


def from_values(first: int, values: Iterable[int]) -> XArray:
    """A typed XArray holding ``values`` from index ``first`` on (test and bench helper)."""
    xa = XArray("q")
    xa.store_range(first, array("q", values))
    return xa
